"""`ewspipe run` and `ewspipe forecasts` end to end: full run, re-run, publish, kill -9 and
resume, two concurrent runs, bad options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.flows.monthly_workspace import release_workspace  # only a clean release publishes
from tests.flows.monthly_workspace import write_monthly_workspace as write_workspace

from ewspipe.cli.run_summary import alerts_words, drift_words
from ewspipe.settings import load_settings


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_workspace(tmp_path / "ws")


@pytest.fixture
def run(ws: Path, cli):
    def go(*args: str):
        return cli("--config", str(ws), *args)
    return go


def _spawn(ws: Path, state: Path, *args: str, pause: str | None = None,
           ) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EWSPIPE_CONFIG",
                                                             "EWSPIPE_STATE_DIR")}
    if pause:
        env["EWSPIPE_RUN_PAUSE"] = pause
    return subprocess.Popen(
        [sys.executable, "-m", "ewspipe", "--config", str(ws), "--state-dir", str(state), "run",
         "--json", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_full_run_rerun_and_publish(run, ws, state_dir):
    res = run("run", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["status"] == "ok" and doc["reused"] == []
    assert {"train:small_tree", "forecast:grid_ridge", "ensembles", "qa", "store", "report",
            "alerts"} <= set(doc["ran"])
    assert all(t["seconds"] >= 0 for t in doc["tasks"])
    assert "start  train:small_tree" in res.err  # progress lines on stderr
    assert doc["outputs"]["published"] is None  # development never publishes

    again = run("run", "--json").json()
    assert again["ran"] == ["snapshot"]
    assert again["outputs"] == doc["outputs"]

    release_workspace(ws, state_dir)
    prod = run("run", "--env", "production")
    assert prod.code == 0, prod.err
    assert "published cm/ged_sb: small_chorus" in prod.out
    pub = run("forecasts", "published", "--level", "pgm", "--json").json()
    assert pub["current"]["primary"] == "grid_chorus"
    # each pointer records the release and the data month it was published with (rollback)
    assert pub["current"]["release"]["tag"] == "v0.1.0" and pub["current"]["last_month"] == 520
    assert [h["run"] for h in pub["history"]] == [pub["current"]["run"]]

    q = run("forecasts", "query", "--level", "cm", "--model", "small_chorus", "--month", "521",
            "--env", "production", "--published", "--json")
    assert q.code == 0, q.err
    rows = q.json()["predictions"]
    assert rows and {r["month_id"] for r in rows} == {521}
    assert all(r["point"] >= 0 for r in rows)

    text = run("run")
    assert "tasks: 1 ran" in text.out and "predictions:" in text.out
    # the plain-language end: what was forecast, the top countries, verdicts, next steps
    summary = text.out.split("\nSummary\n", 1)[1]
    assert "Forecast cm, pgm with " in summary and "for the 36 months after month 520" in summary
    assert "Top 5 countries by small_chorus for month 521" in summary
    assert "Drift self-test: " in summary and "{" not in summary  # words, not a dict
    assert "Next:" in summary and "ewspipe serve" in summary
    assert doc["outputs"]["report"] in summary


def test_summary_words_for_a_failed_selftest_and_alarms():
    drift = {"alarms": 2, "max_severity": 2, "failed": False,
             "by_detector": {"nonzero_shift": 1, "positive_shift": 1},
             "selftest": {"passed": False, "failures": [
                 "ks_drift: did not fire on its perturbation 'scale_positives'"]}}
    words = drift_words(drift, load_settings())
    assert words.startswith("drift: 2 alarms (WARNING; nonzero_shift 1, positive_shift 1)")
    assert "drift self-test: FAILED (ks_drift did not fire on 'scale_positives')" in words
    assert "ok" not in words
    assert drift_words({"alarms": 0, "selftest": {"passed": True}}) == \
        "drift: no alarms; drift self-test: passed"
    alerts = {"count": 3, "by_source": {"drift.selftest": 1, "drift.ks_drift": 2},
              "by_severity": {"CRITICAL": 1, "WARNING": 2}}
    assert alerts_words(alerts) == ("3 alerts (1 CRITICAL, 2 WARNING): 2 input drift "
                                    "(ks_drift 2), 1 drift self-test failure")
    assert alerts_words(None) == "none"


@pytest.mark.parametrize(("args", "needle"), [
    (("run", "--env", "testing"), "--env"),
    (("run", "--executor", "threads"), "--executor"),
    (("run", "--lock-timeout", "-1"), "--lock-timeout"),
    (("forecasts", "query", "--level", "world", "--model", "x"), "--level"),
    (("forecasts", "query", "--level", "cm", "--model", "nobody"), "no stored forecasts"),
])
def test_bad_options_exit_2(run, args, needle):
    res = run(*args)
    assert res.code == 2, res.out
    assert needle in res.err


def _tasks_done(state: Path) -> int:
    return len(list((state / "tasks").glob("*/*.json")))


def test_killed_run_resumes(ws, state_dir):
    state = state_dir / "development"
    proc = _spawn(ws, state_dir, pause="ensembles=120")
    try:
        deadline = time.monotonic() + 180
        # drift x2 + train x4 + forecast x4 completed, then ensembles sleeps
        while _tasks_done(state) < 10:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "run did not reach the ensembles task"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (state / "predictions").exists()  # nothing stored yet, nothing half-written
    resumed = _spawn(ws, state_dir)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    doc = json.loads(out)
    assert not any(t.startswith(("train:", "forecast:", "drift:")) for t in doc["ran"])
    assert {"ensembles", "qa", "store", "report", "alerts"} <= set(doc["ran"])
    leftovers = [p for p in state.rglob("*") if ".tmp" in p.name
                 and not p.is_relative_to(state / "work")]
    assert leftovers == []


def test_concurrent_runs_are_serialised(ws, run, state_dir):
    assert run("run", "--quiet").code == 0  # warm: the second pass is quick
    lock = state_dir / "development" / "run.lock"
    holder = _spawn(ws, state_dir, pause="snapshot=6")
    try:
        deadline = time.monotonic() + 60
        while not lock.exists() or not lock.read_text().startswith(str(holder.pid)):
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        busy = run("run", "--lock-timeout", "0", "--json")
        assert busy.code == 1
        assert f"pid {holder.pid}" in busy.err and busy.json()["exit_code"] == 1
        waited = run("run", "--lock-timeout", "120", "--json")
        assert waited.code == 0, waited.err
        _, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
        # the waiting run started only after the holder had released the lock
        assert waited.json()["ran"] == ["snapshot"]
        held = [line for line in err.splitlines() if "snapshot" in line]
        assert held, err
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


def test_production_refuses_to_publish_stale_data(run, ws, state_dir):
    """A snapshot whose last month is not the expected one is never published."""
    cfg = ws
    cfg.write_text(cfg.read_text().replace("expected_last_month = 520",
                                           "expected_last_month = 521"))
    release_workspace(cfg, state_dir)
    res = run("run", "--env", "production", "--json")
    doc = res.json()
    assert doc["outputs"]["published"] in (None, [])
    assert any(t["task"] == "publish" and t["status"] == "ran" for t in doc["tasks"])
    pub = run("forecasts", "published", "--level", "cm", "--json")
    assert pub.json().get("current") is None
    text = run("run", "--env", "production")
    assert "expected" in text.out and "521" in text.out
