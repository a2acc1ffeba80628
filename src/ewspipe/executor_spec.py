"""The one parser of executor values (``--executor``, ``[run] executor``, the library API).

It lives this low so that settings validation, the monthly run, sweeps, evaluate and forecast
all accept and refuse the same values with the same message. It only reads the text: nothing
here imports Dask or connects anywhere (:mod:`ewspipe.flows.executors` does that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ewspipe.errors import InputError

__all__ = ["ACCEPTED_FORMS", "SCHEDULER_SCHEMES", "ExecutorSpec", "parse_executor"]

#: the network transports ``distributed`` registers (``distributed.comm.registry``);
#: ``inproc://`` is left out: such an address only exists inside the process that made it
SCHEDULER_SCHEMES: tuple[str, ...] = ("tcp", "tls", "ucx", "ws", "wss")

ACCEPTED_FORMS = (
    "local (in-process), dask (a local Dask cluster, one worker per core) or the address of "
    "a running Dask scheduler, SCHEME://HOST:PORT with SCHEME one of "
    + ", ".join(SCHEDULER_SCHEMES) + " (HOST:PORT alone means tcp://HOST:PORT)"
)

ExecutorKind = Literal["local", "dask", "scheduler"]

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)$")


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed executor: ``local``, ``dask`` (a local cluster) or ``scheduler`` at
    ``address`` (always with its scheme)."""

    kind: ExecutorKind
    address: str | None = None

    @property
    def uses_dask(self) -> bool:
        return self.kind != "local"

    def __str__(self) -> str:
        return self.address if self.address is not None else self.kind


def _scheduler_address(text: str) -> str | None:
    """``SCHEME://HOST:PORT`` (or bare ``HOST:PORT``) normalised with its scheme, else None."""
    scheme, sep, location = text.partition("://")
    if not sep:
        scheme, location = "tcp", text
    if scheme.lower() not in SCHEDULER_SCHEMES:
        return None
    host, colon, port = location.rpartition(":")
    if not colon or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return f"{scheme.lower()}://{host}:{int(port)}"


def parse_executor(value: str | ExecutorSpec, *, source: str | None = None) -> ExecutorSpec:
    """Parse an executor value; InputError listing the accepted forms otherwise.

    ``source``: where the value came from, named at the start of the message (``[run]
    executor``); without it the error's ``parameter`` is ``executor`` (the CLI names its
    ``--executor`` option).
    """
    if isinstance(value, ExecutorSpec):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text == "local":
        return ExecutorSpec("local")
    if text == "dask":
        return ExecutorSpec("dask")
    address = _scheduler_address(text) if text else None
    if address is not None:
        return ExecutorSpec("scheduler", address)
    problem = f"{value!r} is not an executor; use {ACCEPTED_FORMS}"
    if source is not None:
        raise InputError(f"{source}: {problem}")
    raise InputError(problem, parameter="executor")
