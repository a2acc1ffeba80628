"""Run records for the API: monthly runs (each environment's state database) and evaluation
and forecast runs (``<state_dir>/runs/<run_id>/run.json``), read without creating state."""

from __future__ import annotations

from typing import Any

from ewspipe.api.deps import state_db
from ewspipe.settings import Settings
from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.store.runs import RunStore

__all__ = ["monthly_json", "monthly_runs", "stored_run", "stored_runs"]

_MAX_MONTHLY = 100_000


def monthly_runs(settings: Settings, env: str | None = None) -> list[MonthlyRunRecord]:
    """``ewspipe run`` records of ``env`` (default: every environment), newest first."""
    found: list[MonthlyRunRecord] = []
    for name in [env] if env else settings.run.environments:
        db = state_db(settings, name)
        if db is not None:
            found += db.run_records(name, limit=_MAX_MONTHLY)
    return sorted(found, key=lambda r: (r.started_at or "", r.run_id), reverse=True)


def monthly_json(record: MonthlyRunRecord) -> dict[str, Any]:
    """A monthly run's record as the API serves it: as stored, with ``kind = "monthly"``."""
    return {**record.to_dict(), "kind": "monthly"}


def stored_runs(settings: Settings, kind: str | None = None) -> list[dict[str, Any]]:
    """Evaluation (``kind = "evaluate"``) and forecast run records, newest first."""
    records = RunStore(settings.runs_dir).list()
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind]
    return sorted(records, key=lambda r: (r.get("started_at") or "", r["run_id"]),
                  reverse=True)


def stored_run(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """One evaluation or forecast run by its exact id, or None."""
    return RunStore(settings.runs_dir).find(run_id)
