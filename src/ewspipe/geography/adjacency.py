"""Which countries border each other, and where they lie, from the PRIO-GRID cell table.

Two countries are neighbours when any cell of one is a queen neighbour (shares an edge or a
corner) of a cell of the other in the global cell -> country table
(:mod:`ewspipe.geography.table`). The table holds land cells only, so countries separated by
sea are neighbours only where their land cells touch (straits narrower than a 0.5-degree
cell). A country's centre is the area-weighted mean of its cells' centres on the sphere (so
Russia or Fiji, across the antimeridian, get a sensible centre). Countries that own no cell
in the table (historical ids, The Gambia and Kosovo in the GAUL-based table) have no
neighbours and no centre.

The table is located as the settings locate it by default (``[geography] priogrid_country``
of ``$EWSPIPE_CONFIG`` or ``./ewspipe.toml``, else the installed ``views-reporting`` table),
read on first use (never at import) and cached per file version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ewspipe.geography.table import read_cell_countries, table_path
from ewspipe.panel.priogrid import N_CELLS, cell_centre, queen_neighbours
from ewspipe.settings import Settings, load_settings

__all__ = ["EARTH_RADIUS_KM", "CountryGraph", "country_graph", "graph_from_cells",
           "great_circle_km"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class CountryGraph:
    """Country ids with cells (sorted), their centres, and the neighbour pairs.

    ``pairs`` holds each neighbouring pair in both directions ((a, b) and (b, a)), sorted;
    ``lat``/``lon`` (degrees) are aligned with ``countries``."""

    countries: IntArray
    lat: FloatArray
    lon: FloatArray
    pairs: tuple[IntArray, IntArray]
    source: str

    def centres(self, ids: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(lat, lon) of each id; NaN for an id without cells."""
        ids = np.asarray(ids, dtype=np.int64)
        lat, lon = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        if len(self.countries):
            pos = np.minimum(np.searchsorted(self.countries, ids), len(self.countries) - 1)
            known = self.countries[pos] == ids
            lat[known], lon[known] = self.lat[pos[known]], self.lon[pos[known]]
        return lat, lon


def graph_from_cells(gids: npt.ArrayLike, country_ids: npt.ArrayLike,
                     source: str = "") -> CountryGraph:
    """The graph of a cell -> country table (one country per cell; ids < 0: no country)."""
    gids = np.asarray(gids, dtype=np.int64)
    cids = np.asarray(country_ids, dtype=np.int64)
    keep = cids >= 0
    gids, cids = gids[keep], cids[keep]
    owner = np.full(N_CELLS + 1, -1, dtype=np.int64)
    owner[gids] = cids
    src, dst = queen_neighbours(gids)
    a, b = owner[src], owner[dst]
    across = (b >= 0) & (a != b)
    codes = np.unique(a[across] * (int(cids.max(initial=0)) + 1) + b[across])
    left, right = np.divmod(codes, int(cids.max(initial=0)) + 1)

    countries, index = np.unique(cids, return_inverse=True)
    lat, lon = cell_centre(gids)
    phi, lam = np.radians(lat), np.radians(lon)
    weight = np.cos(phi)  # a cell's area is proportional to cos(latitude)
    sums = [np.bincount(index, weights=weight * v, minlength=len(countries))
            for v in (np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi))]
    x, y, z = sums
    c_lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    c_lon = np.degrees(np.arctan2(y, x))
    return CountryGraph(countries.astype(np.int64), c_lat, c_lon,
                        (left.astype(np.int64), right.astype(np.int64)), source)


def great_circle_km(lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike,
                    lon2: npt.ArrayLike) -> FloatArray:
    """Haversine distance in km between points given in degrees (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def country_graph(settings: Settings | None = None) -> CountryGraph:
    """The graph of the cell table the settings point at (default: the settings found as the
    CLI finds them without ``--config``).

    Raises:
        InputError: the settings or the table are unusable (the message says how to fix).
    """
    path, where = table_path(settings if settings is not None else load_settings())
    stat = path.stat()
    return _cached(str(path), stat.st_mtime_ns, stat.st_size, where)


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, size: int, where: str) -> CountryGraph:
    del mtime_ns, size  # cache key only: a replaced file is read again
    table = read_cell_countries(Path(path))
    return graph_from_cells(table.gids, table.country_ids, source=f"{path} ({where})")
