"""Freshness guards: each fires with a message naming what to refresh; all pass when fresh."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ewspipe.errors import CheckFailed
from ewspipe.flows.guards import (
    GuardFailed,
    check_freshness,
    check_run_freshness,
    expected_last_month,
    freshness_report,
)
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.settings import Settings, load_settings

MAY_2024 = 533  # month_id


def _settings(tmp_path: Path, qa: str = "") -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(f'[workspace]\nstate_dir = "state"\n[tracking]\nenabled = false\n{qa}')
    return load_settings(cfg)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)


def _snapshot(settings: Settings, last: int = MAY_2024,
              fetched: str = "2024-06-01T00:00:00Z") -> Manifest:
    months = range(last - 23, last + 1)
    frame = pd.DataFrame([(m, c, (m + c) % 3) for m in months for c in (1, 2, 3)],
                         columns=["month_id", "country_id", "ged_sb"])
    return import_frame(frame, "cm", SnapshotStore(settings.snapshot_dir),
                        source={"kind": "panel", "file": "x.parquet"}, source_name="x",
                        fetched_at=fetched).manifest


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def test_fresh_data_passes(tmp_path):
    s = _settings(tmp_path)
    m = _snapshot(s)
    report = check_freshness(s, snapshot_manifest=m, now=_at("2024-06-10"),
                             artifacts=[{"model": "amber_tree", "snapshot_id": m.id,
                                         "directory": "amber_tree/forecasting/x"}])
    assert report.passed and [c.guard for c in report.checks] == [
        "snapshot_age", "last_month", "artifact"]
    assert report.expected_last_month == MAY_2024
    assert report.to_dict()["message"] == "all 3 freshness guards pass"


def test_stale_snapshot_and_missing_month_name_the_refresh(tmp_path):
    s = _settings(tmp_path)
    m = _snapshot(s)
    with pytest.raises(GuardFailed) as info:
        check_freshness(s, snapshot_manifest=m, now=_at("2024-08-01"))
    assert isinstance(info.value, CheckFailed) and info.value.exit_code == 1
    text = str(info.value)
    assert text.startswith("refusing to publish: 2 freshness guards failed")
    assert "61.0 days ago" in text and "max_snapshot_age_days = 35" in text
    assert "ends 2024-05 (533); expected 2024-07 (535" in text
    assert "import cm data through 2024-07 (535)" in text
    assert "`ewspipe data import panel FILE --level cm`" in text
    assert "re-run `ewspipe forecast`" in text


def test_age_alone(tmp_path):
    s = _settings(tmp_path, "[qa]\nmax_snapshot_age_days = 5\n")
    m = _snapshot(s)
    report = freshness_report(s, snapshot_manifest=m, now=_at("2024-06-10"))
    assert [c.guard for c in report.failures] == ["snapshot_age"]
    assert "refresh the cm data" in report.failures[0].fix


def test_expected_month_rules(tmp_path):
    lagged = _settings(tmp_path, "[qa]\npublication_lag_months = 1\n")
    assert expected_last_month(lagged, now=_at("2024-07-05")) == MAY_2024
    m = _snapshot(lagged)
    assert freshness_report(lagged, snapshot_manifest=m, now=_at("2024-07-05")).passed
    fixed = _settings(tmp_path / "f", "[qa]\nexpected_last_month = 530\n")
    assert expected_last_month(fixed, now=_at("2030-01-01")) == 530
    report = freshness_report(fixed, snapshot_manifest=_snapshot(fixed),
                              now=_at("2024-06-02"))
    (failed,) = report.failures
    assert failed.guard == "last_month" and "runs past the expected month" in failed.fix
    assert "[qa] expected_last_month" in failed.detail
    # the argument wins over settings, and the message says so (it claimed the settings)
    assert freshness_report(fixed, snapshot_manifest=m, expected_last_month=MAY_2024,
                            now=_at("2024-06-02")).passed
    (asked,) = freshness_report(fixed, snapshot_manifest=m, expected_last_month=600,
                                now=_at("2024-06-02")).failures
    assert "the expected_last_month given" in asked.detail and "[qa]" not in asked.detail


def test_artifact_on_another_snapshot(tmp_path):
    s = _settings(tmp_path)
    m = _snapshot(s)
    report = freshness_report(s, snapshot_manifest=m, now=_at("2024-06-10"), artifacts=[
        {"model": "amber_tree", "snapshot_id": "cm-0123456789abcdef", "directory": "a/b"}])
    (failed,) = report.failures
    assert failed.guard == "artifact" and failed.subject == "amber_tree"
    assert "trained on snapshot cm-0123456789abcdef, not on the run's" in failed.detail
    assert f"`ewspipe forecast --snapshot {m.id} --model amber_tree`" in failed.fix


MODEL = """
name = "last_value"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "deployed"
owner = "tests"
description = "LOCF."
features = []
"""


def test_a_forecast_run_is_checked_with_its_artifacts(tmp_path, cli):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "last_value.toml").write_text(MODEL)
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n[tracking]\nenabled = false\n')
    assert cli("--config", str(cfg), "data", "demo", "--countries", "20", "--pgm-cells", "50",
               "--last-month", "500").code == 0
    res = cli("--config", str(cfg), "forecast", "--level", "cm", "--json")
    assert res.code == 0, res.err
    run_id = res.json()["run_id"]
    s = load_settings(cfg)
    now = datetime.now(UTC)
    report = check_run_freshness(s, run_id, expected_last_month=500, now=now)
    assert report.passed and {c.guard for c in report.checks} == {
        "snapshot_age", "last_month", "artifact"}
    # the artifact's record says it was trained on other data
    artifact = s.artifact_dir / res.json()["models"][0]["artifact"]
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["snapshot_id"] = "cm-ffffffffffffffff"
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GuardFailed, match="trained on snapshot cm-ffffffffffffffff"):
        check_run_freshness(s, run_id, expected_last_month=500, now=now)
    shutil.rmtree(artifact)
    with pytest.raises(GuardFailed, match="is missing from"):
        check_run_freshness(s, run_id, expected_last_month=500, now=now)


def test_qa_settings_documented_and_strict(tmp_path, monkeypatch):
    from ewspipe.errors import SettingsError

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    assert load_settings(repo / "ewspipe.toml").qa == load_settings().qa
    for text, key in (("[qa]\nmax_age = 3\n", "qa.max_age"),
                      ("[qa.online]\nmetric = 'pearson'\n", "qa.online.metric"),
                      ("[qa.output_drift]\nmax_total_ratio = 0.5\n",
                       "qa.output_drift.max_total_ratio")):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
            load_settings(cfg)
