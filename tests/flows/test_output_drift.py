"""Output drift: a forecast run vs the same models' previous forecasts, alerts beyond bounds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import InputError
from ewspipe.flows.output_drift import check_output_drift
from ewspipe.models.forecast import Forecast
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings
from ewspipe.store.predictions import write_forecast
from ewspipe.store.runs import RunStore

UNITS = tuple(range(1, 11))
Value = Callable[[int, int], float]  # (month_id, unit) -> predicted deaths


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("EWSPIPE_STATE_DIR", raising=False)
    monkeypatch.delenv("EWSPIPE_CONFIG", raising=False)
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n[qa.output_drift]\nmax_alerts = 2\n')
    return load_settings(cfg)


def _forecast(origin: int, value: Value, units=UNITS) -> Forecast:
    rows = [(origin, s, origin + s, u) for s in range(1, 37) for u in units]
    frame = pd.DataFrame(rows, columns=["origin", "step", "month_id", "country_id"])
    point = np.array([value(m, u) for _, _, m, u in rows], dtype=np.float64)
    return Forecast(frame, point, point[:, None].copy(), "country_id")


def _run(settings: Settings, origin: int, models: dict[str, tuple[str, Value]],
         kind: str = "forecast", config_hash: str = "c1") -> str:
    """A stored run with one forecast per model (status, value function)."""
    writer = RunStore(settings.runs_dir).begin(kind, "forecasting")
    entries = []
    for name, (status, value) in models.items():
        rel = f"predictions/{name}.parquet"
        write_forecast(_forecast(origin, value), writer.path / rel, metadata={
            "model": name, "config_hash": config_hash, "target": "ged_sb", "status": status})
        entries.append({"model": name, "level": "cm", "status": status, "kind": "model",
                        "predictions": rel, "artifact": ""})
    writer.commit({"kind": kind, "run_type": "forecasting", "started_at": "2024-01-01T00:00:00Z",
                   "partition": {"cm": {"origins": [origin], "steps": 36}},
                   "snapshots": {}, "models": entries})
    return writer.run_id


def calm(m: int, u: int) -> float:
    return float(u)  # unit u predicts u deaths a month, every month


def test_a_steady_forecast_raises_nothing(settings):
    _run(settings, 500, {"amber_tree": ("deployed", calm)})
    new = _run(settings, 501, {"amber_tree": ("deployed", calm)})
    report = check_output_drift(settings, new)
    (m,) = report.models
    assert m.previous_origin == 500 and m.skipped is None and not m.config_changed
    assert m.change is not None and m.change.rows == 35 * len(UNITS)
    assert m.change.total_ratio == 1.0 and m.change.max_jump == 0.0
    assert report.alerts == []
    assert report.path is not None and json.loads(report.path.read_text())["run_id"] == new


def test_total_jump_and_share_alerts(settings):
    _run(settings, 500, {"amber_tree": ("deployed", calm)})
    new = _run(settings, 501, {"amber_tree": ("deployed", lambda m, u: 3.0 * u)})
    alerts = check_output_drift(settings, new).alerts
    rules = [a.details["rule"] for a in alerts]
    assert rules.count("total") == 1
    total = next(a for a in alerts if a.details["rule"] == "total")
    assert total.source == "output_drift" and total.run_id == new
    assert total.value == pytest.approx(3.0) and "max_total_ratio" in total.message
    # log1p(3u) - log1p(u) > 2 for no u in 1..10: no unit jumps; the share is unchanged
    assert set(rules) == {"total"}

    quiet = _run(settings, 502, {"amber_tree": ("deployed", lambda m, u: 0.0 if u > 3
                                                 else 3.0 * u)})
    alerts = check_output_drift(settings, quiet).alerts
    share = next(a for a in alerts if a.details["rule"] == "nonzero_share")
    assert share.value == pytest.approx(-0.7) and "100.0% -> 30.0%" in share.message


def test_unit_jumps_name_the_unit_and_fold_beyond_max_alerts(settings):
    _run(settings, 500, {"amber_tree": ("deployed", calm)})
    jumpy = {4: 500.0, 7: 300.0, 9: 900.0}  # three units jump far in month 520
    new = _run(settings, 501, {"amber_tree": (
        "deployed", lambda m, u: jumpy[u] if m == 520 and u in jumpy else calm(m, u))})
    alerts = [a for a in check_output_drift(settings, new).alerts
              if a.details["rule"] == "unit_jump"]
    # largest |log1p change| first: 4 -> 500 (4.61), 9 -> 900 (4.50); 7 -> 300 folds
    assert [a.offender for a in alerts[:2]] == ["amber_tree country_id=4",
                                                "amber_tree country_id=9"]
    assert "2023-04" in alerts[0].message  # month 520
    assert alerts[2].details["units"] == [7] and "1 more units" in alerts[2].message
    assert "country_id=4 jumped" in alerts[0].message and "label" not in alerts[0].details


def test_unit_jump_alerts_name_the_country(settings):
    names = {4: ("Ukraine", "UKR"), 7: ("Colombia", "COL")}  # 9 has no name in the data
    cm = pd.DataFrame([{"month_id": m, "country_id": u, "ged_sb": 1,
                        "country_name": names.get(u, ("", ""))[0] or None,
                        "isoab": names.get(u, ("", ""))[1] or None}
                       for m in range(400, 420) for u in UNITS])
    import_frame(cm, "cm", SnapshotStore(settings.snapshot_dir), source={"kind": "test"},
                 source_name="named cm", limits=InputLimits(min_months=1))
    _run(settings, 500, {"amber_tree": ("deployed", calm)})
    new = _run(settings, 501, {"amber_tree": (
        "deployed", lambda m, u: 500.0 if m == 520 and u in (4, 9) else calm(m, u))})
    alerts = [a for a in check_output_drift(settings, new).alerts
              if a.details["rule"] == "unit_jump"]
    assert [a.offender for a in alerts] == ["amber_tree country_id=4",
                                            "amber_tree country_id=9"]  # ids stay the key
    assert "amber_tree (cm): Ukraine (UKR, 4) jumped from 4 to 500.0 " in alerts[0].message
    assert alerts[0].details["label"] == "Ukraine (UKR, 4)"
    assert "country_id=9 jumped" in alerts[1].message  # no name: the id wording


def test_previous_is_the_latest_earlier_origin_and_baselines_only_measure(settings):
    _run(settings, 498, {"amber_tree": ("deployed", lambda m, u: 100.0),
                         "last_value": ("baseline", calm)})
    older = _run(settings, 499, {"amber_tree": ("deployed", calm),
                                 "last_value": ("baseline", calm)})
    rerun = _run(settings, 499, {"amber_tree": ("deployed", calm),
                                 "last_value": ("baseline", calm)})
    _run(settings, 503, {"amber_tree": ("deployed", calm)})  # later origin: never "previous"
    new = _run(settings, 501, {"amber_tree": ("deployed", calm),
                               "last_value": ("baseline", lambda m, u: 50.0 * u),
                               "fresh_model": ("shadow", calm)}, config_hash="c2")
    report = check_output_drift(settings, new)
    by = {m.model: m for m in report.models}
    assert by["amber_tree"].previous_run == rerun != older
    assert by["amber_tree"].previous_origin == 499 and by["amber_tree"].config_changed
    assert by["last_value"].change is not None and by["last_value"].change.total_ratio == 50.0
    assert by["last_value"].alerts == []  # baselines are measured, not alerted on
    assert by["fresh_model"].skipped == "no earlier forecast of this model is stored"
    assert report.alerts == []


def test_no_shared_months_and_bad_runs(settings):
    _run(settings, 400, {"amber_tree": ("deployed", calm)})
    new = _run(settings, 501, {"amber_tree": ("deployed", lambda m, u: 1000.0)})
    (m,) = check_output_drift(settings, new).models
    assert m.skipped is not None and "no shared target month" in m.skipped
    ev = _run(settings, 501, {"amber_tree": ("deployed", calm)}, kind="evaluate")
    with pytest.raises(InputError, match="output drift compares forecast runs"):
        check_output_drift(settings, ev)
    with pytest.raises(InputError, match="no run"):
        check_output_drift(settings, "nonexistent")


def test_delivery_goes_to_the_alert_log(settings):
    _run(settings, 500, {"amber_tree": ("deployed", calm)})
    new = _run(settings, 501, {"amber_tree": ("deployed", lambda m, u: 10.0 * u)})
    report = check_output_drift(settings, new, deliver=True)
    assert report.delivery is not None and report.delivery["alerts"] == len(report.alerts) > 0
    lines = (settings.state_dir / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["source"] for x in lines] == ["output_drift"] * len(report.alerts)


MODEL = """
name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A simple model."
features = []
"""


def test_forecast_runs_check_output_drift_at_the_end(cli, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "last_value.toml").write_text(MODEL.format(name="last_value", algorithm="locf",
                                                         status="deployed"))
    (models / "zero_line.toml").write_text(MODEL.format(name="zero_line", algorithm="zero",
                                                        status="baseline"))
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n[tracking]\nenabled = false\n')

    def go(*args: str):
        res = cli("--config", str(cfg), *args)
        assert res.code == 0, res.err
        return res.json()

    docs = []
    for month in (480, 481):
        snap = go("data", "demo", "--countries", "30", "--pgm-cells", "50", "--last-month",
                  str(month), "--json")
        docs.append(go("forecast", "--level", "cm", "--json", "--snapshot",
                       snap["cm"]["snapshot"]))
    first, second = docs
    assert first["output_drift"]["models"] == {
        "last_value": "no earlier forecast of this model is stored",
        "zero_line": "no earlier forecast of this model is stored"}
    assert second["output_drift"]["models"]["last_value"] == f"vs {first['run_id']}"
    report = json.loads(Path(second["output_drift"]["path"]).read_text())
    assert report["run_id"] == second["run_id"]
    n = second["output_drift"]["alerts"]
    assert second["alert_delivery"]["alerts"] == len(second["alerts"]) + n
