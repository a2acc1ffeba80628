"""The thread budget of one task: ``$EWSPIPE_THREADS``, else every CPU this process may use.

A Dask worker gets ``EWSPIPE_THREADS=1`` (flows.executors), so two workers on two cores never
run four threads; the stepshifter's step threads and the feature builder's copy threads both
ask here.

:func:`single_threaded_blas` pins the BLAS libraries to one thread around model fits and
predictions. A Dask worker's BLAS already runs one thread (Dask's nanny sets
``OPENBLAS_NUM_THREADS=1`` etc. before it starts), in-process BLAS runs one per CPU, and
OpenBLAS splits long reductions such as ``X.T @ y`` (the ridge's normal equations) across its
threads, so the sums were added in another order: one float64 ULP, which survives the float32
store in some rows and gave the same month two run ids. One thread everywhere makes the numbers
independent of the executor; the forecasters already get their parallelism from fitting steps
concurrently, so BLAS threads on top only oversubscribed the cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ewspipe.errors import InputError

__all__ = ["THREADS_ENV", "available_threads", "single_threaded_blas"]

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


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter: Any = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS runs one thread inside this block, so its reductions add in one fixed order.

    BLAS thread limits are process-wide, not per thread; the blocks of concurrent callers (the
    stepshifter's step threads, in-process tasks) therefore share one limit, counted: the first
    caller in sets it, the last one out restores the original. Setting it per caller would let
    one caller's exit restore many threads under another caller still inside.
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
