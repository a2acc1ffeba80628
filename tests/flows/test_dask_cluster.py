"""The monthly run and evaluate on a local multi-process Dask cluster of 2 workers with a
memory limit: bit-identical stored forecasts and draws, data handed to the workers by
reference (every task's arguments and output stay small), and a worker killed by its memory
limit as a clear error naming the task, the limit and the setting."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from monthly_workspace import MODEL, RIDGE, write_monthly_workspace

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (installed with distributed)

from ewspipe.flows import executors  # noqa: E402
from ewspipe.settings import load_settings  # noqa: E402

#: the most a task's arguments or output may weigh through the scheduler: records and
#: paths, never a panel, design or forecast (those stay on the shared file system)
SHIPPED_LIMIT = 64 * 2**10

SAMPLING_MODELS = {
    # a learned pgm model with residual draws, and a cm baseline drawing from history
    "grid_draws": MODEL.format(
        name="grid_draws", level="pgm", algorithm="stepshifter", status="shadow",
        features='["ged_sb", "lag(ged_sb, 1)", "splag(ged_sb)"]',
        hyper=RIDGE + "n_samples = 20\nsampling = \"residual\"\n"),
    "cm_draws": MODEL.format(
        name="cm_draws", level="cm", algorithm="conflictology", status="shadow",
        features="[]", hyper="[hyperparameters]\nw = 12\nn_samples = 20\nseed = 3\n"),
}


class Measured:
    """An executor that records the pickled size of what goes to and comes from each task."""

    def __init__(self, inner: executors.Executor, sizes: dict[str, tuple[int, int]]) -> None:
        self.inner, self.sizes, self.name = inner, sizes, inner.name
        self.workers = inner.workers
        self.metrics: dict[str, int] = {}
        self._names: dict[int, str] = {}

    def submit(self, fn: Any, *args: Any, priority: float = 0.0, lane: str = "") -> Any:
        handle = self.inner.submit(fn, *args, priority=priority, lane=lane)
        task = args[3]  # runner._execute(func, ctx, key, task, arguments, fingerprint)
        self.sizes[task] = (len(cloudpickle.dumps((fn, *args))), -1)
        self._names[id(handle)] = task
        return handle

    def wait(self, handles: Any) -> Any:
        done = self.inner.wait(handles)
        for h in done:
            task = self._names.get(id(h))
            if task is not None and h.status == "finished":
                output, _ = h.result()
                if isinstance(output, dict) and output.get("metrics") is not None:
                    # an evaluation's scores: ~100 month/sequence/step groups x 16 metrics,
                    # as many for 100 cells as for 66,000; bounded on their own below
                    self.metrics[task] = len(pickle.dumps(output.pop("metrics")))
                self.sizes[task] = (self.sizes[task][0], len(pickle.dumps(output)))
        return done

    def explain_failure(self, exc: Exception, task: str) -> Exception:
        return self.inner.explain_failure(exc, task)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()


def _workspace(root: Path, cluster: bool) -> Path:
    cfg = write_monthly_workspace(root)
    for name, text in SAMPLING_MODELS.items():
        (root / "models" / f"{name}.toml").write_text(text)
    if cluster:
        with cfg.open("a") as fh:
            # split_draws = 1: the evaluation's prediction is split across the 2 workers
            fh.write('\n[run]\nexecutor = "dask"\ndask_workers = 2\n'
                     'dask_memory_limit = "1GiB"\nsplit_draws = 1\n')
    return cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The monthly run and a calibration evaluation of the sampling pgm model, in-process
    and on the workspace's local cluster (measured), each in its own workspace."""
    from ewspipe.catalog import load_catalog
    from ewspipe.flows.ingest import import_demo_checked
    from ewspipe.flows.modelrun import evaluate_models
    from ewspipe.flows.monthly import run_monthly

    sizes: dict[str, tuple[int, int]] = {}
    made: list[Any] = []

    def measured(spec: Any, **kwargs: Any) -> Any:
        inner = executors.make_executor(spec, **kwargs)
        made.append(Measured(inner, sizes) if spec.uses_dask else inner)
        return made[-1]

    out: dict[str, Any] = {"sizes": sizes, "executors": made}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ewspipe.flows.monthly.make_executor", measured)
        mp.setattr("ewspipe.flows.modelrun.make_executor", measured)
        for side, cluster in (("local", False), ("cluster", True)):
            settings = load_settings(_workspace(tmp_path_factory.mktemp(side), cluster))
            monthly = run_monthly(settings)
            import_demo_checked(settings)
            catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
            evaluation = evaluate_models(settings, catalog, run_type="calibration",
                                         names=["grid_draws"], executor=settings.run.executor)
            out[side] = (settings, monthly, evaluation)
    yield out


def _table(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path).replace_schema_metadata(None)  # data, not the stamps


