"""What every route shares: the settings, pagination, the environment parameter and read-only
access to an environment's state database (errors that name the parameter: api/errors.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from ewspipe.api.errors import invalid, not_found
from ewspipe.settings import Settings
from ewspipe.store.statedb import StateDB, open_state_db

__all__ = [
    "ENV_QUERY",
    "NAME_PATTERN",
    "PageDep",
    "PageParams",
    "SettingsDep",
    "env_or_default",
    "get_settings",
    "page",
    "page_params",
    "publish_environment",
    "publishing_env",
    "state_db",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # run ids, model names, versions: no globs
ENV_QUERY = Query(None, description="Environment (one of [run] environments).",
                  max_length=100)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    settings: SettingsDep,
    limit: int | None = Query(None, ge=1, le=100_000, description="Items per page (default "
                              "[api] page_size, at most [api] max_page_size)."),
    offset: int = Query(0, ge=0, le=10**9, description="Items to skip."),
) -> PageParams:
    cap = settings.api.max_page_size
    if limit is not None and limit > cap:
        invalid("query", "limit", f"{limit} exceeds the largest page, {cap} ([api] "
                "max_page_size); page with offset")
    return PageParams(settings.api.page_size if limit is None else limit, offset)


PageDep = Annotated[PageParams, Depends(page_params)]


def page(items: list[Any], params: PageParams) -> dict[str, Any]:
    """A :class:`~ewspipe.api.schemas.Page` body for ``items`` (all matching items)."""
    return {"total": len(items), "limit": params.limit, "offset": params.offset,
            "items": items[params.offset:params.offset + params.limit]}


def env_or_default(settings: Settings, env: str | None, default: str | None = None, *,
                   where: str = "query") -> str:
    """``env`` checked against ``[run] environments`` (default: ``default`` or the
    ``[run] environment``)."""
    name = env if env is not None else (default or settings.run.environment)
    if name not in settings.run.environments:
        invalid(where, "env", f"{name!r} is not an environment; use one of "
                f"{', '.join(settings.run.environments)}")
    return name


def publish_environment(settings: Settings) -> str | None:
    """Where published pointers live: the first of ``[run] publish_environments``."""
    envs = [e for e in settings.run.publish_environments if e in settings.run.environments]
    return envs[0] if envs else None


def publishing_env(settings: Settings, env: str | None, *, where: str = "query",
                   fix: str = "pass env") -> str:
    """``env`` checked, by default the first publishing environment; a 404 ending in ``fix``
    when no environment publishes."""
    default = publish_environment(settings)
    if env is None and default is None:
        not_found(where, "env", "no environment publishes ([run] publish_environments is "
                  f"empty); {fix}")
    return env_or_default(settings, env, default, where=where)


def state_db(settings: Settings, env: str) -> StateDB | None:
    """The environment's state database, or None when a SQLite one was never created (a read
    must not create state)."""
    layout = settings.layout.env(env)
    state = layout.root
    url = settings.run.state_url
    if not url and not layout.state_db.is_file():
        return None
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None
    key = (url, str(state))
    if key not in _DBS:  # opening runs the schema DDL: once per process, not per request
        _DBS[key] = open_state_db(url, state)
    return _DBS[key]


_DBS: dict[tuple[str, str], StateDB] = {}
