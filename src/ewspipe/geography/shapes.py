"""Country shapes for the dashboard map, merged from PRIO-GRID cells (shapely).

A country is the union of its 0.5-degree cells (a coverage union: cells tile the plane, so
the union is exact and fast), with the redundant vertices of straight edges removed. The
result keeps the grid's staircase borders on purpose: that is the resolution of the data,
and smoothing would shrink one-cell countries. Paths are SVG path data with x = longitude
and y = -latitude (north up), which is what ``api/static/dashboard.js`` draws.

Which cells: a demo world (cm snapshot of source kind ``demo``) is drawn from its own pgm
cells, since its ids are not real countries; every other world from the global table
(:mod:`ewspipe.geography.table`), falling back to the pgm cells with a note when that table
is unusable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ewspipe.errors import EwspipeError, InputError, StoreError
from ewspipe.geography.names import unit_names
from ewspipe.geography.table import read_cell_countries, table_path
from ewspipe.panel.priogrid import CELL_DEGREES, N_COLS
from ewspipe.panel.snapshot import DATA_FILE, Manifest, SnapshotStore
from ewspipe.settings import Settings

__all__ = ["build_shapes", "country_geometry", "ring_path"]

NO_SNAPSHOT = ("no snapshot yet: nothing to draw; import one (`ewspipe data demo` or "
               "`ewspipe data import panel FILE --level cm`)")
NO_CELLS = ("no PRIO-GRID snapshot with a country_id column: countries cannot be drawn; "
            "import one (`ewspipe data demo` or `ewspipe data import panel FILE --level pgm`)")


def _shapely() -> ModuleType:
    """shapely (a core dependency), or an InputError saying how to install it."""
    try:
        import shapely
    except ImportError as exc:
        raise InputError(f"shapely is not installed ({exc}); `make run` installs it, or "
                         "`pip install 'shapely>=2.0'`") from None
    return shapely


def _num(value: float) -> str:
    return f"{value:.6g}"


def ring_path(coords: np.ndarray) -> str:
    """One closed ring as SVG path data: ``M`` then ``h``/``v`` for axis-parallel edges (all
    of them, for merged grid cells), ``l`` otherwise."""
    x, y = coords[:, 0], -coords[:, 1]
    parts = [f"M{_num(x[0])} {_num(y[0])}"]
    for dx, dy in zip(np.diff(x[:-1]), np.diff(y[:-1]), strict=True):
        if dy == 0:
            parts.append(f"h{_num(dx)}")
        elif dx == 0:
            parts.append(f"v{_num(dy)}")
        else:
            parts.append(f"l{_num(dx)} {_num(dy)}")
    return "".join(parts) + "z"


def _geometry_path(geom: Any) -> str:
    shapely = _shapely()
    rings = shapely.get_rings(shapely.get_parts(geom))
    return "".join(ring_path(shapely.get_coordinates(r)) for r in rings)


def build_shapes(gids: np.ndarray, country_ids: np.ndarray) -> dict[str, Any]:
    """``{countries: {id: {fill, outline, centre, cells}}, bbox}`` from one country per cell.

    Exterior rings run one way and holes the other, so the default non-zero fill rule leaves
    enclaves (Lesotho in South Africa) unfilled."""
    shapely = _shapely()
    gids = np.asarray(gids, dtype=np.int64)
    cids = np.asarray(country_ids, dtype=np.int64)
    if not len(gids):
        return {"countries": {}, "bbox": None}
    row, col = np.divmod(gids - 1, N_COLS)
    d = CELL_DEGREES
    west, south = -180 + d * col, -90 + d * row
    boxes = shapely.box(west, south, west + d, south + d)
    order = np.argsort(cids, kind="stable")
    ids, starts = np.unique(cids[order], return_index=True)
    countries: dict[str, Any] = {}
    for cid, members in zip(ids, np.split(order, starts[1:]), strict=True):
        merged = shapely.simplify(shapely.coverage_union_all(boxes[members]), 0)
        path = _geometry_path(shapely.orient_polygons(merged))
        centre = [float(west[members].mean() + d / 2), float(south[members].mean() + d / 2)]
        countries[str(int(cid))] = {"cells": len(members), "fill": path, "outline": path,
                                    "centre": [round(v, 3) for v in centre]}
    bbox = [float(west.min()), float(south.min()), float(west.max() + d),
            float(south.max() + d)]
    return {"countries": countries, "bbox": bbox}


@lru_cache(maxsize=4)
def _table_shapes(path: str, sha256: str) -> dict[str, Any]:
    del sha256  # part of the cache key only: a changed table is a new geometry
    table = read_cell_countries(Path(path))
    return build_shapes(table.gids, table.country_ids)


def _global_shapes(settings: Settings) -> tuple[dict[str, Any], str]:
    """Shapes from the global table and a description of it; InputError when unusable."""
    path, where = table_path(settings)
    table = read_cell_countries(path)  # checked and hashed on each call (417 kB: a few ms)
    return _table_shapes(str(path), table.sha256), f"PRIO-GRID cell -> country table ({where})"


def _read(path: Path, columns: list[str]) -> pa.Table:
    """Columns of a snapshot's data file; an unreadable one is a StoreError naming it (503)."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: unreadable snapshot data ({exc}); re-import the snapshot "
                         "(`ewspipe data import`) to rewrite it") from None


