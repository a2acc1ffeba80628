"""PRIO-GRID geometry: 0.5-degree cells, ids counted row-major from the south-west corner.

``gid = (row - 1) * 720 + col``; row 1 starts at latitude -90, col 1 at longitude -180.
All functions are vectorised over numpy arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "CELL_DEGREES",
    "N_CELLS",
    "N_COLS",
    "N_ROWS",
    "cell_centre",
    "gid_from_latlon",
    "gid_from_rowcol",
    "queen_neighbours",
    "rowcol_from_gid",
    "validate_gid",
]

CELL_DEGREES = 0.5
N_ROWS = 360
N_COLS = 720
N_CELLS = N_ROWS * N_COLS

IntArray = npt.NDArray[np.int64]


def validate_gid(gid: npt.ArrayLike) -> IntArray:
    arr = np.asarray(gid, dtype=np.int64)
    bad = (arr < 1) | (arr > N_CELLS)
    if bad.any():
        raise ValueError(
            f"priogrid_gid must be in 1..{N_CELLS}; got {arr[bad][:5].tolist()} "
            f"({int(bad.sum())} invalid)"
        )
    return arr


def rowcol_from_gid(gid: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    arr = validate_gid(gid)
    row, col0 = np.divmod(arr - 1, N_COLS)
    return row + 1, col0 + 1


def gid_from_rowcol(row: npt.ArrayLike, col: npt.ArrayLike) -> IntArray:
    r = np.asarray(row, dtype=np.int64)
    c = np.asarray(col, dtype=np.int64)
    if ((r < 1) | (r > N_ROWS)).any() or ((c < 1) | (c > N_COLS)).any():
        raise ValueError(f"row must be in 1..{N_ROWS} and col in 1..{N_COLS}")
    return (r - 1) * N_COLS + c


def gid_from_latlon(lat: npt.ArrayLike, lon: npt.ArrayLike) -> IntArray:
    """Cell of each point; lat 90 and lon 180 fall into the last row / column."""
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    if (~np.isfinite(la) | (la < -90) | (la > 90)).any():
        raise ValueError("latitude must be finite and within [-90, 90]")
    if (~np.isfinite(lo) | (lo < -180) | (lo > 180)).any():
        raise ValueError("longitude must be finite and within [-180, 180]")
    row = np.minimum(np.floor((la + 90) / CELL_DEGREES).astype(np.int64) + 1, N_ROWS)
    col = np.minimum(np.floor((lo + 180) / CELL_DEGREES).astype(np.int64) + 1, N_COLS)
    return (row - 1) * N_COLS + col


def cell_centre(gid: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(lat, lon) of each cell's centre."""
    row, col = rowcol_from_gid(gid)
    return (row - 0.5) * CELL_DEGREES - 90.0, (col - 0.5) * CELL_DEGREES - 180.0


def queen_neighbours(gid: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Pairs (cell, neighbour) over the 8 queen neighbours of every given cell.

    Longitude wraps around the antimeridian; latitude does not (the poles have no row
    beyond them). The result is the edge list, so callers can join or aggregate on it.
    """
    row, col = rowcol_from_gid(np.atleast_1d(np.asarray(gid, dtype=np.int64)))
    src: list[IntArray] = []
    dst: list[IntArray] = []
    base = gid_from_rowcol(row, col)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            r = row + dr
            ok = (r >= 1) & (r <= N_ROWS)
            c = (col - 1 + dc) % N_COLS + 1
            src.append(base[ok])
            dst.append((r[ok] - 1) * N_COLS + c[ok])
    return np.concatenate(src), np.concatenate(dst)
