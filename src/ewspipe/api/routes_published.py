"""``/api/v1/published``: the published pointers (read) and moving one (token required)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from ewspipe.api.auth import bearer, require_token
from ewspipe.api.deps import ENV_QUERY, PageDep, SettingsDep, page, publishing_env
from ewspipe.api.errors import invalid, not_found
from ewspipe.api.publishing import list_pointers, move_pointer, pointers_for
from ewspipe.api.routes_forecasts import TARGET_PATTERN
from ewspipe.api.schemas import ErrorBody, Page, Pointer, PointerHistory, PublishRequest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/published", tags=["published"])

TARGET = Path(..., pattern=TARGET_PATTERN, max_length=64, description="Target, e.g. ged_sb.")


@router.get("", summary="Current published pointers", response_model=Page[Pointer])
def get_pointers(settings: SettingsDep, paging: PageDep,
                 env: str | None = ENV_QUERY) -> dict[str, Any]:
    """Every level and target's published pointer in an environment (default: the first of
    ``[run] publish_environments``)."""
    return page(list_pointers(settings, publishing_env(settings, env)), paging)


@router.get("/{level}/{target}", summary="One published pointer and its history",
            response_model=PointerHistory, responses={404: {"model": ErrorBody}})
def get_pointer(settings: SettingsDep, level: Literal["cm", "pgm"], target: str = TARGET,
                env: str | None = ENV_QUERY) -> dict[str, Any]:
    """The run and models users see for a level and target, and every earlier move."""
    name = publishing_env(settings, env)
    pointers = pointers_for(settings, name)
    current = pointers.current(level, target) if pointers is not None else None
    if pointers is None or current is None:
        not_found("path", "target", f"nothing published for {level}/{target} in environment "
                  f"{name!r}")
    return {"current": current, "history": pointers.history(level, target)}


def _auth(request: Request,
          credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    require_token(request, credentials)


@router.post(
    "/{level}/{target}",
    summary="Move a published pointer to a stored run (bearer token)",
    response_model=Pointer,
    dependencies=[Depends(_auth)],
    responses={401: {"model": ErrorBody, "description": "missing or wrong token"},
               403: {"model": ErrorBody, "description": "writes are off (no token variable)"},
               404: {"model": ErrorBody, "description": "unknown run"},
               409: {"model": ErrorBody, "description": "a publish check failed"}},
)
def post_pointer(request: Request, settings: SettingsDep, level: Literal["cm", "pgm"],
                 target: str = TARGET, body: PublishRequest = Body(...)) -> dict[str, Any]:
    """Publish stored run ``run`` for a level and target, only if the monthly run's publish
    rule accepts it now: a finished ``ewspipe run`` of a publishing environment, made by the
    current production release, whose QA passed, whose drift self-test did not fail and
    whose snapshots pass the freshness guards, holding a deployed model or ensemble of the
    target, while the workspace is exactly that release. A refusal is a 409 listing every
    reason. The move is recorded in the pointer history with who asked."""
    name = publishing_env(settings, body.env, where="body")
    if name not in settings.run.publish_environments:
        invalid("body", "env", f"{name!r} does not publish; use one of "
                f"{', '.join(settings.run.publish_environments) or '(none)'} ([run] "
                "publish_environments)")
    asked = {"client": request.client.host if request.client else None}
    if body.requested_by:
        asked["requested_by"] = body.requested_by
    return move_pointer(settings, name, level, target, body.run, requested_by=asked)
