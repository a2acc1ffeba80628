"""The dashboard: an offline page served by the API app (no CDN, no tile server).

``/dashboard`` is one HTML page with the project's own script and style sheet
(``ewspipe/api/static``, shipped as package data; a Content-Security-Policy allows nothing
but this origin). The page reads small JSON documents from ``/dashboard/data/...``, which
read the stores directly (:mod:`ewspipe.api.dashboard_data`,
:mod:`ewspipe.api.dashboard_release`), so the dashboard works without the ``/api/v1``
routers. They are internal to the page and left out of the OpenAPI schema:

- ``overview``: environments (monthly runs, published pointers, stored forecasts), snapshots
- ``release``: production version, development ahead/behind, ledger, last staging report
- ``map?env&level&model[&run][&step|&month]``: one step of a stored forecast, every unit
  with its label (``labels``: "Ukraine (UKR)", "cell 202022 (Ukraine)")
- ``geometry``: country outlines merged from PRIO-GRID cells (SVG paths; the global cell ->
  country table, a demo world's own cells), and the cm countries without one (``missing``)
- ``series?env&level&model&unit[&run][&history]``: observed history, forecast, interval
- ``evaluation?level[&metric][&run]``, ``online?level``, ``alerts[?env][&limit][&severity]``

A query value that cannot be used answers 422 with FastAPI's error shape, naming the
parameter; something not stored answers 404 with a message saying how to produce it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ewspipe.api import dashboard_data as data
from ewspipe.api.dashboard_release import release_status
from ewspipe.errors import EwspipeError, InputError
from ewspipe.settings import Settings

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

STATIC = {"dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
Level = Literal["cm", "pgm"]
Env = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                           description="environment, e.g. development or production")]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # model and run names as the stores write them
Name = Annotated[str, Query(min_length=1, max_length=128, pattern=NAME)]
OptName = Annotated[str | None, Query(min_length=1, max_length=128, pattern=NAME)]


def _static(name: str) -> bytes:
    return (resources.files("ewspipe.api") / "static" / name).read_bytes()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _answer(func: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> JSONResponse:
    """Run a reader; its refusals become 422 (naming the parameter) or 404."""
    try:
        return JSONResponse(func(*args, **kwargs), headers={"Cache-Control": "no-store"})
    except data.ParamError as exc:
        return JSONResponse(status_code=422, content={"detail": [
            {"type": "value_error", "loc": ["query", exc.param], "msg": str(exc)}]})
    except data.NotFound as exc:
        return JSONResponse(status_code=404, content={"detail": str(exc)})
    except InputError as exc:  # refused by a store (e.g. a name it cannot hold)
        return JSONResponse(status_code=422, content={"detail": [
            {"type": "value_error", "loc": ["query"], "msg": str(exc)}]})
    except EwspipeError as exc:  # unreadable state: say what, never a bare 500
        return JSONResponse(status_code=503, content={"detail": str(exc)})


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
def page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                             "X-Content-Type-Options": "nosniff"})


@router.get("/dashboard/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        return JSONResponse(status_code=404, content={"detail": f"no static file {name!r}"})
    return Response(_static(name), media_type=STATIC[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get("/dashboard/data/overview")
def overview(request: Request) -> JSONResponse:
    return _answer(data.overview, _settings(request))


@router.get("/dashboard/data/release")
def release(request: Request) -> JSONResponse:
    return _answer(release_status, _settings(request))


@router.get("/dashboard/data/map")
def forecast_map(
    request: Request, env: Env, level: Level, model: Name, run: OptName = None,
    step: Annotated[int | None, Query(ge=1, le=36)] = None,
    month: Annotated[int | None, Query(ge=1, le=100000)] = None,
) -> JSONResponse:
    return _answer(data.forecast_map, _settings(request), env=env, level=level, model=model,
                   run=run, step=step, month=month)


@router.get("/dashboard/data/geometry")
def geometry(request: Request) -> JSONResponse:
    return _answer(data.country_geometry, _settings(request))


@router.get("/dashboard/data/series")
def series(
    request: Request, env: Env, level: Level, model: Name,
    unit: Annotated[int, Query(ge=1, le=10_000_000)], run: OptName = None,
    history: Annotated[int, Query(ge=1, le=1200)] = 60,
) -> JSONResponse:
    return _answer(data.unit_series, _settings(request), env=env, level=level, model=model,
                   unit=unit, run=run, history=history)


@router.get("/dashboard/data/evaluation")
def evaluation(
    request: Request, level: Level,
    metric: Annotated[str, Query(min_length=1, max_length=32, pattern=r"^[a-z_]+$")] = "msle",
    run: OptName = None,
) -> JSONResponse:
    return _answer(data.evaluation, _settings(request), level=level, metric=metric, run=run)


@router.get("/dashboard/data/online")
def online(request: Request, level: Level) -> JSONResponse:
    return _answer(data.online, _settings(request), level=level)


@router.get("/dashboard/data/alerts")
def alerts(
    request: Request,
    env: Annotated[str | None, Query(min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    severity: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
) -> JSONResponse:
    return _answer(data.alerts, _settings(request), env=env, limit=limit, severity=severity)
