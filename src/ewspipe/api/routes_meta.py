"""``GET /api/v1/health``: liveness, version, whether writes are on, and whether the stored
state it serves from is intact (:mod:`ewspipe.api.health`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ewspipe import __version__
from ewspipe.api.deps import SettingsDep, publish_environment
from ewspipe.api.health import damaged_files
from ewspipe.api.schemas import Health
from ewspipe.provenance import code_version

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["meta"])


@router.get("/health", summary="Health and version", response_model=Health)
def get_health(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Always 200 while the server runs; says which code serves, whether the
    state-changing endpoints are on, and lists the stored files that are damaged (status
    ``degraded``: the endpoints reading them answer 503 naming the file and the fix)."""
    damaged = damaged_files(settings)
    return {"status": "degraded" if damaged else "ok", "damaged": damaged,
            "version": __version__, "code": code_version().to_dict(),
            "environments": list(settings.run.environments),
            "publish_environment": publish_environment(settings),
            "write_enabled": request.app.state.write_token is not None}
