"""The staging gates one by one, on real git repositories, real snapshots and forecasts built
in memory (the end-to-end cycle is tests/release/test_stage.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from staging_repo import commit_all, git, import_demo, import_drifted

from ewspipe.errors import InputError, SettingsError
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.release.gates import drift_gate, lock_check, sync_gate
from ewspipe.release.gates import tests_gate as suite_gate  # not collected as a test
from ewspipe.release.gates_outputs import (
    StoredForecast,
    forecast_diff_gate,
    inference_gate,
    performance_gate,
)
from ewspipe.release.sides import CommandResult, Side, settings_text, snapshot_key
from ewspipe.release.staging_report import GateResult, StagingReport
from ewspipe.settings import ReleaseSettings, load_settings

RELEASE = ReleaseSettings()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "production")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "a.txt").write_text("a\n")
    commit_all(repo, "feat: a")
    return repo


# --------------------------------------------------------------------------- sync


def test_sync_ahead_passes_behind_fails_first_release_warns(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    prod = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "development")
    (repo / "b.txt").write_text("b\n")
    dev = commit_all(repo, "feat: b")
    ahead = sync_gate(repo, dev, prod, production_branch="production")
    assert ahead.status == "PASS" and len(ahead.evidence["commits_ahead"]) == 1
    git(repo, "checkout", "-q", "production")
    (repo / "c.txt").write_text("hotfix\n")
    hotfix = commit_all(repo, "fix: c")
    behind = sync_gate(repo, dev, hotfix, production_branch="production")
    assert behind.status == "FAIL"
    assert behind.evidence["missing_production_commits"][0].startswith(hotfix[:7])
    assert "merge production" in behind.summary
    first = sync_gate(repo, dev, None, production_branch="production")
    assert first.status == "WARN"


# --------------------------------------------------------------------------- lock file

PYPROJECT = '[project]\nname = "x"\nversion = "1"\ndependencies = {deps}\n'


def test_lock_check(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    assert lock_check(repo, base, None)[0] == "PASS"  # no pyproject: not applicable
    (repo / "pyproject.toml").write_text(PYPROJECT.format(deps='["numpy>=2.0", "Pandas>=3"]'))
    no_lock = commit_all(repo, "build: deps")
    status, summary, _ = lock_check(repo, no_lock, None)
    assert status == "FAIL" and "requirements.lock is missing" in summary
    (repo / "requirements.lock").write_text(
        "numpy==2.4.6 \\\n    --hash=sha256:00\npandas==3.1.1\n")
    good = commit_all(repo, "build: lock")
    assert lock_check(repo, good, None)[0] == "PASS"
    (repo / "pyproject.toml").write_text(PYPROJECT.format(deps='["numpy>=3.0", "pandas>=3"]'))
    stale = commit_all(repo, "build: numpy 3")
    status, summary, evidence = lock_check(repo, stale, good)
    assert status == "FAIL" and "numpy==2.4.6" in summary
    assert any("lock did not" in p for p in evidence["problems"])  # deps moved, lock did not
    (repo / "pyproject.toml").write_text(PYPROJECT.format(deps='["numpy>=2.0", "scipy"]'))
    unpinned = commit_all(repo, "build: scipy")
    status, summary, _ = lock_check(repo, unpinned, None)
    assert status == "FAIL" and "scipy" in summary


# --------------------------------------------------------------------------- drift


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("gates")
    cfg = root / "ewspipe.toml"
    cfg.write_text("[demo]\ncountries = 30\npgm_cells = 100\nlast_month = 520\n"
                   "[tracking]\nenabled = false\n")
    settings_ = load_settings(cfg, state_dir=root / "state")
    snaps = import_demo(settings_)
    drifted = import_drifted(settings_, snaps["cm"])
    return settings_, snaps, drifted


def test_drift_gate_fails_on_drifted_data_only(demo) -> None:
    settings_, snaps, drifted = demo
    store = SnapshotStore(settings_.snapshot_dir)
    clean = drift_gate(settings_, {"cm": (snaps["cm"], store.load(snaps["cm"]))},
                       fail_severity="ERROR")
    assert clean.status in ("PASS", "WARN")
    bad = drift_gate(settings_, {"cm": (drifted, store.load(drifted))}, fail_severity="ERROR")
    assert bad.status == "FAIL"
    level = bad.evidence["levels"]["cm"]
    assert level["snapshot"] == drifted and level["alerts_at_or_above"] > 0
    assert level["top"][0]["severity"] in ("ERROR", "CRITICAL")
    noted = drift_gate(settings_, {"cm": (snaps["cm"], store.load(snaps["cm"]))},
                       fail_severity="CRITICAL", snapshot_note="production never ran")
    assert noted.status == "WARN" and "production never ran" in noted.summary


# --------------------------------------------------------------------------- inference


def _forecast(panel, *, model: str = "m", status: str = "deployed", scale: float = 1.0,
              last: int | None = None) -> StoredForecast:
    last = panel.last_month if last is None else last
    units = np.sort(panel.forecast_entities())
    steps = np.arange(1, 37)
    frame = pd.DataFrame({
        "origin": last, "step": np.repeat(steps, len(units)),
        "month_id": last + np.repeat(steps, len(units)),
        "unit": np.tile(units, len(steps)),
        "point": scale * np.tile(np.arange(len(units), dtype=float), len(steps))})
    frame = frame.sort_values(["origin", "step", "unit"]).reset_index(drop=True)
    return StoredForecast(model, "cm", status, "model", frame,
                          frame["point"].to_numpy()[:, None].copy())


def _inference(panel, forecasts, repeated=None):
    ok = CommandResult(("run",), 0, {"run_id": "r"}, "")
    items = [{"name": n, "status": f.status, "kind": f.kind} for n, f in forecasts.items()]
    return inference_gate(items, ok, ok, forecasts, repeated or forecasts,
                          panels={"cm": ("cm-x", panel)}, steps=36,
                          artifacts={"reloaded": 1, "retrained": [], "code_changed": []})


def test_inference_gate_catches_each_defect(demo) -> None:
    settings_, snaps, _ = demo
    panel = SnapshotStore(settings_.snapshot_dir).load(snaps["cm"])
    good = _forecast(panel)
    assert _inference(panel, {"m": good}).status == "PASS"

    nan = _forecast(panel)
    nan.frame.loc[3, "point"] = np.nan
    wrong_months = _forecast(panel, last=panel.last_month - 1)
    missing = StoredForecast("m", "cm", "deployed", "model",
                             good.frame[good.frame["unit"] != good.frame["unit"].iloc[0]]
                             .reset_index(drop=True), good.samples[: len(good.frame) - 36])
    negative = _forecast(panel, scale=-1.0)
    dup_frame = pd.concat([good.frame, good.frame.iloc[:1]]).sort_values(
        ["origin", "step", "unit"]).reset_index(drop=True)
    duplicated = StoredForecast("m", "cm", "deployed", "model", dup_frame,
                                dup_frame["point"].to_numpy()[:, None])
    for broken, needle in ((nan, "non-finite"), (wrong_months, "origins"),
                           (missing, "1 missing"), (negative, "negative"),
                           (duplicated, "duplicated")):
        gate = _inference(panel, {"m": broken})
        assert gate.status == "FAIL", needle
        assert any(needle in p for p in gate.evidence["items"]["m"]["problems"]), needle
    drifting = _inference(panel, {"m": good}, repeated={"m": _forecast(panel, scale=1.5)})
    assert drifting.status == "FAIL" and "repeated run differs" in drifting.summary
    absent = _inference(panel, {"m": good})
    items = [{"name": "m", "status": "deployed", "kind": "model"},
             {"name": "gone", "status": "shadow", "kind": "model"}]
    ok = CommandResult(("run",), 0, {"run_id": "r"}, "")
    absent = inference_gate(items, ok, ok, {"m": good}, {"m": good},
                            panels={"cm": ("cm-x", panel)}, steps=36, artifacts={})
    assert absent.status == "FAIL" and "gone: no forecast stored" in absent.summary


# --------------------------------------------------------------------------- forecast diff


def test_forecast_diff_bounds(demo) -> None:
    settings_, snaps, _ = demo
    panel = SnapshotStore(settings_.snapshot_dir).load(snaps["cm"])
    prod = {"m": _forecast(panel), "s": _forecast(panel, model="s", status="shadow")}
    same = forecast_diff_gate(prod, prod, RELEASE)
    assert same.status == "PASS" and same.evidence["models"]["m"]["total_change"] == 0.0
    moved = {"m": _forecast(panel, scale=1.5), "s": _forecast(panel, model="s", scale=3.0,
                                                              status="shadow")}
    gate = forecast_diff_gate(moved, prod, RELEASE)
    assert gate.status == "WARN"
    assert gate.evidence["models"]["m"]["total_change"] == pytest.approx(0.5)
    assert all("s:" not in w for w in gate.evidence["warnings"])  # shadow: reported only
    top = gate.evidence["models"]["m"]["top_units"]
    assert len(top) == RELEASE.diff_top_units
    assert abs(top[0]["change"]) >= abs(top[-1]["change"])
    dropped = forecast_diff_gate({"m": prod["m"]}, prod, RELEASE)
    assert dropped.status == "WARN" and "no longer forecast: s" in dropped.summary
    assert forecast_diff_gate(None, prod, RELEASE, reason="x").status == "SKIP"


# --------------------------------------------------------------------------- report, settings


evidence_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3), max_leaves=10)


@given(statuses=st.lists(st.sampled_from(["PASS", "WARN", "FAIL", "SKIP"]), min_size=7,
                         max_size=7),
       evidence=st.dictionaries(st.text(max_size=8), evidence_values, max_size=4))
@settings(max_examples=50, deadline=None)
def test_report_round_trips_through_json(statuses: list[str], evidence: dict) -> None:
    gates = tuple(GateResult(g, s, f"{g} {s}", evidence) for g, s in zip(
        ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff"),
        statuses, strict=True))
    report = StagingReport("a" * 40, "development", None, {"cm": "cm-1"}, gates, "t0", "t1",
                           "r.json", "r.html")
    again = StagingReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert report.passed == ("FAIL" not in statuses)
    assert report.failed_gates() == [g.gate for g in gates if g.status == "FAIL"]


def test_gate_result_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown gate"):
        GateResult("speed", "PASS", "", {})
    with pytest.raises(ValueError, match="not one of"):
        GateResult("sync", "OK", "", {})


@pytest.mark.parametrize(("text", "key"), [
    ("[release]\ntolerance = -0.1\n", "release.tolerance"),
    ("[release]\nsignificance = 1.5\n", "release.significance"),
    ("[release]\ndrift_fail_severity = 'LOUD'\n", "release.drift_fail_severity"),
    ("[release]\nmetric = 'crps'\n", "release.metric"),
    ("[release]\ntest_command = []\n", "release.test_command"),
])
def test_release_settings_refuse_bad_values(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=key):
        load_settings(cfg)


def test_staging_settings_isolate_production() -> None:
    """Production's file keeps every result-shaping key; only the isolating keys change."""
    text = settings_text('[partitions]\nsteps = 36\n[run]\nstate_url = "postgresql://h/db"\n'
                         '[alerts.webhook]\nenabled = true\n')
    from tomllib import loads

    doc = loads(text)
    assert doc["partitions"] == {"steps": 36}
    assert doc["run"]["state_url"] == "" and doc["run"]["publish_environments"] == []
    assert doc["alerts"]["webhook"]["enabled"] is False
    assert doc["tracking"]["enabled"] is False
    assert snapshot_key({"pgm": "pgm-0123456789ab", "cm": "cm-abcdef012345"}) == \
        "cm-abcdef01_pgm-01234567"


