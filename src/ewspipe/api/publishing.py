"""Published pointers for the API: find them, and move one to a stored run with the checks
the monthly run's publish task makes (``ewspipe.flows.tasks.publish``).

A move is refused (409) unless the run is a finished ``ewspipe run`` of that environment whose
QA passed, whose drift self-test did not fail, whose snapshots pass the freshness guards
(:func:`ewspipe.flows.guards.freshness_report`), which stored at least one deployed model
or ensemble of the level and target, and only while the workspace is a clean, completed
production release (:func:`ewspipe.flows.release_guard.check_release`). The pointer then
names the deployed forecasts as the run would have: ensembles first, then models.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException

from ewspipe.api.deps import not_found, state_db
from ewspipe.errors import EwspipeError
from ewspipe.flows.guards import freshness_report
from ewspipe.flows.release_guard import ReleaseGuardFailed, check_release
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.published import PublishedPointers

__all__ = ["current_pointer", "list_pointers", "move_pointer", "pointers_for"]


def pointers_for(settings: Settings, env: str) -> PublishedPointers | None:
    """The environment's pointers; None when it has no state database yet (never published)."""
    db = state_db(settings, env)
    if db is None:
        return None
    return PublishedPointers(settings.state_dir / env / "published", db, environment=env)


def current_pointer(settings: Settings, env: str, level: str,
                    target: str) -> dict[str, Any] | None:
    pointers = pointers_for(settings, env)
    return pointers.current(level, target) if pointers is not None else None


def list_pointers(settings: Settings, env: str) -> list[dict[str, Any]]:
    """Every current pointer of the environment, by level and target."""
    pointers = pointers_for(settings, env)
    if pointers is None:
        return []
    found = []
    for path in sorted(pointers.root.glob("*/*.json")):
        pointer = pointers.current(path.parent.name, path.stem)
        if pointer is not None:
            found.append(pointer)
    return found


def _refuse(message: str) -> HTTPException:
    return HTTPException(409, detail=f"refusing to publish: {message}")


def _monthly_record(settings: Settings, env: str, level: str, run: str) -> dict[str, Any]:
    db = state_db(settings, env)
    records = db.runs(env, limit=100_000) if db is not None else []
    for record in records:  # newest first
        if ((record.get("outputs") or {}).get("runs") or {}).get(level) == run \
                and record.get("status") != "running":
            return record
    raise _refuse(f"no finished `ewspipe run --env {env}` stored run {run!r} at level {level}; "
                  "only runs of the monthly run are published")


def _checks(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    qa = record.get("qa") or {}
    if record.get("status") != "ok" or not qa.get("passed"):
        failed = ", ".join(c.get("model", "?") for c in qa.get("failed") or []) or "unknown"
        raise _refuse(f"QA failed for {failed} in monthly run {record['run_id']}")
    broken = [lvl for lvl, d in (record.get("drift") or {}).items()
              if (d.get("selftest") or {}).get("passed") is False]
    if broken:
        raise _refuse(f"drift self-test failed for {', '.join(sorted(broken))}")
    snapshots = SnapshotStore(settings.snapshot_dir)
    try:
        manifests = [snapshots.get(s["id"]) for s in (record.get("snapshots") or {}).values()]
    except EwspipeError as exc:
        raise _refuse(f"a snapshot of monthly run {record['run_id']} is gone ({exc})") from exc
    guards = freshness_report(settings, snapshot_manifest=manifests)
    if not guards.passed:
        raise _refuse(guards.message())
    try:
        release = check_release(settings)
    except ReleaseGuardFailed as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    return {k: release[k] for k in ("tag", "version", "commit")}


def move_pointer(settings: Settings, env: str, level: str, target: str,
                 run: str) -> dict[str, Any]:
    """Point ``(level, target)`` of ``env`` at stored run ``run`` after the publish checks."""
    store = PredictionStore(settings.state_dir / env / "predictions")
    parts = store.partitions(level=level, run=run)
    if not parts:
        not_found("body", "run", f"no stored {level} forecasts of run {run!r} in environment "
                  f"{env!r}; list runs with GET /api/v1/runs?env={env}")
    deployed = []
    for part in parts:
        meta = store.metadata(level, run, part.model)
        if meta.get("target") == target and meta.get("status") == "deployed":
            deployed.append((meta.get("kind") != "ensemble", part.model))
    if not deployed:
        raise _refuse(f"run {run!r} stored no deployed {level} model or ensemble of target "
                      f"{target!r}")
    record = _monthly_record(settings, env, level, run)
    release = _checks(settings, record)
    pointers = pointers_for(settings, env)
    if pointers is None:  # pragma: no cover - a finished run always has a state database
        raise _refuse(f"environment {env!r} has no state database")
    models = [m for _, m in sorted(deployed)]
    return pointers.move({
        "publish_id": f"api-{uuid.uuid4().hex[:12]}", "level": level, "target": target,
        "run": run, "primary": models[0], "models": models,
        "published_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_month": ((record.get("snapshots") or {}).get(level) or {}).get("last_month"),
        "release": release, "published_by": "api",
    })
