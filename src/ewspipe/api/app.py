"""The FastAPI application: the read API (``ewspipe.api.routes``) and the dashboard
(``ewspipe.api.dashboard``) served by one app, so one process and one port serve both."""

from __future__ import annotations

from fastapi import FastAPI

from ewspipe import __version__
from ewspipe.api import dashboard
from ewspipe.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings) -> FastAPI:
    """An app reading the state of ``settings``; no CORS middleware (same-origin only)."""
    app = FastAPI(title="ewspipe", version=__version__,
                  description="Published conflict forecasts, evaluations, runs, releases and "
                  "alerts (read-only unless a token is configured).")
    app.state.settings = settings
    app.include_router(dashboard.router)
    return app
