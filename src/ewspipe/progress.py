"""Progress of long operations: a reporter the caller installs, quiet by default.

The library never prints: flows tell :func:`current` what they do (a task started or
finished, one origin of a model predicted, bytes downloaded) and the default reporter drops
it. The CLI installs a reporter for the duration of a command (:func:`reporting`) that
writes to stderr only, so ``--json`` keeps stdout one JSON document: plain lines when stderr
is not a terminal (CI logs), Rich bars when it is, nothing with ``--quiet``
(:func:`for_stream`). The reporter is process-wide (not a context variable) because tasks run
on the local executor's threads; tasks on Dask workers report nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

__all__ = ["LineReporter", "NullReporter", "Reporter", "RichReporter", "TaskEvent", "current",
           "for_stream", "reporting"]


class TaskEvent(Protocol):
    """What a task event carries (the runner's ``TaskRecord``)."""

    task: str
    seconds: float


class Reporter(Protocol):
    """Where progress goes. ``task`` has the runner's progress-callback signature, so
    ``progress=reporter.task`` plugs a reporter into :func:`ewspipe.flows.runner.run_graph`."""

    def task(self, event: str, record: TaskEvent, done: int, total: int) -> None:
        """A task ``started``, ``failed`` or finished (``ran``/``reused``); ``done`` of
        ``total`` tasks are finished."""

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        """Item ``done`` of ``total`` of ``label`` is finished (one origin of a model)."""

    def transfer(self, label: str, done: int, total: int | None) -> None:
        """``done`` bytes of ``total`` (None: unknown) moved; ``done == total`` at the end."""

    def note(self, text: str) -> None:
        """One line of its own (a sweep trial, a release step)."""

    def close(self) -> None:
        """The operation is over: finish any live display."""


class NullReporter:
    """The default: the library is quiet unless its caller asks otherwise."""

    def task(self, event: str, record: TaskEvent, done: int, total: int) -> None:
        pass

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        pass

    def transfer(self, label: str, done: int, total: int | None) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def task_line(event: str, record: TaskEvent, done: int, total: int) -> str:
    """``[  3/12] start  fit:model``; ``FAILED`` names the task that failed (the staging
    gate quotes it)."""
    if event == "started":
        return f"[{done:>3}/{total}] start  {record.task}"
    if event == "failed":
        return f"[{done:>3}/{total}] FAILED {record.task}"
    return f"[{done:>3}/{total}] {event:<6} {record.task} ({record.seconds:.2f}s)"


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


#: without a known total, a plain-lines transfer says how far it got every this many bytes
UNKNOWN_TOTAL_EVERY = 16_000_000


class LineReporter:
    """One plain line per event: what CI logs and pipes read. Transfers say how far they
    got at each tenth (or every :data:`UNKNOWN_TOTAL_EVERY` bytes) and at the end, not at
    every chunk."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._said: dict[str, int] = {}  # transfer label -> last tenth (or block) said

    def _write(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def task(self, event: str, record: TaskEvent, done: int, total: int) -> None:
        self._write(task_line(event, record, done, total))

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        self._write(f"      {label}" + (f": {detail}" if detail else "") + f" ({done}/{total})")

    def transfer(self, label: str, done: int, total: int | None) -> None:
        mark = done * 10 // total if total else done // UNKNOWN_TOTAL_EVERY
        if done != total and self._said.get(label, -1) >= mark:
            return
        self._said[label] = mark
        of = f" of {_size(total)}" if total else ""
        pct = f" ({100 * done // total}%)" if total else ""
        self._write(f"      {label}: {_size(done)}{of}{pct}" + (" done" if done == total else ""))

    def note(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        pass


class RichReporter:
    """Bars on a terminal: one for the tasks, one per running step or transfer; task
    lines and notes print above them."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._console = Console(file=stream, markup=False, highlight=False)
        self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                  TextColumn("{task.fields[amount]}", markup=False),
                                  TimeElapsedColumn(), console=self._console, transient=True)
        self._lock = threading.Lock()
        self._bars: dict[tuple[str, str], Any] = {}

    def _show(self, kind: str, label: str, done: int, total: int | None, amount: str,
              description: str | None = None) -> None:
        if not self._progress.live.is_started:
            self._progress.start()
        key = (kind, label)
        if key not in self._bars:
            self._bars[key] = self._progress.add_task(label, total=total, amount="")
        self._progress.update(self._bars[key], completed=done, total=total, amount=amount,
                              description=description or label)

    def _drop(self, kind: str, label: str) -> None:
        bar = self._bars.pop((kind, label), None)
        if bar is not None:
            self._progress.remove_task(bar)

    def task(self, event: str, record: TaskEvent, done: int, total: int) -> None:
        with self._lock:
            self._show("tasks", "tasks", done, total, f"{done}/{total}")
            self._console.print(task_line(event, record, done, total))

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        with self._lock:
            self._show("steps", label, done, total, f"{done}/{total}",
                       f"{label}: {detail}" if detail else label)
            if done >= total:
                self._drop("steps", label)

    def transfer(self, label: str, done: int, total: int | None) -> None:
        with self._lock:
            self._show("bytes", label, done, total,
                       _size(done) + (f" of {_size(total)}" if total else ""))
            if done == total:
                self._drop("bytes", label)
                self._console.print(f"{label}: {_size(done)} done")

    def note(self, text: str) -> None:
        with self._lock:
            self._console.print(text)

    def close(self) -> None:
        with self._lock:
            if self._progress.live.is_started:
                self._progress.stop()
            self._bars.clear()


_NULL = NullReporter()
_CURRENT: Reporter = _NULL


def current() -> Reporter:
    """The reporter of the operation under way (a :class:`NullReporter` outside one)."""
    return _CURRENT


def for_stream(stream: TextIO, *, quiet: bool = False) -> Reporter:
    """The reporter a command uses on ``stream`` (stderr): nothing when ``quiet``, Rich bars
    on a terminal, plain lines otherwise."""
    if quiet:
        return NullReporter()
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return RichReporter(stream)
    return LineReporter(stream)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Install ``reporter`` as :func:`current` for the block; closed and replaced by the
    previous one at its end."""
    global _CURRENT
    previous, _CURRENT = _CURRENT, reporter
    try:
        yield reporter
    finally:
        _CURRENT = previous
        reporter.close()
