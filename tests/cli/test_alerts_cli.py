"""`ewspipe alerts list`: read, filter and print the alert log."""

from __future__ import annotations

import json

import pytest

from ewspipe.alerts.log import AlertLog
from ewspipe.alerts.records import Alert, Severity


@pytest.fixture
def recorded(state_dir) -> AlertLog:
    log = AlertLog.in_state_dir(state_dir)
    log.extend([
        Alert("drift.ks_drift", Severity.WARNING, "ks one", offender="global",
              time="2024-05-01T00:00:00Z"),
        Alert("drift.unit_missingness", Severity.CRITICAL, "unit gone",
              offender="country_id=59", time="2024-06-01T08:00:00Z"),
        Alert("reconciliation", Severity.ERROR, "cm != sum pgm", time="2024-07-01T00:00:00Z"),
        Alert("drift.extreme_values", Severity.INFO, "info only", time="2024-07-02T00:00:00Z"),
    ])
    return log


def test_empty_log(cli):
    res = cli("alerts", "list")
    assert res.code == 0 and res.out.startswith("no alerts in ")
    doc = cli("alerts", "list", "--json").json()
    assert doc["count"] == 0 and doc["alerts"] == [] and doc["file"].endswith("alerts.jsonl")


def test_lists_everything_oldest_first(cli, recorded):
    res = cli("alerts", "list")
    assert res.code == 0
    lines = res.out.splitlines()
    assert len(lines) == 4 and "ks one" in lines[0] and "info only" in lines[-1]
    assert "CRITICAL drift.unit_missingness" in lines[1] and "country_id=59" in lines[1]
    doc = json.loads(cli("alerts", "list", "--json").out)
    assert doc["count"] == 4 and doc["alerts"][1]["severity"] == "CRITICAL"


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (("--severity", "ERROR"), ["unit gone", "cm != sum pgm"]),
        (("--severity", "warning"), ["ks one", "unit gone", "cm != sum pgm"]),
        (("--since", "2024-06-01T08:00:00Z"), ["unit gone", "cm != sum pgm", "info only"]),
        (("--since", "2024-06-15"), ["cm != sum pgm", "info only"]),
        (("--since", "2024-06-01T10:00+02:00"), ["unit gone", "cm != sum pgm", "info only"]),
        (("--source", "drift"), ["ks one", "unit gone", "info only"]),
        (("--source", "drift", "--severity", "WARNING", "--limit", "1"), ["unit gone"]),
        (("--since", "2030-01-01"), []),
    ],
)
def test_filters(cli, recorded, args, messages):
    doc = cli("alerts", "list", *args, "--json").json()
    assert [a["message"] for a in doc["alerts"]] == messages


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--since", "last week"), "--since: 'last week' is not an ISO date"),
        (("--severity", "LOUD"), "'LOUD' is not one of 'info', 'warning', 'error', 'critical'"),
        (("--limit", "0"), "--limit"),
    ],
)
def test_malformed_options_exit_2(cli, recorded, args, needle):
    res = cli("alerts", "list", *args)
    assert res.code == 2 and needle in res.err
    res = cli("alerts", "list", *args, "--json")
    assert res.code == 2
    if res.out:
        assert res.json()["exit_code"] == 2


def test_corrupt_log_is_named(cli, recorded):
    with recorded.path.open("a") as fh:
        fh.write("oops\n")
    res = cli("alerts", "list")
    assert res.code == 2 and "line 5: not an alert record" in res.err


def test_drift_alerts_show_up(cli, tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    months, units = np.arange(400, 445), 80
    frame = pd.DataFrame({
        "month_id": np.repeat(months, units),
        "country_id": np.tile(np.arange(1, units + 1), len(months)),
        "ged_sb": (rng.random(len(months) * units) < 0.2) * rng.integers(1, 90, len(months)
                                                                          * units),
    })
    frame = frame[~((frame["month_id"] == 444) & (frame["country_id"] == 9))]
    frame.to_csv(tmp_path / "p.csv", index=False)
    assert cli("data", "import", "panel", str(tmp_path / "p.csv"), "--level", "cm").code == 0
    doc = cli("alerts", "list", "--source", "drift.unit_missingness", "--json").json()
    assert doc["count"] == 1 and doc["alerts"][0]["offender"] == "country_id=9"
    assert doc["alerts"][0]["details"]["detector"] == "unit_missingness"


def test_env_reads_the_environment_log(cli, state_dir, recorded):
    """--env shows the log a monthly run of that environment writes, not the workspace's."""
    env_log = AlertLog.in_state_dir(state_dir / "production")
    env_log.extend([Alert("run", Severity.ERROR, "monthly run failed",
                          time="2024-08-01T00:00:00Z")])
    doc = cli("alerts", "list", "--env", "production", "--json").json()
    assert doc["count"] == 1 and doc["alerts"][0]["message"] == "monthly run failed"
    assert doc["file"] == str(env_log.path)
    assert cli("alerts", "list", "--json").json()["count"] == 4  # the workspace log
    empty = cli("alerts", "list", "--env", "staging")
    assert empty.code == 0 and empty.out.startswith("no alerts in ")


@pytest.mark.parametrize("env", ["nowhere", "../production"])
def test_unknown_env_is_refused(cli, env):
    res = cli("alerts", "list", "--env", env, "--json")
    assert res.code == 2
    doc = res.json()
    assert "--env" in doc["error"] and repr(env) in doc["error"] and "production" in doc["error"]
