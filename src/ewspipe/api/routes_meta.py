"""``GET /api/v1/health``: liveness, version and whether writes are on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ewspipe import __version__
from ewspipe.api.deps import SettingsDep, publish_environment
from ewspipe.api.schemas import Health
from ewspipe.provenance import code_version

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["meta"])


@router.get("/health", summary="Health and version", response_model=Health)
def get_health(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Always 200 while the server runs; says which code serves and whether the
    state-changing endpoints are on."""
    return {"status": "ok", "version": __version__, "code": code_version().to_dict(),
            "environments": list(settings.run.environments),
            "publish_environment": publish_environment(settings),
            "write_enabled": request.app.state.write_token is not None}
