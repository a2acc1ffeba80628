"""The thread budget of one task: ``$EWSPIPE_THREADS``, else every CPU this process may use.

A Dask worker gets ``EWSPIPE_THREADS=1`` (flows.executors), so two workers on two cores never
run four threads; the stepshifter's step threads and the feature builder's copy threads both
ask here.
"""

from __future__ import annotations

import os

from ewspipe.errors import InputError

__all__ = ["THREADS_ENV", "available_threads"]

THREADS_ENV = "EWSPIPE_THREADS"


def available_threads() -> int:
    """Threads one task may use: ``$EWSPIPE_THREADS`` when set, else every CPU this process
    may run on."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise InputError(f"environment variable {THREADS_ENV}={raw!r}: must be an integer "
                             ">= 1 (threads per task); unset it to use every CPU")
        return int(raw)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
