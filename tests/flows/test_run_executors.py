"""The monthly run in-process and on a real multi-process Dask cluster: identical outputs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ewspipe.flows.monthly import run_monthly
from ewspipe.settings import load_settings
from ewspipe.store.prediction_store import PredictionStore

pytest.importorskip("distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """`dask scheduler` plus two `dask worker` processes on 127.0.0.1."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip(f"{dask} not found; install distributed into the venv")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dask scheduler did not start within 30 s")
                time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [str(dask), "worker", address, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _run(workspace: Path, executor: str):
    settings = load_settings(workspace)
    return run_monthly(settings, executor=executor), settings


def test_cluster_gives_the_same_outputs_as_in_process(tmp_path, workspace, scheduler):
    other = tmp_path / "other"
    shutil.copytree(workspace.parent, other)
    local, s1 = _run(workspace, "local")
    remote, s2 = _run(other / "ewspipe.toml", scheduler)
    assert local.status == remote.status == "ok"
    assert remote.executor.startswith("dask")
    # same inputs -> same keys for every task, same store runs
    assert {t.task: t.key for t in local.tasks} == {t.task: t.key for t in remote.tasks}
    assert local.outputs["store"]["runs"] == remote.outputs["store"]["runs"]
    a = PredictionStore(s1.state_dir / "development" / "predictions")
    b = PredictionStore(s2.state_dir / "development" / "predictions")
    parts = a.partitions()
    assert {(p.level, p.run, p.model) for p in parts} == \
        {(p.level, p.run, p.model) for p in b.partitions()}
    assert {p.model for p in parts} == {"small_tree", "small_ridge", "last_value", "grid_ridge",
                                        "small_chorus", "grid_chorus"}
    for p in parts:
        fa = a.query(p.level, p.model, run=p.run, samples=True)
        fb = b.query(p.level, p.model, run=p.run, samples=True)
        np.testing.assert_array_equal(fa["point"].to_numpy(), fb["point"].to_numpy())
        np.testing.assert_array_equal(np.stack(fa["samples"]), np.stack(fb["samples"]))

    again, _ = _run(other / "ewspipe.toml", scheduler)
    assert again.ran == ["snapshot"]  # the cluster re-run recomputes nothing


def test_unreachable_scheduler_is_bad_input(workspace):
    from ewspipe.errors import InputError

    with pytest.raises(InputError, match="no Dask scheduler answers"):
        run_monthly(load_settings(workspace), executor=f"tcp://127.0.0.1:{_free_port()}")


def test_evaluate_on_the_cluster_matches_in_process(tmp_path, workspace, scheduler):
    """`ewspipe evaluate` is a graph on the same runner: on a Dask scheduler it gives the
    same task keys, metrics and forecasts as in-process (fit and predict on the workers)."""
    from ewspipe.catalog import load_catalog
    from ewspipe.flows.ingest import import_demo_checked
    from ewspipe.flows.modelrun import evaluate_models
    from ewspipe.store.predictions import read_forecast

    other = tmp_path / "other-eval"
    shutil.copytree(workspace.parent, other)
    results = []
    for config, executor in ((workspace, "local"), (other / "ewspipe.toml", scheduler)):
        settings = load_settings(config)
        import_demo_checked(settings)
        catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
        results.append(evaluate_models(settings, catalog, run_type="calibration",
                                       names=["small_chorus"], executor=executor))
    local, remote = results
    assert {t.task: t.key for t in local.tasks} == {t.task: t.key for t in remote.tasks}
    assert {t.status for t in remote.tasks} == {"ran"}
    assert [m.metrics for m in local.models] == [m.metrics for m in remote.models]
    for m in local.models:
        fa, _ = read_forecast(Path(local.path) / m.predictions)
        fb, _ = read_forecast(Path(remote.path) / m.predictions)
        np.testing.assert_array_equal(fa.point, fb.point)