@lru_cache(maxsize=4)
def _snapshot_shapes(data_path: str, sha256: str) -> dict[str, Any]:
    del sha256  # part of the cache key only: a new snapshot is a new geometry
    table = _read(Path(data_path), ["month_id", "priogrid_gid", "country_id"])
    last = table.filter(pc.equal(table["month_id"], pc.max(table["month_id"])))
    return build_shapes(last["priogrid_gid"].to_numpy(), last["country_id"].to_numpy())


def _newest(store: SnapshotStore, level: str, *, with_country: bool = False) -> Manifest | None:
    found = [m for m in store.list() if m.level == level
             and (not with_country or "country_id" in m.columns)]
    return found[-1] if found else None


def _cm_countries(store: SnapshotStore, cm: Manifest) -> list[int]:
    column = _read(store.root / cm.id / DATA_FILE, ["country_id"])["country_id"]
    return sorted(int(v) for v in pc.unique(column).to_pylist())


def country_geometry(settings: Settings) -> dict[str, Any]:
    """The countries to draw on the map, their source, and the cm snapshot's countries that
    have no shape (``missing``, with names)."""
    store = SnapshotStore(settings.snapshot_dir)
    cm = _newest(store, "cm")
    pgm = _newest(store, "pgm", with_country=True)
    world = cm or _newest(store, "pgm")
    if world is None:
        return {"snapshot": None, "cm_snapshot": None, "source": None, "countries": {},
                "bbox": None, "missing": [], "note": NO_SNAPSHOT}
    note: str | None = None
    geo: dict[str, Any] | None = None
    source: str | None = None
    drawn_from: str | None = None  # the pgm snapshot, when drawn from a snapshot's cells
    if world.source.get("kind") != "demo":
        try:
            geo, source = _global_shapes(settings)
        except EwspipeError as exc:
            note = f"country shapes drawn from the grid snapshot's cells instead: {exc}"
    if geo is None:
        if pgm is None:
            return {"snapshot": None, "source": None, "countries": {}, "bbox": None,
                    "missing": [], "note": f"{note}; {NO_CELLS}" if note else NO_CELLS}
        try:
            geo = _snapshot_shapes(str(store.root / pgm.id / DATA_FILE), pgm.sha256)
        except InputError as exc:  # shapely missing: say so rather than fail the page
            return {"snapshot": None, "cm_snapshot": cm.id if cm else None, "source": None,
                    "countries": {}, "bbox": None, "missing": [],
                    "note": f"countries cannot be drawn: {exc}"}
        source, drawn_from = f"cells of pgm snapshot {pgm.id}", pgm.id
    missing: list[dict[str, Any]] = []
    if cm is not None:
        names = unit_names(settings, "cm", snapshot=cm.id)
        missing = [{"country_id": c, **names.record(c)} for c in _cm_countries(store, cm)
                   if str(c) not in geo["countries"]]
    return {"snapshot": drawn_from, "cm_snapshot": cm.id if cm else None, "source": source, **geo,
            "missing": missing, "note": note}
