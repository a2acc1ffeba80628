"""Hyperparameter sweeps (ewspipe.flows.sweep) on a tiny demo panel: search, resume, executors,
failed trials and MLflow tracking."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ewspipe.catalog import load_catalog
from ewspipe.cli.main import main
from ewspipe.errors import InputError, SpecError
from ewspipe.flows import sweep as sweep_flow
from ewspipe.flows.runner import PAUSE_ENV
from ewspipe.flows.sweep import run_sweep, study_storage
from ewspipe.settings import Settings, load_settings

RIDGE = """
name = "ridge_line"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "Ridge per step, deliberately over-regularised."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "ridge"
seed = 7

[hyperparameters.learner_params]
alpha = 100000.0

[sweep]
trials = {trials}
seed = 3
batch_size = 4

[sweep.space]
learner_params.alpha = {{ float = [0.001, 1000000.0], log = true }}
"""

WINDOW = """
name = "window_line"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "Ridge with a training window; a window of 1 month cannot train step 2."
features = ["ged_sb", "lag(ged_sb, 1)"]

[hyperparameters]
learner = "ridge"

[sweep]
trials = 4
sampler = "random"
batch_size = 2

[sweep.space]
train_window = { choices = [1, 400] }
"""

PLAIN = """
name = "plain_line"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "baseline"
owner = "tests"
description = "No sweep table."
features = []
"""


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding a small demo cm snapshot (30 countries up to month 520)."""
    root = tmp_path_factory.mktemp("sweep-demo")
    (root / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    code = main(["--config", str(root / "ewspipe.toml"), "data", "demo", "--countries", "30",
                 "--pgm-cells", "50", "--last-month", "520"])
    assert code == 0
    return root / "state"


@pytest.fixture
def workspace(tmp_path: Path, demo_state: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "ridge_line.toml").write_text(RIDGE.format(trials=10))
    (models / "window_line.toml").write_text(WINDOW)
    (models / "plain_line.toml").write_text(PLAIN)
    shutil.copytree(demo_state / "snapshots", tmp_path / "state" / "snapshots")
    (tmp_path / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    return tmp_path


def _settings(workspace: Path, *, state: str = "state", tracking: bool = False) -> Settings:
    if state != "state":
        shutil.copytree(workspace / "state" / "snapshots", workspace / state / "snapshots")
    settings = load_settings(workspace / "ewspipe.toml", state_dir=workspace / state)
    if tracking:
        settings = settings.model_copy(update={
            "tracking": settings.tracking.model_copy(update={"enabled": True})})
    return settings


def _sweep(workspace: Path, name: str = "ridge_line", *, settings: Settings | None = None,
           **kwargs):
    settings = settings or _settings(workspace)
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    kwargs.setdefault("on", "calibration")  # one fit per trial: the backtest is tested apart
    return run_sweep(settings, catalog, name, **kwargs)


def _trials(settings: Settings, result) -> list[tuple[int, str, dict, float | None]]:
    import optuna

    study = optuna.load_study(study_name=result.study,
                              storage=f"sqlite:///{study_storage(settings, result.model)}")
    return [(t.number, t.state.name, t.params, t.value) for t in study.get_trials()]


def test_sweep_finds_the_better_region_of_ridge_alpha(workspace):
    result = _sweep(workspace)
    assert result.metric == "msle" and result.direction == "minimize"
    assert result.counts["complete"] == 10 and result.counts["evaluated"] == 10
    best = result.best
    # alpha = 1e5 (the file) over-shrinks; small alphas are clearly better on this panel
    assert best["params"]["learner_params.alpha"] < 100.0
    current = result.references["current"]["calibration"]
    assert best["calibration"] < current - 0.2
    assert result.improved is True
    # the untuned reference drops the searched key: Ridge's default alpha = 1.0
    assert result.references["untuned"]["hyperparameters"]["learner_params"] == {}
    assert best["calibration"] <= result.references["untuned"]["calibration"] + 1e-9
    # reported on validation too, next to the calibration score
    assert best["validation"] is not None and result.references["current"]["validation"]
    assert best["hyperparameters"] == {"learner": "ridge", "seed": 7,
                                       "learner_params": {"alpha": best["params"][
                                           "learner_params.alpha"]}}
    assert [t["score"] for t in result.top] == sorted(t["score"] for t in result.top)
    assert result.storage.endswith("sweeps/ridge_line.db")


def test_interrupted_sweep_continues_without_recomputing(workspace, monkeypatch):
    settings = _settings(workspace)
    real = sweep_flow.evaluate_params
    calls: list[str] = []

    def interrupting(context, task):
        if task.key.startswith("trial:"):
            calls.append(task.key)
            if len(calls) == 6:  # mid-way through the second batch of 4
                raise KeyboardInterrupt
        return real(context, task)

    monkeypatch.setattr(sweep_flow, "evaluate_params", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _sweep(workspace, settings=settings)
    calls.clear()

    def counting(context, task):
        calls.append(task.key)
        return real(context, task)

    monkeypatch.setattr(sweep_flow, "evaluate_params", counting)
    resumed = _sweep(workspace, settings=settings)
    trial_calls = [k for k in calls if k.startswith("trial:") and "validation" not in k]
    # trials 0-4 were complete and are kept; 5-7 were asked (running) and are re-evaluated
    # with their stored parameters; 8-9 are new. The references were stored, not recomputed.
    assert trial_calls == [f"trial:{n:06d}" for n in range(5, 10)]
    assert not [k for k in calls if k.endswith(":calibration")]
    assert resumed.counts == {"budget": 10, "complete": 10, "failed": 0, "evaluated": 5,
                              "resumed": 3, "kept": 5}

    # the same seed and budget give the same trials as an uninterrupted sweep
    other = _settings(workspace, state="state2")
    monkeypatch.setattr(sweep_flow, "evaluate_params", real)
    straight = _sweep(workspace, settings=other)
    assert straight.study == resumed.study
    assert _trials(other, straight) == _trials(settings, resumed)
    assert straight.best == resumed.best

    # a finished sweep does nothing more; a bigger budget extends it
    calls.clear()
    monkeypatch.setattr(sweep_flow, "evaluate_params", counting)
    again = _sweep(workspace, settings=settings)
    assert again.counts["evaluated"] == 0 and not [k for k in calls if "validation" not in k]
    more = _sweep(workspace, settings=settings, trials=12)
    assert more.counts["complete"] == 12 and more.counts["evaluated"] == 2


def test_fresh_discards_the_stored_study(workspace):
    settings = _settings(workspace)
    first = _sweep(workspace, settings=settings, trials=4)
    again = _sweep(workspace, settings=settings, trials=4, fresh=True)
    assert again.counts["kept"] == 0 and again.counts["evaluated"] == 4
    assert again.best == first.best


def test_failed_trials_are_recorded_and_skipped(workspace):
    result = _sweep(workspace, "window_line")
    trials = _trials(_settings(workspace), result)
    failed = [t for t in trials if t[1] == "FAIL"]
    assert failed and all(t[2]["train_window"] == 1 for t in failed)
    assert result.counts["failed"] == len(failed)
    assert result.best["params"] == {"train_window": 400}
    assert result.counts["complete"] + result.counts["failed"] == 4


def test_validation_and_forecasting_are_refused(workspace):
    for run_type in ("validation", "forecasting"):
        with pytest.raises(InputError, match="leak"):
            _sweep(workspace, run_type=run_type)
    assert not (workspace / "state" / "sweeps").exists()


def test_model_without_sweep_table_is_refused(workspace):
    with pytest.raises(SpecError, match=r"no \[sweep\] table"):
        _sweep(workspace, "plain_line")


def test_bad_executor_is_refused(workspace):
    with pytest.raises(InputError, match="not an executor"):
        _sweep(workspace, executor="spark", trials=1)


def test_local_threads_give_the_same_trials(workspace):
    one = _sweep(workspace, trials=4)
    threads = _sweep(workspace, settings=_settings(workspace, state="state2"), trials=4,
                     workers=2)
    assert threads.workers == 2
    assert threads.top == one.top


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed")
def test_dask_executor_gives_the_same_trials(workspace):
    local = _sweep(workspace, trials=4)
    dask = _sweep(workspace, settings=_settings(workspace, state="state2"), trials=4,
                  executor="dask", workers=2)
    assert dask.executor == "dask" and dask.workers == 2
    assert dask.top == local.top and dask.best == local.best


def test_sweep_is_tracked_as_parent_with_one_child_per_trial(workspace, monkeypatch):
    tracking = pytest.importorskip("mlflow.tracking")
    from ewspipe.store.tracking import tracking_uri

    settings = _settings(workspace, tracking=True)
    real = sweep_flow.evaluate_params
    seen: list[str] = []

    def interrupting(context, task):
        seen.append(task.key)
        if len([k for k in seen if k.startswith("trial:")]) == 3:
            raise KeyboardInterrupt
        return real(context, task)

    monkeypatch.setattr(sweep_flow, "evaluate_params", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _sweep(workspace, settings=settings, trials=6)
    monkeypatch.setattr(sweep_flow, "evaluate_params", real)
    result = _sweep(workspace, settings=settings, trials=6)
    assert result.tracking["status"] == "logged" and not result.tracking["warning"]

    client = tracking.MlflowClient(tracking_uri=tracking_uri(settings))
    experiment = client.get_experiment_by_name("ewspipe-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("ewspipe.role") == "sweep"]
    assert len(parents) == 1  # the resumed sweep reuses its parent run
    parent = parents[0]
    assert parent.info.run_id == result.tracking["parent_run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["space.learner_params.alpha"] == "float [0.001, 1e+06] log"
    assert parent.data.metrics["best/score"] == pytest.approx(result.best["calibration"])
    assert parent.data.tags["ewspipe.best_trial"] == str(result.best["trial"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["ewspipe.trial"]) for r in children) == list(range(6))
    child = next(r for r in children if r.data.tags["ewspipe.trial"] == str(result.best["trial"]))
    assert child.data.metrics["score"] == pytest.approx(result.best["calibration"])
    assert "learner_params.alpha" in child.data.params


def test_tracking_failure_warns_and_keeps_the_sweep(workspace, caplog):
    pytest.importorskip("mlflow")
    settings = _settings(workspace, tracking=True)
    (workspace / "not-a-dir").write_text("a file where the store's folder should be")
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={
        "uri": f"sqlite:///{workspace / 'not-a-dir' / 'mlflow.db'}"})})
    result = _sweep(workspace, settings=settings, trials=3)
    assert result.tracking["status"] == "failed" and result.tracking["warning"]
    assert result.counts["complete"] == 3 and result.best is not None
    assert any("tracking" in n for n in result.notes)


def _cached_trials(settings: Settings) -> int:
    return sum(1 for _ in (settings.state_dir / "sweeps" / "tasks").glob("*/*.json"))


def test_killed_sweep_resumes_reusing_its_finished_trials(workspace, monkeypatch):
    """kill -9 while trial 2 runs (held by the runner's pause hook): the rerun evaluates only
    trials 2 and 3; with --fresh every evaluation comes from the runner's task cache."""
    settings = _settings(workspace)
    env = {**os.environ, PAUSE_ENV: "trial:000002=120",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ewspipe", "--config", str(workspace / "ewspipe.toml"),
         "models", "sweep", "ridge_line", "--trials", "4",
         "--on", "calibration"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while _cached_trials(settings) < 4:  # current + untuned references, trials 0 and 1
            assert proc.poll() is None and time.monotonic() < deadline, "no trials finished"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()

    real = sweep_flow.evaluate_params
    calls: list[str] = []

    def counting(context, task):
        calls.append(task.key)
        return real(context, task)

    monkeypatch.setattr(sweep_flow, "evaluate_params", counting)
    resumed = _sweep(workspace, settings=settings, trials=4)
    assert [k for k in calls if not k.endswith("validation")] == ["trial:000002",
                                                                  "trial:000003"]
    assert resumed.counts["complete"] == 4 and resumed.tasks["ran"] == len(calls)

    calls.clear()
    fresh = _sweep(workspace, settings=settings, trials=4, fresh=True)
    assert calls == [] and fresh.counts["kept"] == 0 and fresh.counts["evaluated"] == 4
    assert fresh.tasks == {"ran": 0, "reused": 4 + len(resumed.references) + 2}
    assert (fresh.top, fresh.best, fresh.references) == \
        (resumed.top, resumed.best, resumed.references)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed")
def test_scheduler_address_gives_the_same_trials(workspace):
    """--executor tcp://127.0.0.1:PORT against a running scheduler (one in-process worker)."""
    from distributed import LocalCluster

    local = _sweep(workspace, trials=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        remote = _sweep(workspace, settings=_settings(workspace, state="state2"), trials=2,
                        executor=address)
    assert remote.executor == address and remote.workers == 1
    assert remote.tasks == local.tasks == {"ran": 2 + len(local.references) + 2, "reused": 0}
    assert (remote.top, remote.best, remote.references) == \
        (local.top, local.best, local.references)
