"""The release ledger: every promotion, hotfix and rollback, and every staging report.

It lives in the production environment's state database
(``open_state_db(settings.run.state_url, settings.layout.env(<production environment>).root)``,
the first of ``[run] publish_environments``, SQLite or
PostgreSQL), so the evidence sits next to the runs it vouches for. Git tags carry the version;
the ledger carries the evidence (manifest) and the plan of an operation in progress: an entry
is written ``pending`` before the first change and marked ``completed`` after the last, which
is what makes release commands resumable (:mod:`ewspipe.release.steps`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ewspipe.errors import InputError
from ewspipe.flows.release_guard import LedgerDamaged, reading_ledger
from ewspipe.settings import Settings
from ewspipe.store.statedb import StateDB, open_state_db

__all__ = ["Ledger", "LedgerDamaged", "now_iso"]

KINDS = ("promote", "hotfix", "rollback")
T = TypeVar("T")


def now_iso() -> str:
    """UTC now with microseconds (orders ledger entries written in the same second)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _where(db: StateDB | None, settings: Settings | None = None) -> str:
    path = getattr(db, "sqlite_path", None)
    if path is None and settings is not None and not settings.run.state_url:
        path = settings.layout.env(settings.run.production_environment).state_db
    return str(path) if path is not None else "the state database of [run] state_url"


class Ledger:
    def __init__(self, db: StateDB | None) -> None:
        self._db = db

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Ledger:
        """The ledger of the production environment; with ``create=False`` (the read-only
        commands: status, check, log) a SQLite ledger that does not exist yet reads as empty
        instead of being created: a read never writes."""
        production = settings.layout.env(settings.run.production_environment)
        if not create and not settings.run.state_url and not production.state_db.exists():
            return cls(None)
        with reading_ledger(lambda: _where(None, settings)):
            return cls(open_state_db(settings.run.state_url, production.root))

    @property
    def db(self) -> StateDB:
        if self._db is None:  # only a read-only ledger lacks one: a bug to write through it
            raise RuntimeError("the release ledger was opened read-only and does not exist")
        return self._db

    def _read(self, query: Callable[[], T]) -> T:
        with reading_ledger(lambda: _where(self.db)):
            return query()

    # ------------------------------------------------------------------ staging reports
    def record_staging(self, report: dict[str, Any]) -> str:
        """Store a staging report (``StagingReport.to_dict()``); returns its id."""
        try:
            commit = str(report["candidate_commit"])
            snapshots = dict(report.get("snapshots") or {})
            gates = list(report.get("gates") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"staging report lacks {exc}; expected StagingReport.to_dict()") \
                from exc
        passed = report.get("passed")
        if passed is None:
            passed = all(g.get("status") != "FAIL" for g in gates)
        body = json.dumps(report, sort_keys=True, default=str)
        report_id = hashlib.sha256(body.encode()).hexdigest()[:16]
        self.db.add_staging_report(report_id, commit, snapshots, bool(passed),
                                   {**report, "passed": bool(passed), "report_id": report_id},
                                   now_iso())
        return report_id

    def staging_for(self, commit: str) -> dict[str, Any] | None:
        """The newest staging report for exactly ``commit``."""
        if self._db is None:
            return None
        found = self._read(lambda: self.db.staging_reports(commit, limit=1))
        return found[0] if found else None

    def last_staging(self) -> dict[str, Any] | None:
        if self._db is None:
            return None
        found = self._read(lambda: self.db.staging_reports(None, limit=1))
        return found[0] if found else None

    # ------------------------------------------------------------------ releases
    def begin(self, version: str, kind: str, *, commits: list[str], manifest: dict[str, Any],
              plan: dict[str, Any]) -> dict[str, Any]:
        """Write the pending entry for ``version`` (kept as it is when it already exists)."""
        if kind not in KINDS:
            raise InputError(f"ledger kind {kind!r}: use one of {', '.join(KINDS)}")
        self.db.add_release({"version": version, "kind": kind, "status": "pending",
                             "commits": commits, "manifest": manifest, "plan": plan,
                             "created_at": now_iso()})
        entry = self.get(version)
        assert entry is not None
        return entry

    def complete(self, version: str, manifest: dict[str, Any] | None = None) -> None:
        self.db.complete_release(version, now_iso(), manifest)

    def get(self, version: str) -> dict[str, Any] | None:
        return next((e for e in self.releases() if e["version"] == version), None)

    def releases(self) -> list[dict[str, Any]]:
        """Every entry, newest first."""
        return self._read(self.db.releases) if self._db is not None else []

    def completed(self) -> list[dict[str, Any]]:
        return [e for e in self.releases() if e["status"] == "completed"]

    def pending(self) -> list[dict[str, Any]]:
        return [e for e in self.releases() if e["status"] == "pending"]