# --------------------------------------------------------------------------- performance


def test_performance_gate_when_an_evaluation_fails() -> None:
    """The candidate failing to evaluate FAILS; both sides failing (e.g. data too short for
    the validation window) is a SKIP of that run type; production failing alone leaves the
    baseline rule (here: nothing judged) and a WARN that no regression test ran."""
    broken = CommandResult(("evaluate",), 1, None, "Traceback\nValueError: boom\n")
    short = CommandResult(("evaluate",), 2, {"error": "data end before 540"}, "")
    empty = CommandResult(("evaluate",), 0, {"run_id": "r", "path": ".", "models": []}, "")
    failed = performance_gate({"calibration": (broken, empty)}, {}, RELEASE)
    assert failed.status == "FAIL" and "ValueError: boom" in failed.summary
    both = performance_gate({"validation": (short, short)}, {}, RELEASE)
    assert both.status == "SKIP"
    assert both.evidence["run_types"]["validation"]["production_error"] == "data end before 540"
    alone = performance_gate({"calibration": (empty, short)}, {}, RELEASE)
    assert alone.status == "WARN" and "no regression test" in alone.summary


# --------------------------------------------------------------------------- tests


def test_tests_gate_runs_the_candidates_suite(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test_one.py").write_text("def test_one():\n    assert 2 + 2 == 5\n")
    side = Side("candidate", "0" * 40, tree, tmp_path / "state")
    failed = suite_gate(side, RELEASE, None)
    assert failed.status == "FAIL" and failed.evidence["exit_code"] == 1
    assert "1 failed" in failed.summary and "assert (2 + 2) == 5" in failed.evidence["output_tail"]
    (tree / "tests" / "test_one.py").write_text("def test_one():\n    assert 2 + 2 == 4\n")
    passed = suite_gate(side, RELEASE, None)
    assert passed.status == "PASS" and "1 passed" in passed.summary
    assert passed.evidence["command"] == "python -m pytest -q -x"
    skipped = suite_gate(side, RELEASE, "CI ran them")
    assert skipped.status == "SKIP" and skipped.evidence["reason"] == "CI ran them"
    with pytest.raises(InputError, match="skip_tests_reason"):
        suite_gate(side, RELEASE, "  ")
    bare = Side("candidate", "0" * 40, tmp_path, tmp_path / "state")
    assert suite_gate(bare, RELEASE, None).status == "SKIP"


# --------------------------------------------------------------------------- wild forecasts


def _evaluation(root: Path, panel, *, wild: float | None = None) -> CommandResult:
    """A stored evaluation run (``ewspipe evaluate --json``) of a deployed model ``m`` and a
    zero baseline ``z`` on two origins; ``wild`` replaces one point of ``m``."""
    from ewspipe.models.forecast import Forecast
    from ewspipe.store.predictions import write_forecast

    units = np.sort(panel.forecast_entities())
    frame = panel.frame.set_index(["month_id", "country_id"])["ged_sb"]
    parts = []
    for origin in (470, 471):
        steps = np.repeat(np.arange(1, 37), len(units))
        parts.append(pd.DataFrame({"origin": origin, "step": steps, "month_id": origin + steps,
                                   "country_id": np.tile(units, 36)}))
    index = pd.concat(parts, ignore_index=True)
    actual = frame.reindex(pd.MultiIndex.from_frame(index[["month_id", "country_id"]]))
    point = np.nan_to_num(actual.to_numpy(dtype=float)) * 0.8 + 0.5
    if wild is not None:
        point[100] = wild
    models = []
    for name, values, status, msle in (("m", point, "deployed", 0.3),
                                       ("z", np.zeros_like(point), "baseline", 2.0)):
        write_forecast(Forecast(index.copy(), values, values[:, None], "country_id"),
                       root / "predictions" / f"{name}.parquet",
                       metadata={"model": name, "target": "ged_sb"})
        models.append({"model": name, "level": "cm", "kind": "model", "status": status,
                       "predictions": f"predictions/{name}.parquet",
                       "metrics": {"pooled": {"msle": msle}}})
    return CommandResult(("evaluate",), 0, {"run_id": root.name, "path": str(root),
                                            "models": models}, "")


def test_performance_gate_fails_a_candidate_with_one_wild_forecast(demo, tmp_path: Path) -> None:
    """One forecast above the QA ceiling barely moves the pooled MSLE (so the regression test
    alone cannot catch it) but FAILS the gate, on whichever partition it appears, named."""
    settings_, snaps, _ = demo
    panel = SnapshotStore(settings_.snapshot_dir).load(snaps["cm"])
    ceiling = 10.0 * max(float(panel.frame["ged_sb"].max()), 1.0)
    prod = _evaluation(tmp_path / "prod", panel)
    same = _evaluation(tmp_path / "same", panel)
    wild = _evaluation(tmp_path / "wild", panel, wild=ceiling * 3)
    panels = {"cm": (snaps["cm"], panel)}
    assert performance_gate({"calibration": (same, prod)}, panels, RELEASE).status == "PASS"
    gate = performance_gate({"calibration": (same, prod), "validation": (wild, prod)}, panels,
                            RELEASE, max_forecast_factor=10.0)
    assert gate.status == "FAIL"
    # the regression rule alone would only have warned: one row is not significant
    findings = gate.evidence["run_types"]["validation"]["findings"]
    assert any("m: msle" in f and "not significant" in f for f in findings)
    [found] = gate.evidence["run_types"]["validation"]["implausible"]
    row = pd.read_parquet(tmp_path / "wild" / "predictions" / "m.parquet").iloc[100]
    assert found["model"] == "m" and found["unit"] == row["country_id"]
    assert found["month_id"] == row["month_id"] and found["value"] == ceiling * 3
    assert found["ceiling"] == pytest.approx(ceiling)
    assert gate.summary.startswith(
        f"validation m: forecast {ceiling * 3:,.0f} for country_id {row['country_id']}, month "
        f"{row['month_id']}")
    assert f"ceiling {ceiling:,.0f}" in gate.summary
    assert gate.evidence["run_types"]["calibration"]["implausible"] == []
    # a stricter production factor catches a smaller excess
    strict = _evaluation(tmp_path / "strict", panel, wild=ceiling * 0.5)
    assert performance_gate({"calibration": (strict, prod)}, panels,
                            RELEASE).status != "FAIL"
    assert performance_gate({"calibration": (strict, prod)}, panels, RELEASE,
                            max_forecast_factor=2.0).status == "FAIL"


def test_inference_gate_fails_a_wild_forecast_and_reports_the_pipeline_qa(demo) -> None:
    settings_, snaps, _ = demo
    panel = SnapshotStore(settings_.snapshot_dir).load(snaps["cm"])
    ceiling = 10.0 * float(panel.frame["ged_sb"].max())
    wild = _forecast(panel)
    wild.frame.loc[5, "point"] = ceiling * 2
    gate = _inference(panel, {"m": wild})
    assert gate.status == "FAIL"
    [problem] = gate.evidence["items"]["m"]["problems"]
    assert problem.startswith(f"implausible value {ceiling * 2:,.0f} (country_id "
                              f"{wild.frame.loc[5, 'unit']}, month")
    # the pipeline's own QA failed a forecast: the gate says so even when its checks pass
    good = _forecast(panel)
    qa = {"passed": False, "failed": [{"model": "m", "passed": False,
                                       "problems": ["implausible value 9 (country_id 1)"]},
                                      {"model": "base", "passed": False,
                                       "problems": ["negative values"]}]}
    ran = CommandResult(("run",), 1, {"run_id": "r", "qa": qa}, "")
    items = [{"name": "m", "status": "deployed", "kind": "model"}]
    gate = inference_gate(items, ran, ran, {"m": good}, {"m": good},
                          panels={"cm": ("cm-x", panel)}, steps=36, artifacts={})
    assert gate.status == "FAIL"
    assert gate.evidence["items"]["m"]["problems"] == [
        "the pipeline's QA failed: implausible value 9 (country_id 1)"]
    assert "base: the pipeline's QA failed: negative values" in gate.evidence["failures"]
