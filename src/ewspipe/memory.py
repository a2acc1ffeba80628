"""What this process holds in memory, for planners that share a budget with it."""

from __future__ import annotations

import os
import sys

__all__ = ["process_budget", "resident_bytes", "worker_memory_limit"]


def resident_bytes() -> int:
    """The resident set size of this process in bytes (0 where it cannot be read).

    The memory budget is a limit on the process (or Dask worker), so a planner sizing its
    chunks subtracts what the process already holds: the cached panels, designs and fitted
    models of earlier tasks, and the interpreter.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/statm", "rb") as fh:
                pages = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        return pages * os.sysconf("SC_PAGE_SIZE")
    try:  # elsewhere psutil, when installed (it comes with the dask extra)
        import psutil
    except ImportError:
        return 0
    return int(psutil.Process().memory_info().rss)


def worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker this code runs in (None: not in a worker, or a
    worker without a limit)."""
    if "distributed" not in sys.modules:  # never imported: not a worker
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # ValueError: not running in a worker
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def process_budget(budget: int) -> int:
    """The memory budget of this process: ``budget`` (``[run] memory_budget``), or the
    memory limit of the Dask worker it runs in when that is lower. A worker above its limit
    is restarted by its nanny, so a chunk sized to a larger run budget would kill it."""
    limit = worker_memory_limit()
    return budget if limit is None else min(budget, limit)