def test_cluster_forecasts_and_draws_are_bit_identical(runs):
    (s1, local, ev1), (s2, remote, ev2) = runs["local"], runs["cluster"]
    assert local.executor == "local"
    assert remote.executor == "dask (local cluster, 2 workers, 1 GiB each)"
    assert local.status == remote.status == "ok"
    assert {t.task: t.key for t in local.tasks} == {t.task: t.key for t in remote.tasks}
    parts = {p["model"]: p for p in local.outputs["store"]["partitions"]}
    other = {p["model"]: p for p in remote.outputs["store"]["partitions"]}
    assert parts.keys() == other.keys() >= {"grid_draws", "cm_draws", "grid_chorus"}
    for model, p in parts.items():
        a = _table(s1.state_dir / "development" / p["path"])
        b = _table(s2.state_dir / "development" / other[model]["path"])
        assert a.equals(b), model
        point = [t.column("point").to_numpy() for t in (a, b)]
        assert point[0].tobytes() == point[1].tobytes()
        draws = [np.stack(t.column("samples").to_numpy(zero_copy_only=False)) for t in (a, b)]
        assert draws[0].tobytes() == draws[1].tobytes()
        if model.endswith("_draws"):
            assert draws[0].shape[1] == 20 and np.ptp(draws[0], axis=1).any()
    # evaluate: fit and predict on the workers (artifact loaded, design rebuilt there), the
    # prediction in two parts side by side, joined and scored: the in-process file and scores
    assert {r.task for r in ev2.tasks} - {r.task for r in ev1.tasks} == {
        "predict:grid_draws[1/2]", "predict:grid_draws[2/2]"}
    (m1,), (m2,) = ev1.models, ev2.models
    assert m1.metrics == m2.metrics and m1.n_samples == 20
    assert _table(Path(ev1.path) / m1.predictions).equals(_table(Path(ev2.path) / m2.predictions))


def test_data_reaches_the_workers_by_reference(runs):
    """What the scheduler carries per task (function, context, inputs; the output) is a
    small record: the snapshot, artifacts and forecasts are read from shared storage."""
    sizes = runs["sizes"]
    assert [e.name for e in runs["executors"]] == \
        ["local", "local"] + ["dask (local cluster, 2 workers, 1 GiB each)"] * 2
    assert {"snapshot", "train:grid_draws", "forecast:grid_draws", "ensembles", "store",
            "fit:grid_draws", "predict:grid_draws", "predict:grid_draws[1/2]",
            "predict:grid_draws[2/2]"} <= sizes.keys()
    assert all(out >= 0 for _, out in sizes.values()), sizes  # every output was measured
    heavy = {task: size for task, size in sizes.items() if max(size) >= SHIPPED_LIMIT}
    assert not heavy, f"tasks shipping >= 64 KiB through the scheduler: {heavy}"
    scores = runs["executors"][-1].metrics
    assert scores.keys() == {"predict:grid_draws"}
    assert max(scores.values()) < 2 * SHIPPED_LIMIT  # ~62 KiB, whatever the cells


def test_a_worker_killed_by_its_memory_limit_is_a_clear_error(tmp_path):
    """A task above the worker's memory limit: the nanny restarts the worker and the run
    fails with WorkerKilled (exit 1) naming the task, the limit and the setting to raise."""
    import dask

    from ewspipe.flows.graph import Graph, Task
    from ewspipe.flows.runner import TaskCache, run_graph

    def hungry(ctx: Any, *, key: str) -> dict[str, int]:
        import time

        held = []
        for _ in range(40):  # at most 2 GB, 50 MB at a time: stopped near 570 MB
            held.append(np.ones(50 * 2**20 // 8))
            time.sleep(0.05)
        return {"held": len(held)}

    # one attempt (Dask retries a task on 3 more workers by default)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        ex = executors.DaskExecutor(None, workers=1, memory_limit=600 * 2**20)
    try:
        with pytest.raises(executors.WorkerKilled) as info:
            run_graph(Graph([Task("forecast:hungry", hungry, cache=False)]), None,
                      base_key="b", executor=ex, cache=TaskCache(tmp_path / "t", tmp_path))
    finally:
        ex.close()
    message = str(info.value)
    assert info.value.exit_code == 1
    for needle in ("task forecast:hungry (model hungry)", "600 MiB each",
                   "raise [run] dask_memory_limit", "[run] dask_workers"):
        assert needle in message


@pytest.mark.parametrize(("value", "needle"), [
    ('dask_memory_limit = "4G"', "is not a memory size"),
    ('dask_memory_limit = "100MB"', "is below the 512 MiB"),
    ("dask_memory_limit = 4", "dask_memory_limit"),
    ("dask_workers = -1", "dask_workers"),
])
def test_cluster_settings_are_validated_naming_the_key(tmp_path, value, needle):
    from ewspipe.errors import SettingsError

    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(f"[run]\n{value}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert "[run] dask_" in str(info.value) and needle in str(info.value)


def test_cluster_settings_defaults_and_units(tmp_path):
    from ewspipe.settings import RunSettings

    assert RunSettings().dask_workers == 0  # one per core
    assert RunSettings().dask_memory_limit_bytes is None  # Dask's default
    cfg = tmp_path / "ewspipe.toml"
    for text, size in (("4GiB", 4 * 2**30), ("3500MB", 3_500_000_000), ("1.5 GiB", 3 * 2**29)):
        cfg.write_text(f'[run]\ndask_memory_limit = "{text}"\n')
        assert load_settings(cfg).run.dask_memory_limit_bytes == size

