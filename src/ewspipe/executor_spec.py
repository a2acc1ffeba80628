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

__all__ = ["ACCEPTED_FORMS", "MIN_MEMORY_LIMIT", "SCHEDULER_SCHEMES", "ExecutorSpec",
           "format_bytes", "parse_executor", "parse_memory_limit", "parse_memory_size"]

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


#: the smallest per-worker memory limit accepted: a worker process holding Python, pandas and
#: the learners needs about this much before any task runs; below it the nanny would kill and
#: restart it in a loop
MIN_MEMORY_LIMIT = 512 * 2**20

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")


_UNIT_NAMES = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"


def parse_memory_size(text: str) -> int:
    """Bytes of a size such as ``"6GiB"``, ``"512MiB"`` or ``"1.5 GB"`` (binary or decimal
    units, any case): the one parser of ``[run] memory_budget`` and ``dask_memory_limit``.

    Raises:
        ValueError: not a number followed by a unit, naming the accepted units.
    """
    found = _SIZE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise ValueError(f"{text!r} is not a memory size; write a number and a unit, e.g. "
                         f"\"6GiB\" or \"512MiB\" (units: {_UNIT_NAMES})")
    return int(float(found.group(1)) * unit)


def format_bytes(n: int) -> str:
    """``4 GiB``, ``512 MiB``: a size for messages (binary units, as Dask prints them)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def parse_memory_limit(value: str, *, source: str | None = None) -> int | None:
    """A per-worker memory limit (``"4GiB"``, ``"3.5 GB"``) in bytes; None for ``""`` (Dask's
    default: the machine's memory shared among the workers). InputError, starting with
    ``source`` (``[run] dask_memory_limit``) when given, for anything else or a limit below
    :data:`MIN_MEMORY_LIMIT`."""
    where = "" if source is None else f"{source}: "
    if not value.strip():
        return None
    try:
        size = parse_memory_size(value)
    except ValueError:
        raise InputError(f"{where}{value!r} is not a memory size; write a number and a "
                         "unit, e.g. \"4GiB\" or \"3500MB\" (units: " + _UNIT_NAMES + "), "
                         "or \"\" for Dask's default (the machine's memory shared among the "
                         "workers)") from None
    if size < MIN_MEMORY_LIMIT:
        raise InputError(f"{where}{value!r} is below the {format_bytes(MIN_MEMORY_LIMIT)} a "
                         "worker needs before it runs any task; give each worker at least "
                         f"{format_bytes(MIN_MEMORY_LIMIT)} (e.g. \"4GiB\")")
    return size
