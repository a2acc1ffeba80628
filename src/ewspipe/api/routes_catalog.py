"""``/api/v1/models``: the models and ensembles of the catalog, with their status."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam

from ewspipe.api.deps import NAME_PATTERN, PageDep, SettingsDep, page
from ewspipe.api.errors import not_found
from ewspipe.api.schemas import ErrorBody, ModelItem, Page
from ewspipe.catalog import Catalog, load_catalog
from ewspipe.errors import SpecError
from ewspipe.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["catalog"])

_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], Catalog] = {}


def _signature(*dirs: Path) -> tuple[Any, ...]:
    """Names, sizes and mtimes of the TOML files: the cached catalog is reused until one
    changes."""
    return tuple((str(p), s.st_size, s.st_mtime_ns) for d in dirs if d.is_dir()
                 for p in sorted(d.glob("*.toml")) for s in [p.stat()])


def catalog(settings: Settings) -> Catalog:
    """The catalog (parsed once per change of its files).

    Raises:
        HTTPException: 503 when a definition file is invalid (the message lists problems).
    """
    key = (settings.models_dir, settings.ensembles_dir,
           _signature(settings.models_dir, settings.ensembles_dir))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        found = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    except SpecError as exc:
        raise HTTPException(503, detail=f"the model catalog is invalid: {exc}") from exc
    with _LOCK:
        _CACHE.clear()
        _CACHE[key] = found
    return found


def _items(cat: Catalog) -> list[dict[str, Any]]:
    items = [{"name": m.name, "kind": "model", "level": m.level.value, "target": m.target,
              "status": m.status.value, "owner": m.owner, "description": m.description,
              "algorithm": m.algorithm, "features": list(m.features),
              "hyperparameters": m.hyperparameters_dict(), "config_hash": m.config_hash}
             for m in cat.models.values()]
    items += [{"name": e.name, "kind": "ensemble", "level": e.level.value, "target": e.target,
               "status": e.status.value, "owner": e.owner, "description": e.description,
               "members": list(e.members), "aggregation": e.aggregation,
               "samples": e.samples, "reconcile_with": e.reconcile_with,
               "weights": dict(e.weights) if e.weights else None}
              for e in cat.ensembles.values()]
    return sorted(items, key=lambda i: (i["level"], i["kind"], i["name"]))


@router.get("/models", summary="Models and ensembles with their status",
            response_model=Page[ModelItem], responses={503: {"model": ErrorBody}})
def get_models(
    settings: SettingsDep, paging: PageDep,
    level: Literal["cm", "pgm"] | None = Query(None),
    status: Literal["deployed", "shadow", "baseline", "deprecated"] | None =
        Query(None, description="Deployment status."),
    kind: Literal["model", "ensemble"] | None = Query(None),
) -> dict[str, Any]:
    """Every model and ensemble definition (``models/``, ``ensembles/``), filtered."""
    items = [i for i in _items(catalog(settings))
             if (level is None or i["level"] == level)
             and (status is None or i["status"] == status)
             and (kind is None or i["kind"] == kind)]
    return page(items, paging)


@router.get("/models/{name}", summary="One model or ensemble", response_model=ModelItem,
            responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}})
def get_model(settings: SettingsDep,
              name: str = PathParam(..., pattern=NAME_PATTERN, max_length=200)) -> dict[str, Any]:
    """A model's algorithm, features and hyperparameters, or an ensemble's members."""
    items = _items(catalog(settings))
    for item in items:
        if item["name"] == name:
            return item
    not_found("path", "name", f"no model or ensemble named {name!r}; list them with "
              "GET /api/v1/models")
