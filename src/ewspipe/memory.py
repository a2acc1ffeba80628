"""What this process holds in memory, for planners that share a budget with it."""

from __future__ import annotations

import os
import sys

__all__ = ["resident_bytes"]


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
