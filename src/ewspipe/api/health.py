"""What ``/api/v1/health`` checks of the stored state: the files the API serves from.

Per environment: its state database (opened read-only, the newest run records parsed), the
published pointers, the prediction-store partitions those pointers name and the newest run of
each level (what ``/forecasts`` reads by default), and the alert log; plus the workspace's
run records and alert log. Each file is checked through the same readers the endpoints use,
so health reports exactly what would make them answer 503.

Cheap on purpose: partition and run-record hashes are verified once per change of the file
(:mod:`ewspipe.store.integrity`), and an alert log is parsed again only when its size or
modification time changed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ewspipe.alerts.log import AlertLog
from ewspipe.errors import EwspipeError
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PART_FILE, PredictionStore
from ewspipe.store.published import PublishedPointers
from ewspipe.store.runs import RUN_FILE, RunStore
from ewspipe.store.statedb import StateDB, open_state_db_for_reading

__all__ = ["damaged_files"]

_LOCK = threading.Lock()
_ALERT_VERDICTS: dict[tuple[str, int, int], str | None] = {}


def _entry(path: Path, exc: Exception) -> dict[str, str]:
    return {"file": str(path), "problem": str(exc)}


def _alert_log(path: Path) -> dict[str, str] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _entry(path, exc)
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key in _ALERT_VERDICTS:
            problem = _ALERT_VERDICTS[key]
            return None if problem is None else {"file": str(path), "problem": problem}
    try:
        AlertLog(path).read()
        problem = None
    except EwspipeError as exc:
        problem = str(exc)
    with _LOCK:
        _ALERT_VERDICTS[key] = problem
    return None if problem is None else {"file": str(path), "problem": problem}


def _state_db(settings: Settings, env: str, found: list[dict[str, str]]) -> StateDB | None:
    layout = settings.layout.env(env)
    try:
        db = open_state_db_for_reading(settings.run.state_url, layout.root)
        if db is not None:
            db.run_records(env, limit=5)
        return db
    except EwspipeError as exc:
        found.append(_entry(layout.state_db, exc))
        return None


def _environment(settings: Settings, env: str, found: list[dict[str, str]]) -> None:
    layout = settings.layout.env(env)
    db = _state_db(settings, env, found)
    pointers = PublishedPointers(layout.published, db, environment=env)
    store = PredictionStore(layout.predictions)
    served: set[Path] = set()
    for path in sorted(layout.published.glob("*/*.json")):
        try:
            pointer = pointers.current(path.parent.name, path.stem)
        except EwspipeError as exc:
            found.append(_entry(path, exc))
            continue
        if pointer is None:
            continue
        for model in pointer.get("models") or []:
            try:
                served.add(store.partition_path(path.parent.name, str(pointer["run"]),
                                                str(model)) / PART_FILE)
            except EwspipeError:
                continue  # a name the store cannot hold: the pointer check reports it
    for level in ("cm", "pgm"):
        runs = store.runs(level)
        if runs:
            served.update(p.path for p in store.partitions(level=level, run=runs[-1]))
    found.extend(store.damaged(sorted(p for p in served if p.is_file())))
    problem = _alert_log(layout.alerts_log)
    if problem is not None:
        found.append(problem)


def _run_records(settings: Settings, found: list[dict[str, str]]) -> None:
    runs = RunStore(settings.runs_dir)
    if not runs.root.is_dir():
        return
    for path in sorted(runs.root.iterdir()):
        if (path / RUN_FILE).is_file():
            try:
                runs.find(path.name)
            except EwspipeError as exc:
                found.append(_entry(path / RUN_FILE, exc))


def damaged_files(settings: Settings) -> list[dict[str, str]]:
    """Every stored file the API serves from that fails its check: ``file`` and ``problem``
    (what is wrong and how to repair it)."""
    found: list[dict[str, str]] = []
    for env in settings.run.environments:
        try:
            _environment(settings, env, found)
        except EwspipeError as exc:  # e.g. a folder that cannot be listed
            found.append(_entry(settings.layout.env(env).root, exc))
        except OSError as exc:
            found.append(_entry(settings.layout.env(env).root, exc))
    _run_records(settings, found)
    problem = _alert_log(settings.layout.alerts_log)
    if problem is not None:
        found.append(problem)
    return found
