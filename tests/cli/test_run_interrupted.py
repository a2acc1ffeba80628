"""A killed monthly run does not stay `running` forever: the next run of the environment
(holding its lock, so no run of that state folder is alive) marks it `interrupted`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.flows.monthly_workspace import write_monthly_workspace

from ewspipe.flows.runner import PAUSE_ENV
from ewspipe.store.statedb import open_state_db


def _statuses(env_state: Path) -> dict[str, str]:
    if not (env_state / "state.db").is_file():
        return {}
    return {r["run_id"]: r["status"] for r in open_state_db("", env_state).runs("development")}


def test_a_killed_run_is_marked_interrupted_by_the_next(tmp_path: Path, state_dir: Path, cli):
    ws = write_monthly_workspace(tmp_path / "ws")
    assert cli("--config", str(ws), "data", "demo", "--json").code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("EWSPIPE_CONFIG",
                                                             "EWSPIPE_STATE_DIR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ewspipe", "--state-dir", str(state_dir), "--config", str(ws),
         "run", "--quiet"], env={**env, PAUSE_ENV: "qa=120"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env_state = state_dir / "development"
    try:
        deadline = time.monotonic() + 120
        while "running" not in _statuses(env_state).values():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never recorded itself as running"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)  # reaped: its pid is gone
    finally:
        if proc.poll() is None:
            proc.kill()
    (killed,) = [r for r, s in _statuses(env_state).items() if s == "running"]
    again = cli("--config", str(ws), "run", "--json")
    assert again.code == 0, again.err
    after = _statuses(env_state)
    assert after[killed] == "interrupted"
    assert after[again.json()["run_id"]] == "ok"
    record = next(r for r in open_state_db("", env_state).runs("development")
                  if r["run_id"] == killed)
    assert "killed or crashed" in record["error"] and record["finished_at"]
