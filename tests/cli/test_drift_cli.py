"""`ewspipe drift check|selftest|backtest` and the drift summary of every import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.alerts.log import AlertLog
from ewspipe.drift.detectors import DETECTORS, Detector, Measurement

LAST = 444


def write_panel(path: Path, *, drop_last: tuple[int, ...] = (), units: int = 120,
                seed: int = 3) -> Path:
    """A stationary zero-inflated cm table, months 400..444; ``drop_last`` units vanish from
    the last month (a feed losing countries)."""
    rng = np.random.default_rng(seed)
    months = np.arange(400, LAST + 1)
    p = np.where(rng.random(units) < 0.7, 0.0, rng.uniform(0.2, 0.6, units))
    active = rng.random((len(months), units)) < p
    counts = np.where(active, np.ceil(rng.lognormal(3, 1, active.shape)), 0).astype(int)
    frame = pd.DataFrame({"month_id": np.repeat(months, units),
                          "country_id": np.tile(np.arange(1, units + 1), len(months)),
                          "ged_sb": counts.ravel()})
    frame = frame[~((frame["month_id"] == LAST) & frame["country_id"].isin(drop_last))]
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def clean(cli, tmp_path) -> str:
    res = cli("data", "import", "panel", str(write_panel(tmp_path / "clean.csv")),
              "--level", "cm", "--json")
    assert res.code == 0, res.err
    return res.json()["snapshot"]


@pytest.fixture
def broken(cli, tmp_path) -> str:
    path = write_panel(tmp_path / "broken.csv", drop_last=(5, 6, 7))
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert res.code == 0, res.err  # drift never blocks an import
    return res.json()["snapshot"]


# ------------------------------------------------------------------ import


def test_import_reports_drift_in_output_and_manifest(cli, tmp_path):
    path = write_panel(tmp_path / "broken.csv", drop_last=(5, 6, 7))
    res = cli("data", "import", "panel", str(path), "--level", "cm")
    assert res.code == 0, res.err
    assert "Drift (forecasting thresholds; test 2016-12 vs standard 2014-06..2016-11): " \
        in res.out
    assert "FAIL (fail level 3)" in res.out and "country_id=5" in res.out
    again = cli("data", "import", "panel", str(path), "--level", "cm", "--json").json()
    assert again["created"] is False
    assert again["drift"]["failed"] is True and again["drift"]["by_detector"][
        "unit_missingness"] == 3
    snap = again["snapshot"]
    manifest = cli("data", "show", snap, "--json").json()["manifest"]
    assert manifest["extra"]["drift"]["by_detector"]["unit_missingness"] == 3
    assert manifest["extra"]["drift"]["run_type"] == "forecasting"


def test_clean_import_is_quiet_and_records_no_alert(cli, tmp_path, state_dir):
    res = cli("data", "import", "panel", str(write_panel(tmp_path / "c.csv")), "--level", "cm")
    assert res.code == 0 and "vs standard 2014-06..2016-11): quiet" in res.out
    assert AlertLog.in_state_dir(state_dir).read() == []


def test_demo_and_ged_imports_carry_drift(cli, shared_data):
    doc = cli("data", "demo", "--countries", "30", "--pgm-cells", "120", "--last-month", "200",
              "--json").json()
    assert {"alarms", "failed", "top"} <= set(doc["cm"]["drift"])
    assert doc["pgm"]["drift"]["level"] == "pgm"
    events = shared_data / "ucdp_ged_event_samples" / "events"
    sample = sorted(events.glob("*.parquet"))[0]
    res = cli("data", "import", "ged", str(sample), "--allow-short", "--json")
    assert res.code == 0, res.err
    for level in ("cm", "pgm"):
        drift = res.json()[level]["drift"]
        assert "alarms" in drift or "skipped" in drift


def test_short_history_is_reported_not_guessed(cli, tmp_path):
    frame = pd.DataFrame({"month_id": [400, 401, 402], "country_id": [1, 1, 1],
                          "ged_sb": [0, 3, 1]})
    frame.to_csv(tmp_path / "short.csv", index=False)
    res = cli("data", "import", "panel", str(tmp_path / "short.csv"), "--level", "cm",
              "--allow-short")
    assert res.code == 0 and "Drift: not checked (drift needs at least 12 standard months" \
        in res.out
    res = cli("drift", "check")
    assert res.code == 2 and "at least 12 standard months" in res.err


# ------------------------------------------------------------------ check


def test_check_quiet_exits_0_with_one_json_document(cli, clean):
    res = cli("drift", "check", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)  # exactly one document
    assert doc["snapshot"] == clean and doc["failed"] is False and doc["alarms"] == []
    assert doc["test"] == [LAST, LAST] and doc["standard"] == [LAST - 30, LAST - 1]
    assert set(doc["thresholds"]) == set(DETECTORS)
    human = cli("drift", "check", "--snapshot", clean[:6])
    assert human.code == 0 and "Verdict: PASS" in human.out


def test_check_failing_exits_1_and_records_alerts(cli, broken, state_dir):
    res = cli("drift", "check", "--snapshot", broken, "--json")
    assert res.code == 1
    doc = res.json()
    assert doc["failed"] and doc["max_severity"] >= doc["fail_level"] == 3
    offenders = {a["offender"] for a in doc["alarms"] if a["detector"] == "unit_missingness"}
    assert offenders == {"country_id=5", "country_id=6", "country_id=7"}
    assert doc["units"]["dropped"] == [5, 6, 7]
    assert doc["delivery"]["sinks"]["jsonl"]["delivered"] >= 3
    recorded = AlertLog.in_state_dir(state_dir).read(source="drift.unit_missingness")
    assert len(recorded) == 6  # three at import, three at the check
    assert {a.details["snapshot"] for a in recorded} == {broken}
    assert (state_dir / "logs" / "critical.log").is_file()
    human = cli("drift", "check", "--snapshot", broken, "--no-alerts")
    assert human.code == 1 and "Verdict: FAIL" in human.out
    assert len(AlertLog.in_state_dir(state_dir).read(source="drift.unit_missingness")) == 6


def test_fail_level_is_configurable(cli, broken, tmp_path):
    cfg = tmp_path / "lenient.toml"
    cfg.write_text("[drift]\nfail_level = 101\n")  # above the severity cap: report only
    res = cli("--config", str(cfg), "drift", "check", "--snapshot", broken, "--json")
    assert res.code == 0 and res.json()["alarms"] and not res.json()["failed"]
    cfg.write_text("[drift.validation]\nfail_level = 101\n")
    assert cli("--config", str(cfg), "drift", "check", "--run-type", "validation").code == 0
    assert cli("--config", str(cfg), "drift", "check", "--run-type", "forecasting").code == 1


def test_check_an_earlier_month(cli, broken):
    res = cli("drift", "check", "--month", "440", "--json")
    assert res.code == 0 and res.json()["test"] == [440, 440]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("drift", "check", "--run-type", "nowcast"), "'nowcast' is not one of 'calibration'"),
        (("drift", "check", "--month", "9999"), "outside the panel's months"),
        (("drift", "check", "--month", "abc"), "--month"),
        (("drift", "check", "--snapshot", "zzz"), "no snapshot 'zzz'"),
        (("drift", "check", "--level", "grid"), "'grid' is not one of 'cm', 'pgm'"),
        (("drift", "selftest", "--run-type", "x"), "'x' is not one of"),
        (("drift", "backtest"), "--snapshot"),
        (("drift", "backtest", "--snapshot", "cm", "--from", "x"), "--from"),
        (("drift", "nothing"), "nothing"),
    ],
)
def test_malformed_options_exit_2(cli, clean, args, needle):
    res = cli(*args)
    assert res.code == 2, (res.out, res.err)
    assert needle in res.err


def test_malformed_options_with_json_print_an_error_document(cli, clean):
    res = cli("drift", "check", "--run-type", "nowcast", "--json")
    assert res.code == 2 and res.json()["exit_code"] == 2 and res.json()["kind"] == "UsageError"


def test_no_snapshot_yet(cli):
    res = cli("drift", "check")
    assert res.code == 2 and "no cm snapshot" in res.err


# ------------------------------------------------------------------ selftest


def test_selftest_passes_on_clean_data(cli, clean):
    res = cli("drift", "selftest", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["passed"] and len(doc["cases"]) == len(DETECTORS)
    human = cli("drift", "selftest")
    assert human.code == 0 and f"PASS: all {len(DETECTORS)} testable detectors" in human.out
    assert cli("alerts", "list", "--json").json()["count"] == 0  # a pass raises no alert


def test_selftest_fails_loudly_naming_the_broken_detector(cli, clean, monkeypatch):
    def never(w, k):
        return [Measurement(f, "global", np.zeros(0, np.int64), np.array([0.0]))
                for f in w.features]

    monkeypatch.setitem(DETECTORS, "nonzero_shift", Detector("nonzero_shift", "feature", "x",
                                                             never))
    res = cli("drift", "selftest", "--json")
    assert res.code == 1
    doc = res.json()
    assert doc["kind"] == "CheckFailed" and doc["exit_code"] == 1
    assert "nonzero_shift: did not fire on its perturbation 'drop_nonzero'" in doc["error"]
    assert "nonzero_shift" in cli("drift", "selftest").err
    # each failing run is recorded as a CRITICAL alert, like the monthly run's self-test
    alerts = cli("alerts", "list", "--source", "drift.selftest", "--json").json()["alerts"]
    assert [a["severity"] for a in alerts] == ["CRITICAL", "CRITICAL"]
    assert "nonzero_shift" in alerts[0]["message"] and alerts[0]["offender"] == "cm"
    quiet = cli("drift", "selftest", "--no-alerts", "--json")
    assert quiet.code == 1 and quiet.json()["kind"] == "CheckFailed"
    assert cli("alerts", "list", "--source", "drift.selftest", "--json").json()["count"] == 2


def test_selftest_on_unclean_data_fails(cli, broken):
    res = cli("drift", "selftest", "--snapshot", broken)
    assert res.code == 1 and "unit_missingness: fired on the clean data" in res.err


# ------------------------------------------------------------------ backtest


def test_backtest_reports_every_month(cli, broken):
    res = cli("drift", "backtest", "--snapshot", broken, "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["months"] == [412, LAST] and doc["months_tested"] == 33
    unit = doc["detectors"]["unit_missingness"]
    assert unit["months_fired"] == 1 and unit["fired"][0]["month"] == LAST
    assert unit["by_level"]["CRITICAL"] == 1
    assert set(doc["detectors"]) == set(DETECTORS)
    part = cli("drift", "backtest", "--snapshot", broken, "--from", "430", "--to", "440",
               "--json").json()
    assert part["months"] == [430, 440] and part["failing_months"] == 0
    human = cli("drift", "backtest", "--snapshot", broken)
    assert "| unit_missingness | 0.05 | 1 (3.0%) |" in human.out
    assert "- unit_missingness fired on month(severity): 444(21)" in human.out


# ------------------------------------------------------------------ real data


@pytest.mark.shared_data
def test_real_cm_data(cli, shared_data):
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    res = cli("data", "import", "panel", str(path), "--level", "cm", "--json")
    assert res.code == 0 and res.json()["drift"]["alarms"] == 0
    assert cli("drift", "check").code == 0
    sudan = cli("drift", "check", "--month", "380", "--json")  # Sudan's id changes, Aug 2011
    assert sudan.code == 1
    assert {a["offender"] for a in sudan.json()["alarms"]} >= {"country_id=59"}
    assert cli("drift", "selftest").code == 0
    doc = cli("drift", "backtest", "--snapshot", res.json()["snapshot"], "--json").json()
    assert doc["months_tested"] == 403 and doc["share_quiet"] > 0.8
    assert doc["detectors"]["unit_missingness"]["months_fired"] == 14
    for quiet in ("global_zeros", "feature_missingness", "ks_drift", "nonzero_shift"):
        assert doc["detectors"][quiet]["months_fired"] == 0
