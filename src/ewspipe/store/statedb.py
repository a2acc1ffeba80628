"""Run records and published-pointer history in a small relational store.

SQLite in the environment's state folder by default; PostgreSQL (psycopg 3) when
``[run] state_url = "postgresql://..."``. Both speak the same schema; statements differ only
in the parameter placeholder.

A SQLite file that is not a database (overwritten, truncated) or a record that no longer
parses is an :class:`~ewspipe.errors.IntegrityError` naming the file and the fix, never a raw
``sqlite3`` error. Readers open it with ``read_only=True`` (:func:`open_state_db`): the file
is opened in SQLite's read-only mode and never created, so a read writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ewspipe.errors import IntegrityError, StoreError
from ewspipe.extras import require
from ewspipe.layout import StateFolder
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["StateDB", "open_state_db", "open_state_db_for_reading", "state_db_fix"]


def state_db_fix(path: Path | str) -> str:
    """How to repair a damaged SQLite state database (the tail of its IntegrityError)."""
    return (f"restore {path} from a backup, or move it aside and re-run `ewspipe run` to "
            "start a new one (the run and pointer history in the old file are then lost; the "
            "published pointer files and stored forecasts stay). Where it also holds the release "
            "ledger (the production environment's), a new file has no record of the current "
            "release and production runs refuse: there, restore the backup")

_SCHEMA = {
    "runs": """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        record TEXT NOT NULL)""",
    "pointer_history": """CREATE TABLE IF NOT EXISTS pointer_history (
        publish_id TEXT NOT NULL,
        environment TEXT NOT NULL,
        level TEXT NOT NULL,
        target TEXT NOT NULL,
        run TEXT NOT NULL,
        published_at TEXT NOT NULL,
        pointer TEXT NOT NULL,
        PRIMARY KEY (publish_id, environment, level, target))""",
    # release ledger (ewspipe.release.ledger): one row per promotion, hotfix or rollback
    "release_ledger": """CREATE TABLE IF NOT EXISTS release_ledger (
        version TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        commits TEXT NOT NULL,
        manifest TEXT NOT NULL,
        plan TEXT NOT NULL,
        created_at TEXT NOT NULL,
        completed_at TEXT)""",
    "staging_reports": """CREATE TABLE IF NOT EXISTS staging_reports (
        report_id TEXT PRIMARY KEY,
        candidate_commit TEXT NOT NULL,
        snapshots TEXT NOT NULL,
        passed INTEGER NOT NULL,
        report TEXT NOT NULL,
        recorded_at TEXT NOT NULL)""",
}


class StateDB:
    """A connection factory plus the few statements ewspipe needs."""

    def __init__(self, url: str, *, sqlite_path: Path | None = None,
                 read_only: bool = False) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self.read_only = read_only
        self.kind = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._ph = "%s" if self.kind == "postgresql" else "?"
        if read_only:  # no DDL: a missing table reads as empty (see _rows)
            with self._connect() as con:
                con.execute("SELECT count(*) FROM sqlite_master" if self.kind == "sqlite"
                            else "SELECT 1")
            return
        with self._connect() as con:
            for ddl in _SCHEMA.values():
                con.execute(ddl)

    def _damaged(self, exc: Exception) -> IntegrityError:
        return IntegrityError(f"{self.sqlite_path}: the state database is damaged ({exc}); "
                              f"{state_db_fix(self.sqlite_path or '')}")

    def _json(self, text: Any, what: str) -> Any:
        """A JSON column of a row; a damaged one names the database and the fix."""
        try:
            return json.loads(text)
        except (TypeError, ValueError) as exc:
            where = self.sqlite_path or "the state database ([run] state_url)"
            raise IntegrityError(f"{where}: a stored {what} is damaged ({exc}); "
                                 f"{state_db_fix(where)}") from exc

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.kind == "postgresql":
            psycopg = require("postgres", "psycopg",
                              what="[run] state_url (a PostgreSQL URL)")
            try:
                con = psycopg.connect(self.url, connect_timeout=10)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to the state database ({exc}); check "
                                 "[run] state_url") from exc
            try:
                with con:
                    yield con
            finally:
                con.close()
            return
        assert self.sqlite_path is not None
        try:
            if self.read_only:
                if not self.sqlite_path.is_file():
                    raise IntegrityError(f"{self.sqlite_path}: the state database is missing; "
                                         "run `ewspipe run` to create it")
                con = sqlite3.connect(f"{self.sqlite_path.resolve().as_uri()}?mode=ro",
                                      uri=True, timeout=30)
            else:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.sqlite_path, timeout=30)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc
        try:
            with con:
                yield con
        except sqlite3.OperationalError as exc:
            if self.read_only and "no such table" in str(exc):
                raise _NoTable from exc
            if "locked" in str(exc) or "readonly" in str(exc) or "unable to open" in str(exc):
                raise StoreError(f"{self.sqlite_path}: {exc}; check that the state folder is "
                                 "writable and no other process holds the database") from exc
            raise self._damaged(exc) from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            raise self._damaged(exc) from exc
        finally:
            con.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._ph)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            with self._connect() as con:
                cur = con.execute(self._sql(sql), params)
                return list(cur.fetchall())
        except _NoTable:  # a read-only open of a database made before this table existed
            return []

    # ------------------------------------------------------------------ runs
    def record_run(self, record: MonthlyRunRecord | dict[str, Any]) -> None:
        """Insert or update one run record (keyed by ``run_id``)."""
        if isinstance(record, MonthlyRunRecord):
            record = record.to_dict()
        params = (record["run_id"], record["environment"], record["started_at"],
                  record.get("finished_at"), record["status"], json.dumps(record, default=str))
        with self._connect() as con:
            con.execute(self._sql(
                "INSERT INTO runs (run_id, environment, started_at, finished_at, status, record) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "finished_at = excluded.finished_at, status = excluded.status, "
                "record = excluded.record"), params)

    def runs(self, environment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        where, params = ("WHERE environment = ?", [environment]) if environment else ("", [])
        rows = self._rows(f"SELECT record FROM runs {where} ORDER BY started_at DESC, run_id "
                          f"DESC LIMIT {int(limit)}", params)
        return [self._json(r[0], "run record") for r in rows]

    def running(self, environment: str) -> list[dict[str, Any]]:
        """Records of ``environment`` still marked ``running`` (oldest first)."""
        rows = self._rows("SELECT record FROM runs WHERE environment = ? AND status = ? "
                          "ORDER BY started_at, run_id", [environment, "running"])
        return [self._json(r[0], "run record") for r in rows]

    def run_records(self, environment: str | None = None,
                    limit: int = 50) -> list[MonthlyRunRecord]:
        """:meth:`runs`, typed (newest first)."""
        found = []
        for doc in self.runs(environment, limit):
            try:
                found.append(MonthlyRunRecord.from_dict(doc))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                where = self.sqlite_path or "the state database ([run] state_url)"
                run = doc.get("run_id") if isinstance(doc, dict) else None
                raise IntegrityError(f"{where}: the stored record of run {run!r} is damaged "
                                     f"({str(exc).splitlines()[0]}); "
                                     f"{state_db_fix(where)}") from exc
        return found

    # ------------------------------------------------------------------ pointers
    def add_pointer(self, pointer: dict[str, Any]) -> bool:
        """Append a pointer move to the history; the same ``publish_id`` twice is kept once."""
        params = (pointer["publish_id"], pointer["environment"], pointer["level"],
                  pointer["target"], pointer["run"], pointer["published_at"],
                  json.dumps(pointer, default=str))
        with self._connect() as con:
            cur = con.execute(self._sql(
                "INSERT INTO pointer_history (publish_id, environment, level, target, run, "
                "published_at, pointer) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                params)
            return bool(cur.rowcount)

    def drop_pointer(self, publish_id: str, environment: str, level: str, target: str) -> None:
        """Remove a history entry that never became the visible pointer (an interrupted
        move: see ewspipe.store.published)."""
        with self._connect() as con:
            con.execute(self._sql(
                "DELETE FROM pointer_history WHERE publish_id = ? AND environment = ? AND "
                "level = ? AND target = ?"), (publish_id, environment, level, target))

    def pointer_history(self, level: str, target: str,
                        environment: str | None = None) -> list[dict[str, Any]]:
        """Every move of one pointer, oldest first: by the move's ``seq`` (entries written
        before moves were numbered come first, by time)."""
        sql = "SELECT pointer FROM pointer_history WHERE level = ? AND target = ?"
        params: list[Any] = [level, target]
        if environment:
            sql += " AND environment = ?"
            params.append(environment)
        rows = self._rows(sql + " ORDER BY published_at, publish_id", params)
        found = [self._json(r[0], "pointer history entry") for r in rows]
        return sorted(found, key=lambda p: int(p.get("seq") or 0))


    # ------------------------------------------------------------------ release ledger
    def add_release(self, entry: dict[str, Any]) -> bool:
        """Insert a ledger entry; an existing ``version`` is kept as it is (returns False)."""
        params = (entry["version"], entry["kind"], entry["status"],
                  json.dumps(entry["commits"]), json.dumps(entry["manifest"], default=str),
                  json.dumps(entry["plan"], default=str), entry["created_at"],
                  entry.get("completed_at"))
        with self._connect() as con:
            cur = con.execute(self._sql(
                "INSERT INTO release_ledger (version, kind, status, commits, manifest, plan, "
                "created_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING"), params)
            return bool(cur.rowcount)

    def complete_release(self, version: str, completed_at: str,
                         manifest: dict[str, Any] | None = None) -> None:
        """Mark ``version`` completed (optionally with its final manifest)."""
        sql = "UPDATE release_ledger SET status = 'completed', completed_at = ?"
        params: list[Any] = [completed_at]
        if manifest is not None:
            sql += ", manifest = ?"
            params.append(json.dumps(manifest, default=str))
        with self._connect() as con:
            con.execute(self._sql(sql + " WHERE version = ?"), [*params, version])

    def releases(self) -> list[dict[str, Any]]:
        """Every ledger entry, newest first."""
        rows = self._rows("SELECT version, kind, status, commits, manifest, plan, created_at, "
                          "completed_at FROM release_ledger ORDER BY created_at DESC, "
                          "version DESC", [])
        j = self._json
        return [{"version": r[0], "kind": r[1], "status": r[2],
                 "commits": j(r[3], "release entry"), "manifest": j(r[4], "release entry"),
                 "plan": j(r[5], "release entry"),
                 "created_at": r[6], "completed_at": r[7]} for r in rows]

    def add_staging_report(self, report_id: str, candidate_commit: str,
                           snapshots: dict[str, str], passed: bool, report: dict[str, Any],
                           recorded_at: str) -> None:
        params = (report_id, candidate_commit, json.dumps(snapshots, sort_keys=True),
                  int(bool(passed)), json.dumps(report, default=str), recorded_at)
        with self._connect() as con:
            con.execute(self._sql(
                "INSERT INTO staging_reports (report_id, candidate_commit, snapshots, passed, "
                "report, recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                params)

    def staging_reports(self, candidate_commit: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
        """Stored staging reports (the report dicts), newest first."""
        where, params = (("WHERE candidate_commit = ?", [candidate_commit])
                         if candidate_commit else ("", []))
        rows = self._rows(f"SELECT report, recorded_at FROM staging_reports {where} "
                          f"ORDER BY recorded_at DESC, report_id DESC LIMIT {int(limit)}",
                          params)
        return [{**self._json(r[0], "staging report"), "recorded_at": r[1]} for r in rows]


class _NoTable(Exception):
    """A read-only query met a table the database does not have yet (reads as empty)."""


def open_state_db(state_url: str, state_dir: Path, *, read_only: bool = False) -> StateDB:
    """The state database: ``state_url`` if set, else SQLite ``<state_dir>/state.db``.

    ``read_only``: never create or change it (see :func:`open_state_db_for_reading`)."""
    if state_url.startswith("sqlite:///"):
        return StateDB(state_url, sqlite_path=Path(state_url[len("sqlite:///"):]),
                       read_only=read_only)
    if state_url:
        return StateDB(state_url)
    return StateDB("", sqlite_path=StateFolder(state_dir).state_db, read_only=read_only)


def open_state_db_for_reading(state_url: str, state_dir: Path) -> StateDB | None:
    """The state database opened read-only, or None when a SQLite one does not exist yet: a
    read command must not create state (PostgreSQL is opened as usual)."""
    if state_url and not state_url.startswith("sqlite:///"):
        return StateDB(state_url)
    path = (Path(state_url[len("sqlite:///"):]) if state_url
            else StateFolder(state_dir).state_db)
    if not path.is_file():
        return None
    return open_state_db(state_url, state_dir, read_only=True)
