"""``/api/v1/releases``: the release ledger (promotions, hotfixes, rollbacks) and the latest
staging report, read through :class:`ewspipe.release.ledger.Ledger` from the production
environment's state database."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from ewspipe.api.deps import PageDep, SettingsDep, page, state_db
from ewspipe.api.errors import not_found
from ewspipe.api.schemas import ErrorBody, Page, ReleaseItem
from ewspipe.release.ledger import Ledger
from ewspipe.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/releases", tags=["releases"])

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


def _ledger(settings: Settings) -> Ledger | None:
    db = state_db(settings, settings.run.production_environment)  # where Ledger.open looks
    return Ledger(db) if db is not None else None


@router.get("", summary="Release ledger, newest first", response_model=Page[ReleaseItem])
def get_releases(
    settings: SettingsDep, paging: PageDep,
    kind: Literal["promote", "hotfix", "rollback"] | None = Query(None),
    status: Literal["pending", "completed"] | None = Query(None),
) -> dict[str, Any]:
    """Every promotion, hotfix and rollback with its commits, manifest (evidence) and
    status; the newest completed one is what production runs."""
    ledger = _ledger(settings)
    entries = ledger.releases() if ledger is not None else []
    entries = [e for e in entries if (kind is None or e["kind"] == kind)
               and (status is None or e["status"] == status)]
    return page(entries, paging)


@router.get("/staging/latest", summary="The latest staging report",
            responses={404: {"model": ErrorBody}})
def get_latest_staging(settings: SettingsDep) -> dict[str, Any]:
    """The newest stored staging report: candidate and production commits, snapshots and
    every gate's status, summary and evidence."""
    ledger = _ledger(settings)
    report = ledger.last_staging() if ledger is not None else None
    if report is None:
        raise HTTPException(404, detail="no staging report yet: run `ewspipe release stage`")
    return report


@router.get("/{version}", summary="One ledger entry", response_model=ReleaseItem,
            responses={404: {"model": ErrorBody}})
def get_release(settings: SettingsDep,
                version: str = Path(..., pattern=VERSION_PATTERN, max_length=100)
                ) -> dict[str, Any]:
    """A promotion, hotfix or rollback by version (without the tag prefix), e.g. 1.2.0."""
    ledger = _ledger(settings)
    entry = ledger.get(version) if ledger is not None else None
    if entry is None:
        not_found("path", "version", f"no release {version!r} in the ledger; list them with "
                  "GET /api/v1/releases")
    return entry
