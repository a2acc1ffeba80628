"""The FastAPI application: the read API (``ewspipe.api.routes``) and the dashboard
(``ewspipe.api.dashboard``) served by one app, so one process and one port serve both.

The API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``) load their JavaScript and CSS
from this server, out of the files bundled by the ``fastapi-offline`` package (installed
with the ``api`` extra), not from a CDN: they work on a machine with no network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

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
from ewspipe.api.encoding import QGZipMiddleware
from ewspipe.api.errors import install_error_handlers
from ewspipe.extras import MissingExtra, install_hint
from ewspipe.settings import Settings

__all__ = ["DOCS_CSP", "DOCS_STATIC", "create_app"]

#: where the docs pages' assets are served (swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js, favicon.png)
DOCS_STATIC = "/docs-static"

#: the docs pages may load nothing from another host: ReDoc's bundle draws its maker's logo
#: from a CDN (no option turns it off), which this blocks before any request leaves
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
            "connect-src 'self'")


def _docs_assets() -> Path:
    """The folder of Swagger UI / ReDoc files that ``fastapi-offline`` ships."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise MissingExtra(
            "the API docs (/docs, /redoc) need the optional dependency fastapi-offline, which "
            f"is not installed; install it with: {install_hint('api')}",
            extra="api", module="fastapi_offline")
    return Path(spec.origin).parent / "static"


def _with_csp(page: HTMLResponse, policy: str) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = policy
    return page


def _install_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` with every asset served locally (no CDN, no Google fonts,
    no online validator), so the pages render offline."""
    app.mount(DOCS_STATIC, StaticFiles(directory=_docs_assets()), name="docs-static")
    title, openapi_url = app.title, app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that strips a prefix
        return _with_csp(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None}), DOCS_CSP)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_csp(get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png", with_google_fonts=False),
            DOCS_CSP)


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


GZIP_MIN_BYTES = 1024  # smaller answers are not worth compressing


def create_app(settings: Settings) -> FastAPI:
    """An app reading the state of ``settings``; no CORS middleware (same-origin only).

    Raises:
        InputError: the token variable ([api] token_env) holds a too-short token.
        MissingExtra: fastapi-offline (the docs pages' assets) is not installed.
    """
    app = FastAPI(title="ewspipe", version=__version__,
                  description="Published conflict forecasts, evaluations, runs, releases and "
                  "alerts (read-only unless a token is configured).",
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.write_token = read_token(settings)  # None: state-changing endpoints answer 403
    install_error_handlers(app)
    _install_docs(app)
    for module in (routes_meta, routes_forecasts, routes_published, routes_evaluations,
                   routes_runs, routes_catalog, routes_alerts, routes_releases):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    # JSON and CSV compress ~8x (the map's country shapes: 118 kB -> 15 kB); no answer holds
    # a secret (the token is a request header only), so compression leaks nothing (BREACH)
    app.add_middleware(QGZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=6)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app
