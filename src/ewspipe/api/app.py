"""The FastAPI application: the read API (``ewspipe.api.routes``) and the dashboard
(``ewspipe.api.dashboard``) served by one app, so one process and one port serve both."""

from __future__ import annotations

from fastapi import FastAPI

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
    return app
