"""Run records and published-pointer history in a small relational store.

SQLite in the environment's state folder by default; PostgreSQL (psycopg 3) when
``[run] state_url = "postgresql://..."``. Both speak the same schema; statements differ only
in the parameter placeholder.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ewspipe.errors import StoreError
from ewspipe.extras import require
from ewspipe.layout import StateFolder
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["StateDB", "open_state_db"]

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

    def __init__(self, url: str, *, sqlite_path: Path | None = None) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self.kind = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._ph = "%s" if self.kind == "postgresql" else "?"
        with self._connect() as con:
            for ddl in _SCHEMA.values():
                con.execute(ddl)

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
        self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.sqlite_path, timeout=30)
        try:
            with con:
                yield con
        finally:
            con.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._ph)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connect() as con:
            cur = con.execute(self._sql(sql), params)
            return list(cur.fetchall())

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
        return [json.loads(r[0]) for r in rows]

    def running(self, environment: str) -> list[dict[str, Any]]:
        """Records of ``environment`` still marked ``running`` (oldest first)."""
        rows = self._rows("SELECT record FROM runs WHERE environment = ? AND status = ? "
                          "ORDER BY started_at, run_id", [environment, "running"])
        return [json.loads(r[0]) for r in rows]

    def run_records(self, environment: str | None = None,
                    limit: int = 50) -> list[MonthlyRunRecord]:
        """:meth:`runs`, typed (newest first)."""
        return [MonthlyRunRecord.from_dict(r) for r in self.runs(environment, limit)]

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
        found = [json.loads(r[0]) for r in rows]
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
        return [{"version": r[0], "kind": r[1], "status": r[2], "commits": json.loads(r[3]),
                 "manifest": json.loads(r[4]), "plan": json.loads(r[5]),
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
        return [{**json.loads(r[0]), "recorded_at": r[1]} for r in rows]


def open_state_db(state_url: str, state_dir: Path) -> StateDB:
    """The state database: ``state_url`` if set, else SQLite ``<state_dir>/state.db``."""
    if state_url.startswith("sqlite:///"):
        return StateDB(state_url, sqlite_path=Path(state_url[len("sqlite:///"):]))
    if state_url:
        return StateDB(state_url)
    return StateDB("", sqlite_path=StateFolder(state_dir).state_db)
