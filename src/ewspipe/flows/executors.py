"""How tasks run: in-process, on a local Dask cluster, or on an existing Dask scheduler.

All three have the same two operations, so the runner has one code path: ``submit`` a call
and get a handle, ``wait`` until at least one handle is done. Dask is imported only here and
only when a Dask executor is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ewspipe.errors import InputError
from ewspipe.threads import THREADS_ENV

__all__ = ["DaskExecutor", "Executor", "Handle", "InlineExecutor", "make_executor",
           "parse_executor"]


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
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise InputError(
                "option --executor: Dask is not installed; pip install 'distributed>=2026.8' "
                "or use --executor local"
            ) from exc
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
            try:
                self.client = Client(address, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise InputError(
                    f"option --executor: no Dask scheduler answers at {address} ({exc}); start "
                    "one with `dask scheduler` or use --executor dask"
                ) from exc
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


def parse_executor(spec: str) -> str:
    """Validate ``local``, ``dask`` or ``tcp://HOST:PORT``; return it unchanged."""
    if spec in ("local", "dask"):
        return spec
    if spec.startswith("tcp://"):
        host, _, port = spec[len("tcp://"):].rpartition(":")
        if host and port.isdigit():
            return spec
    raise InputError(
        f"option --executor: {spec!r} is not an executor; use local (in-process), dask (a local "
        "cluster, one worker per core) or tcp://HOST:PORT (an existing Dask scheduler)"
    )


def make_executor(spec: str) -> Executor:
    spec = parse_executor(spec)
    if spec == "local":
        return InlineExecutor()
    return DaskExecutor(None if spec == "dask" else spec)
