"""evaluate/forecast on the one task engine: a killed `ewspipe evaluate` resumes from its
finished models; `ewspipe forecast` and `ewspipe run` share one artifact cache (each reuses
what the other fitted); tasks are keyed by the settings they read (`[api] port` retrains
nothing, a model's hyperparameter retrains that model only)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.flows.monthly_workspace import write_monthly_workspace

from ewspipe.flows.runner import PAUSE_ENV

CM_MODELS = ["small_ridge", "small_tree", "last_value"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_monthly_workspace(tmp_path / "ws")


def _cached_tasks(state: Path) -> int:
    root = state / "tasks"
    return len(list(root.glob("*/*.json"))) if root.is_dir() else 0


def _statuses(doc: dict) -> dict[str, str]:
    return {t["task"]: t["status"] for t in doc["tasks"]}


def test_killed_evaluate_resumes_from_its_finished_models(ws: Path, state_dir: Path, cli):
    assert cli("--config", str(ws), "data", "demo", "--json").code == 0
    args = ["--config", str(ws), "evaluate", "--run-type", "calibration",
            *[a for m in CM_MODELS for a in ("--model", m)], "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("EWSPIPE_CONFIG",
                                                             "EWSPIPE_STATE_DIR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ewspipe", "--state-dir", str(state_dir), *args],
        env={**env, PAUSE_ENV: "predict:last_value=120"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # three fits and the two other models' predictions are done; last_value's sleeps
        while _cached_tasks(state_dir) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "evaluate did not reach predict:last_value"
            time.sleep(0.2)
        # one evaluate/forecast run at a time per state folder: a second one is refused
        second = cli("--config", str(ws), "forecast", "--model", "last_value")
        assert second.code == 1, second
        assert "evaluate/forecast runs" in second.err and "locked by another run" in second.err
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = state_dir / "runs"
    assert not [p for p in runs.iterdir() if (p / "run.json").is_file()]  # nothing committed
    res = cli("--state-dir", str(state_dir), *args)
    assert res.code == 0, res.err
    doc = res.json()
    status = _statuses(doc)
    assert status == {**{f"fit:{m}": "reused" for m in CM_MODELS},
                      "predict:small_ridge": "reused", "predict:small_tree": "reused",
                      "predict:last_value": "ran"}
    models = {m["model"]: m for m in doc["models"]}
    assert all(models[m]["reused"] for m in CM_MODELS)
    assert models["last_value"]["metrics"]["pooled"]["msle"] > 0
    run_dir = Path(doc["path"])
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == sorted(
        f"{m}.parquet" for m in CM_MODELS)
    assert sorted(p.name for p in (run_dir / "metrics").iterdir()) == sorted(
        f"{m}.json" for m in CM_MODELS)
    again = cli("--state-dir", str(state_dir), *args).json()
    assert set(_statuses(again).values()) == {"reused"}
    assert [m["metrics"] for m in again["models"]] == [m["metrics"] for m in doc["models"]]


def _set(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_run_then_forecast_reuses_every_model_and_settings_key_exactly(ws: Path, cli):
    run = cli("--config", str(ws), "run", "--json").json()
    assert run["models"]["reused"] == [] and len(run["models"]["trained"]) == 4
    fc = cli("--config", str(ws), "forecast", "--json")
    assert fc.code == 0, fc.err
    fitted = {m["model"]: m["reused"] for m in fc.json()["models"] if m["kind"] == "model"}
    assert fitted == dict.fromkeys(run["models"]["trained"], True)

    # a setting no task reads changes no key
    with ws.open("a") as fh:
        fh.write("\n[api]\nport = 8123\n")
    assert cli("--config", str(ws), "run", "--json").json()["ran"] == ["snapshot"]
    tasks = cli("--config", str(ws), "forecast", "--json").json()["tasks"]
    assert tasks and {t["status"] for t in tasks} == {"reused"}

    # a model's hyperparameter retrains that model only (and what consumes its forecast)
    _set(ws.parent / "models" / "small_ridge.toml", "seed = 7", "seed = 8")
    changed = cli("--config", str(ws), "run", "--json").json()
    assert changed["models"] == {"trained": ["small_ridge"],
                                 "reused": ["grid_ridge", "last_value", "small_tree"]}
    assert {t for t in changed["ran"] if t.startswith(("train:", "forecast:"))} == {
        "train:small_ridge", "forecast:small_ridge"}


def test_forecast_then_run_fits_zero_models(ws: Path, cli):
    assert cli("--config", str(ws), "data", "demo", "--json").code == 0
    fc = cli("--config", str(ws), "forecast", "--json")
    assert fc.code == 0, fc.err
    assert not any(m["reused"] for m in fc.json()["models"] if m["kind"] == "model")
    res = cli("--config", str(ws), "run")
    assert res.code == 0, res.err
    assert "models: 0 trained, 4 reused" in res.out


def test_a_deleted_artifact_cache_heals_on_the_next_run(ws: Path, state_dir: Path, cli):
    """Artifacts and half of the task records deleted by hand: the next run refits what is
    missing (its task key says what) instead of failing every re-run."""
    assert cli("--config", str(ws), "data", "demo", "--json").code == 0
    first = cli("--config", str(ws), "run", "--json")
    assert first.code == 0, first.err
    shutil.rmtree(state_dir / "artifacts")
    env_tasks = sorted((state_dir / "development" / "tasks").glob("*/*.json"))
    for record in env_tasks[::2]:
        record.unlink()
    again = cli("--config", str(ws), "run", "--json")
    assert again.code == 0, again.err
    doc = again.json()
    assert doc["status"] == "ok" and len(doc["models"]["trained"]) == 4
    assert any((state_dir / "artifacts").rglob("manifest.json"))
