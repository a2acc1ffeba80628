"""Running a :class:`~ewspipe.flows.graph.Graph`: task-result cache, environment lock, loop.

- **Cache.** A finished task's output is stored as ``<state>/tasks/<key[:2]>/<key>.json``,
  written to a temporary name and renamed, after the task's own files are in place, with a
  checksum of its output. A task whose key has a sound record (its checksum matches, its
  recorded files still exist) is reused, not run; a damaged one (truncated, garbage, edited,
  filed under another key) is a cache miss, warned about, and the task runs again. After a
  ``kill -9`` the completed tasks have records and the interrupted one has none, so the next
  run continues from there; task outputs are written temp-then-rename, so none is half
  visible.
- **Lock.** One writer per environment: ``fcntl.flock`` on ``<state>/run.lock``, holding the
  pid and host. A second run waits up to the timeout, then raises :class:`StateLocked` (exit 1)
  naming the holder. The kernel drops the lock when its process dies, even by ``kill -9``.
- **Loop.** Ready tasks (inputs available) are looked up in the cache or submitted to the
  executor; the driver waits for any to finish and records it. Same loop for every executor.

Test hook: ``EWSPIPE_RUN_PAUSE="<task name>=<seconds>"`` sleeps in that task before it runs
(used to kill a run mid-way, or to hold the lock, in tests).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.atomic import remove_stale_temps, write_text
from ewspipe.errors import EwspipeError, InputError
from ewspipe.flows.executors import Executor, Handle
from ewspipe.flows.graph import Graph, Task
from ewspipe.layout import StateFolder
from ewspipe.provenance import code_fingerprint, timestamp

__all__ = ["EnvironmentLock", "GraphRun", "StateLocked", "TaskCache", "TaskRecord",
           "remove_stale_temps_below", "require_writable", "run_graph",
           "unwritable"]

PAUSE_ENV = "EWSPIPE_RUN_PAUSE"
_log = logging.getLogger(__name__)
Progress = Callable[[str, "TaskRecord", int, int], None]


class StateLocked(EwspipeError):
    """Another run holds the environment's lock (exit 1: try again when it has finished)."""

    exit_code = 1


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def unwritable(exc: BaseException) -> InputError | None:
    """A refusal naming the folder for a write refused by permissions or a read-only file
    system (exit 2: the state folder is not usable as given), else None.

    The folder named is the nearest existing one above the file that could not be written:
    the one whose permissions refused it (e.g. ``tasks/`` or ``artifacts/``)."""
    if not isinstance(exc, OSError) or exc.errno not in _READ_ONLY or not exc.filename:
        return None
    folder = Path(os.fsdecode(exc.filename)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable"
    return InputError(f"the folder {folder} {why} ({exc.strerror}); make it writable for "
                      "this user (chmod u+w, or fix its owner), or set [workspace] state_dir "
                      "(or --state-dir) to a writable folder, then run again: finished "
                      "tasks are reused")


def require_writable(*folders: Path) -> None:
    """Refuse (exit 2, naming the folder and the fix) before anything runs when one of the
    folders a run writes (or, for one not yet made, the folder it will be made in) cannot be
    written: creating and removing a probe file is the only test that holds for every cause
    (permissions, a read-only mount, an immutable folder, root). Creates no folder."""
    for folder in folders:
        where = Path(folder)
        while not where.exists() and where != where.parent:  # created later: its parent
            where = where.parent
        probe = where / f".write-probe-{os.getpid()}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as exc:
            refusal = unwritable(exc)
            if refusal is None:
                raise
            raise refusal from None


def remove_stale_temps_below(*roots: Path) -> int:
    """Remove, in every folder below ``roots``, the temporary files and folders of writers
    that died mid-write (:func:`ewspipe.atomic.remove_stale_temps`: a killed run's
    half-written prediction partition, report or record); returns how many. Called under the
    lock, so no live writer of this state is affected (live pids are left alone anyway)."""
    removed = 0
    for root in roots:
        if not Path(root).is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            gone = remove_stale_temps(Path(dirpath))
            removed += len(gone)
            names = {p.name for p in gone}
            dirnames[:] = [d for d in dirnames if d not in names]
    if removed:
        _log.info("removed %d temporary file(s) left by a killed run below %s", removed,
                  ", ".join(str(r) for r in roots))
    return removed


class EnvironmentLock:
    """``with EnvironmentLock(path, timeout=...):`` one writer per state folder.

    ``holder``: what the lock guards, in the refusal (default: the environment); ``wait_hint``:
    how to wait longer (default: the monthly run's option)."""

    def __init__(self, path: Path, *, timeout: float, environment: str,
                 holder: str | None = None,
                 wait_hint: str = "pass --lock-timeout SECONDS to wait for it") -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.environment = environment
        self.holder = holder or f"environment {environment!r}"
        self.wait_hint = wait_hint
        self._fh: Any = None

    def __enter__(self) -> EnvironmentLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            refusal = unwritable(exc)
            if refusal is None:
                raise
            raise refusal from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    fh.close()
                    raise StateLocked(
                        f"{self.holder} is locked by another run (pid {holder}, lock file "
                        f"{self.path}); wait for it to finish, or {self.wait_hint}. The "
                        "lock is released when that process ends, even when it is killed"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        # pid and host: who holds it, in the refusal; a lock left by a dead process is no
        # lock at all (the kernel released it), so it is simply taken over here
        fh.write(f"{os.getpid()} on {socket.gethostname()} since {timestamp()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class TaskCache:
    """Task results by key, under ``root`` (one JSON file each, atomically written)."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = Path(root)
        self.state = Path(state)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, task: str | None = None) -> dict[str, Any] | None:
        """The record of ``key``, or None when there is none or it cannot be trusted: an
        unreadable, truncated or edited record (its ``output_sha256`` no longer matches),
        one filed under another key or task, or one whose files are gone. Each of those is
        a cache miss, warned about with the file's name, and the task simply runs again
        (its key says what to compute), so damaged state heals instead of failing."""
        path = self._path(key)
        if not path.exists() and not path.is_symlink():
            return None
        why = _unusable(path, key, task)
        if isinstance(why, str):
            _log.warning("task record %s %s; running the task again", path, why)
            return None
        record = why
        folder = StateFolder(self.state)  # output paths are relative to the state folder
        for rel in _paths(record["output"]):
            try:
                present = folder.resolve(rel).exists()
            except (InputError, ValueError):  # a path leaving the state folder: not ours
                present = False
            if not present:
                _log.warning("task record %s names %s, which is gone; running the task again",
                             path, rel)
                return None
        return record

    def describe(self, key: str) -> str:
        """The record's file, for messages."""
        return str(self._path(key))

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():  # a folder where a record belongs
            _log.warning("task record %s is a folder; replacing it", path)
            shutil.rmtree(path)
        record = {**record, "output_sha256": _output_sha256(record.get("output"))}
        write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))


def _output_sha256(output: Any) -> str:
    """The digest of a record's output as stored (canonical JSON), to notice an edit."""
    text = json.dumps(output, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _unusable(path: Path, key: str, task: str | None) -> dict[str, Any] | str:
    """The parsed record at ``path``, or why it cannot be used."""
    if not path.is_file():
        return "is not a file"
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError:  # also UnicodeDecodeError: truncated, garbage, binary
        return "is not valid JSON (truncated or damaged)"
    if not isinstance(record, dict) or "output" not in record:
        return "is not a task record"
    if record.get("key") != key or (task is not None and record.get("task") != task):
        return "belongs to another task"
    stored = record.get("output_sha256")
    if stored != _output_sha256(record["output"]):
        return ("has no output checksum (written by an older version)" if stored is None
                else "does not match its output checksum (edited or damaged)")
    return record


def _paths(value: Any) -> list[str]:
    """Every value under a ``path`` key of a task output (paths relative to the state)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "path" and isinstance(v, str):
                found.append(v)
            else:
                found += _paths(v)
    elif isinstance(value, list):
        for v in value:
            found += _paths(v)
    return found


@dataclass
class TaskRecord:
    task: str
    key: str
    status: str  # "ran" | "reused" | "failed" | "started"
    seconds: float = 0.0
    output: Any = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "key": self.key, "status": self.status,
                "seconds": round(self.seconds, 3), "finished_at": self.finished_at}


@dataclass
class GraphRun:
    records: list[TaskRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def _execute(func: Callable[..., Any], ctx: Any, key: str, task: str,
             args: dict[str, Any], fingerprint: str) -> tuple[Any, float]:
    """Run one task (in this process or on a worker); returns (output, seconds).

    ``fingerprint`` is the code the run was keyed with: a worker running other code (started
    before an upgrade, or from another checkout) would key artifacts by that other code and
    mix results of two versions, so it refuses."""
    mine = code_fingerprint()
    if mine != fingerprint:
        raise EwspipeError(
            f"task {task}: this worker runs other ewspipe code (source fingerprint "
            f"{mine[:12]}) than the run ({fingerprint[:12]}); restart the Dask workers from "
            "the same installation (and do not edit the source while a run is going)")
    pause = os.environ.get(PAUSE_ENV, "")
    name, _, seconds = pause.rpartition("=")
    if name == task and seconds:
        time.sleep(float(seconds))
    t0 = time.perf_counter()
    output = func(ctx, key=key, **args)
    return output, time.perf_counter() - t0


def run_graph(
    graph: Graph,
    ctx: Any,
    *,
    base_key: str,
    executor: Executor,
    cache: TaskCache,
    progress: Progress | None = None,
    sections: Mapping[str, Any] | None = None,
) -> GraphRun:
    """Run every task of ``graph`` once its inputs exist, reusing cached results.

    ``sections`` are the settings the tasks' ``reads`` name
    (:func:`ewspipe.flows.graph.settings_sections`), part of their keys.

    Raises:
        whatever a task raised (the first failure; tasks already running are let finish
        and recorded, nothing new is submitted).
    """
    run = GraphRun()
    fingerprint = code_fingerprint()
    total = len(graph)
    pending: list[Task] = list(graph)
    running: dict[Any, tuple[Task, str]] = {}
    failure: BaseException | None = None

    def finish(record: TaskRecord) -> None:
        run.records.append(record)
        run.outputs[record.task] = record.output
        if progress is not None:
            progress(record.status, record, len(run.records), total)

    while pending or running:
        progressed = True
        while progressed and failure is None:
            progressed = False
            for task in sorted(pending, key=lambda t: -t.cost):  # stable: graph order on ties
                if not all(u in run.outputs for u in task.upstream):
                    continue
                pending.remove(task)
                progressed = True
                key = task.key(base_key, run.outputs, sections)
                hit = cache.get(key, task.name) if task.cache else None
                if hit is not None and task.check is not None \
                        and task.check(ctx, hit["output"]) is False:
                    _log.warning("task %s: what its record names is gone (%s); running it "
                                 "again", task.name, cache.describe(key))
                    hit = None  # what it names is gone: run it again (the key says what)
                if hit is not None:
                    finish(TaskRecord(task.name, key, "reused", float(hit.get("seconds", 0.0)),
                                      hit["output"], hit.get("finished_at")))
                    continue
                if progress is not None:
                    progress("started", TaskRecord(task.name, key, "started"),
                             len(run.records), total)
                lane = {"lane": task.lane} if task.lane else {}  # executors without lanes
                handle = executor.submit(_execute, task.func, ctx, key, task.name,
                                         task.arguments(run.outputs), fingerprint,
                                         priority=task.cost, **lane)
                running[handle] = (task, key)
        if not running:
            if pending and failure is None:
                raise InputError(f"task graph stalled: {[t.name for t in pending]} never got "
                                 "their inputs")
            break
        done: list[Handle] = executor.wait(list(running))
        for handle in done:
            task, key = running.pop(handle)
            try:
                output, seconds = handle.result()
            except Exception as exc:
                if failure is None:  # a Dask executor names a worker killed under the task
                    explain = getattr(executor, "explain_failure", None)
                    failure = exc if explain is None else explain(exc, task.name)
                if progress is not None:
                    progress("failed", TaskRecord(task.name, key, "failed"),
                             len(run.records), total)
                continue
            record = TaskRecord(task.name, key, "ran", seconds, output, timestamp())
            if task.cache:
                try:
                    cache.put(key, {"task": task.name, "key": key, "output": output,
                                    "seconds": seconds, "finished_at": record.finished_at})
                except OSError as exc:
                    if failure is None:
                        failure = exc
                    continue
            finish(record)
        if failure is not None and not running:
            break
    if failure is not None:
        refusal = unwritable(failure)
        if refusal is not None:
            raise refusal from failure
        raise failure
    return run
