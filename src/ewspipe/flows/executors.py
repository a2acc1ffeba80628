"""How tasks run: in-process, on a local Dask cluster, or on an existing Dask scheduler.

In-process there are two: :class:`InlineExecutor` runs each task as it is submitted (the
monthly run), :class:`LaneExecutor` runs one thread per lane (evaluate and forecast: the next
model fits while the last one is predicted, written and scored, as their tasks say with
``Task.lane``).

All three have the same two operations, so the runner has one code path: ``submit`` a call
and get a handle, ``wait`` until at least one handle is done. Dask is imported only here and
only when a Dask executor is asked for. Values are parsed by the one parser,
:func:`ewspipe.executor_spec.parse_executor` (re-exported here), for every command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol

from ewspipe.errors import EwspipeError, InputError
from ewspipe.executor_spec import ACCEPTED_FORMS, ExecutorSpec, format_bytes, parse_executor
from ewspipe.threads import THREADS_ENV

__all__ = ["ACCEPTED_FORMS", "DaskExecutor", "Executor", "ExecutorSpec", "Handle",
           "InlineExecutor", "LaneExecutor", "WorkerKilled", "connect_scheduler",
           "dask_client_classes", "make_executor", "parse_executor"]


class Handle(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...


class Executor(Protocol):
    name: str
    #: how many tasks run side by side (in-process: 1, though lanes overlap a fit and a
    #: finish); the runs split a big prediction into this many tasks
    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0,
               lane: str = "") -> Handle: ...
    def wait(self, handles: Sequence[Handle]) -> list[Handle]: ...
    def close(self) -> None: ...


class _Done:
    """A finished in-process call: its value, or the exception to re-raise."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        try:
            self._value = fn(*args)
        except Exception as exc:  # re-raised by result(), like a Dask future
            self._error = exc

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class InlineExecutor:
    """Runs each task when it is submitted, in this process."""

    name = "local"
    workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0,
               lane: str = "") -> Handle:
        return _Done(fn, args)

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        return list(handles)

    def close(self) -> None:
        return None


class LaneExecutor:
    """In this process, one thread per lane: tasks of a lane run one after another in the
    order submitted (the runner submits the costliest first), lanes side by side.

    Evaluate and forecast fit in one lane and predict/write/score in another: fitting is
    where the learners use their threads, finishing a model runs mostly on one core, so the
    two overlap on a two-core machine without running two fits (two models' memory) at once.
    """

    name = "local"
    workers = 1

    def __init__(self) -> None:
        self._lanes: dict[str, ThreadPoolExecutor] = {}

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0,
               lane: str = "") -> Handle:
        pool = self._lanes.get(lane)
        if pool is None:
            pool = self._lanes[lane] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"ewspipe-{lane or 'task'}")
        future: Future[Any] = pool.submit(fn, *args)
        return future

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        futures = [h for h in handles if isinstance(h, Future)]
        wait_futures(futures, return_when=FIRST_COMPLETED)
        return [h for h in handles if h.done()]

    def close(self) -> None:
        for pool in self._lanes.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._lanes.clear()


#: task name prefixes whose suffix is a model (the monthly run's, evaluate's and forecast's)
_MODEL_TASKS = ("train", "forecast", "fit", "predict")


class WorkerKilled(EwspipeError):
    """A task whose Dask worker died under it (exit 1): on a local cluster most likely its
    memory limit; the message names the task, the limit and the setting to raise."""


