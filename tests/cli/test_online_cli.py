"""`ewspipe online-eval` and `ewspipe qa output-drift | guards` end to end: exit codes, JSON,
bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ewspipe.models.forecast import Forecast
from ewspipe.store.predictions import read_forecast, write_forecast

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

CONFIG = """
[workspace]
state_dir = "state"

[tracking]
enabled = false

[qa.online]
window_months = 2
baseline_tolerance = 1000.0
"""


@pytest.fixture
def ws(tmp_path: Path, cli):
    """Forecasts at origins 480 and 481 (LOCF deployed, zero baseline), actuals through 490."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "last_value.toml").write_text(MODEL.format(name="last_value", algorithm="locf",
                                                         status="deployed"))
    (models / "zero_line.toml").write_text(MODEL.format(name="zero_line", algorithm="zero",
                                                        status="baseline"))
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(CONFIG)

    def go(*args: str):
        return cli("--config", str(cfg), *args)

    go.snapshots, go.runs = {}, []  # type: ignore[attr-defined]
    for month in (480, 481, 490):
        res = go("data", "demo", "--countries", "20", "--pgm-cells", "50", "--last-month",
                 str(month), "--json")
        assert res.code == 0, res.err
        go.snapshots[month] = res.json()["cm"]["snapshot"]  # type: ignore[attr-defined]
        if month < 490:
            res = go("forecast", "--level", "cm", "--snapshot", go.snapshots[month], "--json")
            assert res.code == 0, res.err
            go.runs.append(res.json())  # type: ignore[attr-defined]
    go.config = cfg  # type: ignore[attr-defined]
    return go


def test_online_eval_json_and_text(ws):
    res = ws("online-eval", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["actuals"]["cm"]["snapshot"] == ws.snapshots[490]
    assert doc["actuals"]["cm"]["last_month"] == 490
    models = {m["model"]: m for m in doc["models"]}
    assert set(models) == {"last_value", "zero_line"}
    lv = models["last_value"]
    assert [r["origin"] for r in lv["runs"]] == [480, 481]
    assert lv["scored"] + lv["pending"]["rows"] + lv["missing_actuals"] == lv["rows"]
    assert lv["pending"]["first"] == 491 and lv["pending"]["last"] == 517
    assert [s["step"] for s in lv["by_step"]] == list(range(1, 11))
    assert lv["assessment"]["window"]["months"] == [489, 490]
    assert doc["alerts"] == [] and doc["rule"]["window_months"] == 2
    assert Path(doc["files"]["scores"]).is_file()
    lean = ws("online-eval", "--json", "--no-steps").json()
    assert all(m["by_step"] is None for m in lean["models"])
    text = ws("online-eval")
    assert text.code == 0
    assert "Online evaluation" in text.out and "last_value" in text.out
    assert "alerts: 0" in text.out


def test_online_eval_exits_1_when_a_deployed_model_alerts(ws):
    cfg: Path = ws.config
    cfg.write_text(CONFIG.replace("baseline_tolerance = 1000.0", "baseline_tolerance = 0.0"))
    for run in ws.runs:  # the deployed model goes badly wrong
        entry = next(m for m in run["models"] if m["model"] == "last_value")
        path = Path(run["path"]) / entry["predictions"]
        fc, meta = read_forecast(path)
        write_forecast(Forecast(fc.frame, fc.point * 50 + 100, fc.samples * 50 + 100,
                                fc.unit_column), path, metadata=meta)
    res = ws("online-eval", "--json")
    assert res.code == 1
    alerts = res.json()["alerts"]
    assert alerts and {a["source"] for a in alerts} == {"online_eval"}
    assert alerts[0]["offender"] == "last_value" and alerts[0]["severity"] == "ERROR"
    text = ws("online-eval", "--no-alerts")
    assert text.code == 1 and "worse than baseline zero_line" in text.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("online-eval", "--snapshot", "cm-00000000"), "no snapshot"),
        (("online-eval", "--bogus"), "--bogus"),
        (("qa", "output-drift", "nonexistent"), "no run"),
        (("qa", "guards", "--run", "x", "--snapshot", "y"), "exclude each other"),
        (("qa", "guards", "--expected-last-month", "0"), "expected-last-month"),
        (("qa", "guards", "--snapshot", "cm-00000000"), "no snapshot"),
    ],
)
def test_bad_options_exit_2(ws, args, needle):
    res = ws(*args)
    assert res.code == 2, res.out
    assert needle in res.err


def test_two_snapshots_of_a_level_and_no_runs_exit_2(ws, cli, tmp_path):
    res = ws("online-eval", "--snapshot", ws.snapshots[480], "--snapshot", ws.snapshots[490],
             "--json")
    assert res.code == 2 and res.json()["exit_code"] == 2
    assert "two snapshots given for level cm" in res.json()["error"]
    res = cli("--state-dir", str(tmp_path / "nothing"), "online-eval", "--json")  # last wins
    assert res.code == 2 and "no stored forecast run" in res.json()["error"]


def test_qa_output_drift(ws):
    second = ws.runs[1]
    res = ws("qa", "output-drift", second["run_id"], "--json", "--no-alerts")
    assert res.code in (0, 1)
    doc = res.json()
    assert doc["run_id"] == second["run_id"]
    models = {m["model"]: m for m in doc["models"]}
    assert models["last_value"]["previous_origin"] == 480
    assert models["last_value"]["change"]["rows"] == 35 * 20 or \
        models["last_value"]["change"]["units_shared"] > 0
    assert res.code == (1 if doc["alerts"] else 0)
    first = ws("qa", "output-drift", ws.runs[0]["run_id"])
    assert first.code == 0 and "no earlier forecast" in first.out


def test_qa_guards(ws):
    stale = ws("qa", "guards", "--json")  # the demo data ends 2021-07, long before today
    assert stale.code == 1
    doc = stale.json()
    assert not doc["passed"]
    assert "last_month" in {c["guard"] for c in doc["checks"] if not c["passed"]}
    assert "refusing to publish" in stale.err and "import cm data through" in stale.err
    fresh = ws("qa", "guards", "--snapshot", ws.snapshots[490], "--expected-last-month", "490",
               "--json")
    assert fresh.code == 0 and fresh.json()["passed"]
    run = ws.runs[1]
    res = ws("qa", "guards", "--run", run["run_id"], "--expected-last-month", "481")
    assert res.code == 0 and "Verdict: PASS" in res.out
    assert "[ok  ] artifact" in res.out
    assert np.isfinite(fresh.json()["expected_last_month"])
