"""How tasks run: in-process, on a local Dask cluster, or on an existing Dask scheduler.

All three have the same two operations, so the runner has one code path: ``submit`` a call
and get a handle, ``wait`` until at least one handle is done. Dask is imported only here and
only when a Dask executor is asked for. Values are parsed by the one parser,
:func:`ewspipe.executor_spec.parse_executor` (re-exported here), for every command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ewspipe.errors import InputError
from ewspipe.executor_spec import ACCEPTED_FORMS, ExecutorSpec, parse_executor
from ewspipe.threads import THREADS_ENV

__all__ = ["ACCEPTED_FORMS", "DaskExecutor", "Executor", "ExecutorSpec", "Handle",
           "InlineExecutor", "connect_scheduler", "dask_client_classes", "make_executor",
           "parse_executor", "require_in_process"]


class Handle(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...


class Executor(Protocol):
    name: str

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0) -> Handle: ...
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

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0) -> Handle:
        return _Done(fn, args)

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        return list(handles)

    def close(self) -> None:
        return None


class DaskExecutor:
    """Tasks as Dask futures: a local cluster (one single-threaded worker process per core)
    when ``address`` is None, else the scheduler at ``address``."""

    def __init__(self, address: str | None = None, *, workers: int | None = None) -> None:
        Client, LocalCluster = dask_client_classes()
        self.cluster: Any = None
        if address is None:
            n = workers or os.cpu_count() or 1
            # one thread per worker, and tasks told so: step threads inside a task would
            # otherwise oversubscribe the cores the other workers use
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, env={THREADS_ENV: "1"})
            self.name = f"dask (local cluster, {n} workers)"
            self.client = Client(self.cluster)
        else:
            self.client = connect_scheduler(address)
            self.name = f"dask ({address})"

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0) -> Handle:
        # Dask runs higher priorities first (integers; scaled so close costs stay apart)
        handle: Handle = self.client.submit(fn, *args, pure=False,
                                            priority=round(priority * 1000))
        return handle

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        from distributed import wait

        wait(list(handles), return_when="FIRST_COMPLETED")
        return [h for h in handles if h.done()]

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


def require_in_process(value: str | ExecutorSpec, command: str) -> ExecutorSpec:
    """For commands whose engine is the in-process thread scheduler (evaluate, forecast):
    the value is parsed like everywhere else, then anything but ``local`` is refused."""
    spec = parse_executor(value)
    if spec.uses_dask:
        raise InputError(
            f"option --executor: `{command}` runs its models in this process (threads) and "
            f"takes no Dask executor, got {str(spec)!r}; use --executor local, or run on Dask "
            "with `ewspipe run` (the monthly run) or `ewspipe models sweep`"
        )
    return spec


def make_executor(spec: str | ExecutorSpec) -> Executor:
    parsed = parse_executor(spec)
    if parsed.kind == "local":
        return InlineExecutor()
    return DaskExecutor(parsed.address)
