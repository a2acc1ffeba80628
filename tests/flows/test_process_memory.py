"""The memory budget of a process: what it holds, the cached panels it lets go above half
of it, and a Dask worker's own limit."""

from __future__ import annotations

import pytest

from ewspipe.flows import modelrun
from ewspipe.flows.modelrun import load_snapshot, spare_panels
from ewspipe.memory import resident_bytes


def test_resident_bytes_is_this_process() -> None:
    held = resident_bytes()
    assert 10 << 20 < held < 64 << 30
    block = bytearray(64 << 20)  # touched: resident
    assert resident_bytes() >= held + (48 << 20)
    del block


@pytest.mark.parametrize(("budget", "dropped"), [(1 << 50, False), (1 << 20, True)])
def test_cached_panels_are_dropped_only_above_half_the_budget(monkeypatch, budget,
                                                              dropped) -> None:
    cleared = []
    monkeypatch.setattr(load_snapshot, "cache_clear", lambda: cleared.append(True))
    spare_panels(budget)
    assert bool(cleared) is dropped
    assert modelrun.resident_bytes is resident_bytes  # the run measures the real process


def test_a_dask_worker_budgets_within_its_memory_limit() -> None:
    """On a worker the budget is the lower of [run] memory_budget and the worker's limit:
    chunks sized to a 6 GiB run budget on a 4 GiB worker would get it restarted."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from ewspipe.memory import process_budget, worker_memory_limit

    assert worker_memory_limit() is None and process_budget(6 << 30) == 6 << 30
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      memory_limit="1GiB", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert client.submit(worker_memory_limit, pure=False).result() == 1 << 30
        assert client.submit(process_budget, 6 << 30, pure=False).result() == 1 << 30
        assert client.submit(process_budget, 512 << 20, pure=False).result() == 512 << 20
