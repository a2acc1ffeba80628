"""Published pointers for the API: find them, and move one to a stored run.

The decision is not made here: a move happens only when
:func:`ewspipe.flows.publish_policy.decide_publish` (the same function the monthly run's
publish task calls) accepts the finished ``ewspipe run`` that stored the run, which must
hold a deployed model or ensemble of the level and target. The pointer names the deployed
forecasts as the run would have (ensembles first, then models), the release that made the
run, and who asked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException

from ewspipe.api.deps import state_db
from ewspipe.api.errors import not_found
from ewspipe.flows.publish_policy import decide_publish, deployed_pointers
from ewspipe.flows.runner import EnvironmentLock, StateLocked
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.published import PublishedPointers
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["current_pointer", "list_pointers", "move_pointer", "pointers_for"]


def pointers_for(settings: Settings, env: str) -> PublishedPointers | None:
    """The environment's pointers; None when it has no state database yet (never published)."""
    db = state_db(settings, env)
    if db is None:
        return None
    return PublishedPointers(settings.layout.env(env).published, db, environment=env)


def _files(settings: Settings, env: str) -> PublishedPointers:
    """The pointer files alone (reading one needs no state database, so a damaged database
    does not stop the published forecasts from being served)."""
    return PublishedPointers(settings.layout.env(env).published, None, environment=env)


def current_pointer(settings: Settings, env: str, level: str,
                    target: str) -> dict[str, Any] | None:
    return _files(settings, env).current(level, target)


def list_pointers(settings: Settings, env: str) -> list[dict[str, Any]]:
    """Every current pointer of the environment, by level and target."""
    pointers = _files(settings, env)
    found = []
    for path in sorted(pointers.root.glob("*/*.json")):
        pointer = pointers.current(path.parent.name, path.stem)
        if pointer is not None:
            found.append(pointer)
    return found


def _refuse(message: str) -> HTTPException:
    return HTTPException(409, detail=f"refusing to publish: {message}")


def _monthly_record(settings: Settings, env: str, level: str, run: str) -> MonthlyRunRecord:
    db = state_db(settings, env)
    records = db.run_records(env, limit=100_000) if db is not None else []
    for record in records:  # newest first
        if (record.outputs.runs or {}).get(level) == run and record.finished:
            return record
    raise _refuse(f"no finished `ewspipe run --env {env}` stored run {run!r} at level {level}; "
                  "only runs of the monthly run are published")


def move_pointer(settings: Settings, env: str, level: str, target: str, run: str, *,
                 requested_by: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point ``(level, target)`` of ``env`` at stored run ``run`` if
    :func:`ewspipe.flows.publish_policy.decide_publish` accepts the monthly run that stored
    it; 409 with every reason otherwise. Holds the environment's run lock while it decides
    and moves, so it never races a monthly run or another publish."""
    store = PredictionStore(settings.layout.env(env).predictions)
    parts = store.partitions(level=level, run=run)
    if not parts:
        not_found("body", "run", f"no stored {level} forecasts of run {run!r} in environment "
                  f"{env!r}; list runs with GET /api/v1/runs?env={env}")
    stored = []
    for part in parts:
        meta = store.metadata(level, run, part.model)
        if meta.get("target") == target:
            stored.append({"model": part.model, "level": level, "target": target, "run": run,
                           "status": meta.get("status"), "kind": meta.get("kind", "model")})
    if not any(p["status"] == "deployed" for p in stored):
        raise _refuse(f"run {run!r} stored no deployed {level} model or ensemble of target "
                      f"{target!r}")
    try:
        lock = EnvironmentLock(settings.layout.env(env).lock, timeout=2.0,
                               environment=env)
        with lock:
            record = _monthly_record(settings, env, level, run)
            decision = decide_publish(
                settings, environment=env, run_release=record.release,
                qa_passed=bool(record.qa_passed),
                qa_failed=record.qa.failed_models if record.qa is not None else [],
                selftest_failed=record.selftest_failed,
                snapshot_ids=list(record.snapshot_ids.values()))
            if not decision.allowed:
                raise _refuse("; ".join(decision.reasons))
            assert decision.release is not None
            pointers = pointers_for(settings, env)
            if pointers is None:  # pragma: no cover - a finished run has a state database
                raise _refuse(f"environment {env!r} has no state database")
            moves = deployed_pointers(
                stored, last_month={lvl: s.last_month for lvl, s in
                                    (record.snapshots or {}).items()},
                release=decision.release, publish_id=f"api-{uuid.uuid4().hex[:12]}",
                published_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                published_by={"via": "api", **(requested_by or {}),
                              "monthly_run": record.run_id})
            return pointers.move(moves[0])
    except StateLocked as exc:
        raise HTTPException(409, detail=f"refusing to publish now: {exc}") from exc