class DaskExecutor:
    """Tasks as Dask futures: a local cluster (``workers`` single-threaded worker processes,
    default one per core, each with ``memory_limit`` bytes, default Dask's) when ``address``
    is None, else the scheduler at ``address``."""

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 memory_limit: int | None = None) -> None:
        Client, LocalCluster = dask_client_classes()
        self.cluster: Any = None
        self.memory_limit = memory_limit
        if address is None:
            import dask

            n = workers or os.cpu_count() or 1
            limit: dict[str, Any] = {} if memory_limit is None else {"memory_limit": memory_limit}
            # one thread per worker, and tasks told so: step threads inside a task would
            # otherwise oversubscribe the cores the other workers use. No pausing: a task's
            # data lives inside the task (results are small records), so a worker paused at
            # 80% of its limit by the panels it caches would never run another task and the
            # run would hang; above the limit the nanny restarts it and the task fails, named
            with dask.config.set({"distributed.worker.memory.pause": False}):
                # no dashboard; the scheduler's own HTTP server on a free port (its default,
                # 8787, may be another cluster's: a warning on every run)
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            dashboard_address=None, env={THREADS_ENV: "1"},
                                            scheduler_kwargs={"dashboard_address":
                                                              "127.0.0.1:0"}, **limit)
            each = "" if memory_limit is None else f", {format_bytes(memory_limit)} each"
            self.name = f"dask (local cluster, {n} worker{'s' if n != 1 else ''}{each})"
            self.client = Client(self.cluster)
            self.workers = n
        else:
            self.client = connect_scheduler(address)
            self.name = f"dask ({address})"
            self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0,
               lane: str = "") -> Handle:
        # Dask runs higher priorities first (integers; scaled so close costs stay apart)
        handle: Handle = self.client.submit(fn, *args, pure=False,
                                            priority=round(priority * 1000))
        return handle

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        from distributed import wait

        wait(list(handles), return_when="FIRST_COMPLETED")
        return [h for h in handles if h.done()]

    def explain_failure(self, exc: Exception, task: str) -> Exception:
        """``exc`` as the runner should raise it for ``task``: a worker that died under the
        task (Dask's KilledWorker: the nanny restarts a worker above its memory limit) as a
        :class:`WorkerKilled` naming the task, the limit and what to change."""
        from distributed.scheduler import KilledWorker

        if not isinstance(exc, KilledWorker):
            return exc
        kind, _, model = task.partition(":")
        model = model.partition("[")[0]  # a part of a prediction: predict:<model>[i/n]
        what = f"task {task} (model {model})" if kind in _MODEL_TASKS else f"task {task}"
        if self.cluster is None:
            limit = ("the workers' memory limit (set where they are started: "
                     "`dask worker --memory-limit`)")
            fix = "start the workers with more memory each, or run fewer tasks per machine"
        else:
            limit = ("the workers' memory limit ("
                     + (format_bytes(self.memory_limit) if self.memory_limit is not None
                        else "Dask's default, the machine's memory shared among the workers")
                     + " each, [run] dask_memory_limit)")
            fix = ("raise [run] dask_memory_limit, or lower [run] dask_workers so that each "
                   "worker gets more memory, or run in-process (--executor local)")
        return WorkerKilled(
            f"{what}: its Dask worker died while running it, most "
            f"likely above {limit}; {fix}. Finished tasks are reused by the next run")

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def dask_client_classes() -> tuple[Any, Any]:
    """``distributed.Client`` and ``LocalCluster``, or InputError with the install hint."""
    from ewspipe.extras import require

    distributed = require("dask", "distributed", what="option --executor (Dask)",
                          alternative="use --executor local")
    return distributed.Client, distributed.LocalCluster


def connect_scheduler(address: str, *, timeout: str = "20s") -> Any:
    """A Client of the running scheduler at ``address``; InputError naming it if none answers
    (the same message for the monthly run and sweeps)."""
    client_class, _ = dask_client_classes()
    try:
        return client_class(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise InputError(
            f"option --executor: no Dask scheduler answers at {address} ({detail}); start "
            "one with `dask scheduler`, or use --executor dask (a local cluster) or local"
        ) from exc


def make_executor(spec: str | ExecutorSpec, *, lanes: bool = False,
                  workers: int | None = None, memory_limit: int | None = None) -> Executor:
    """The executor ``spec`` names; ``local`` is a :class:`LaneExecutor` with ``lanes``,
    else an :class:`InlineExecutor`. ``workers`` and ``memory_limit`` (bytes per worker):
    the local Dask cluster's (``[run] dask_workers``, ``dask_memory_limit``)."""
    parsed = parse_executor(spec)
    if parsed.kind == "local":
        return LaneExecutor() if lanes else InlineExecutor()
    if parsed.kind == "dask":
        return DaskExecutor(None, workers=workers, memory_limit=memory_limit)
    return DaskExecutor(parsed.address)
