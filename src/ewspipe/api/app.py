"""The FastAPI application: the read API (``ewspipe.api.routes``) and the dashboard
(``ewspipe.api.dashboard``) served by one app, so one process and one port serve both."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ewspipe import __version__
from ewspipe.api import (
    dashboard,
    routes_alerts,
    routes_catalog,
    routes_evaluations,
    routes_forecasts,
    routes_meta,
    routes_published,
    routes_releases,
    routes_runs,
)
from ewspipe.api.auth import read_token
from ewspipe.api.errors import install_error_handlers
from ewspipe.settings import Settings

__all__ = ["create_app"]


def _page_limits(settings: Settings) -> dict[str, int]:
    """The largest ``?limit`` by path: what the app enforces, from the settings."""
    return {"/api/v1/forecasts/{level}/{target}": settings.api.max_forecast_rows}


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document with each ``limit``'s maximum set to the cap the app enforces
    (``[api] max_page_size`` for lists, ``[api] max_forecast_rows`` for forecasts), so the
    document and the server agree whatever the settings say."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version,
                          description=app.description, routes=app.routes)
        caps = _page_limits(settings)
        for path, ops in doc.get("paths", {}).items():
            for op in ops.values():
                for param in op.get("parameters", []) if isinstance(op, dict) else []:
                    if param.get("name") == "limit" and param.get("in") == "query":
                        schema = param.get("schema", {})
                        for option in schema.get("anyOf", [schema]):
                            if option.get("type") == "integer":
                                option["maximum"] = caps.get(path, settings.api.max_page_size)
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(settings: Settings) -> FastAPI:
    """An app reading the state of ``settings``; no CORS middleware (same-origin only).

    Raises:
        InputError: the token variable ([api] token_env) holds a too-short token.
    """
    app = FastAPI(title="ewspipe", version=__version__,
                  description="Published conflict forecasts, evaluations, runs, releases and "
                  "alerts (read-only unless a token is configured).")
    app.state.settings = settings
    app.state.write_token = read_token(settings)  # None: state-changing endpoints answer 403
    install_error_handlers(app)
    for module in (routes_meta, routes_forecasts, routes_published, routes_evaluations,
                   routes_runs, routes_catalog, routes_alerts, routes_releases):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app
