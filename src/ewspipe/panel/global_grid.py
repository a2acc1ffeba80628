"""The global PRIO-GRID table: every land cell with the VIEWS country that owns it.

The global demo world (``ewspipe data demo --cells global``) is generated on this table's real
geometry and cell->country ownership. It lives in the shared data folder
(``$EWSPIPE_SHARED_DIR/data/priogrid_country/``, README there), not in the package: a missing
table is a clear refusal naming the path and the variable, never a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.errors import InputError
from ewspipe.panel.priogrid import N_CELLS

__all__ = ["GLOBAL", "SHARED_DIR_ENV", "GlobalGrid", "global_grid_path", "load_global_grid"]

GLOBAL = "global"
SHARED_DIR_ENV = "EWSPIPE_SHARED_DIR"
_RELATIVE = Path("data") / "priogrid_country"
_CELLS = "priogrid.parquet"
_NAMES = "country.parquet"

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class GlobalGrid:
    """Cells sorted by gid, the VIEWS country id owning each, and a name per owning country."""

    gids: IntArray
    country_ids: IntArray
    names: dict[int, str]


def global_grid_path() -> Path:
    """``$EWSPIPE_SHARED_DIR/data/priogrid_country/priogrid.parquet``.

    Raises:
        InputError: when the variable is not set.
    """
    shared = os.environ.get(SHARED_DIR_ENV)
    if not shared:
        raise InputError(
            f"the global demo world needs the PRIO-GRID table data/priogrid_country/{_CELLS}, "
            f"found through the environment variable {SHARED_DIR_ENV}, which is not set; "
            f"set {SHARED_DIR_ENV} to the shared folder holding data/, or use a number of "
            "cells (--pgm-cells 2000)",
            parameter="pgm_cells",
        )
    return Path(shared) / _RELATIVE / _CELLS


def load_global_grid(path: Path | None = None) -> GlobalGrid:
    """Read and check the table (one row per cell, valid gids, positive country ids).

    Raises:
        InputError: when the file is absent or unreadable or its content is not the table.
    """
    path = Path(path) if path is not None else global_grid_path()
    fix = (f"set {SHARED_DIR_ENV} to the shared folder holding data/priogrid_country/{_CELLS} "
           "(see that folder's README), or use a number of cells (--pgm-cells 2000)")
    if not path.is_file():
        raise InputError(f"{path}: the PRIO-GRID table of the global demo world is absent; "
                         f"{fix}", parameter="pgm_cells")
    try:
        table = pq.read_table(path, columns=["priogrid_id", "country_id"])
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise InputError(f"{path}: not a readable PRIO-GRID table with columns priogrid_id, "
                         f"country_id ({exc}); {fix}", parameter="pgm_cells") from exc
    gids = table["priogrid_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    owners = table["country_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(gids, kind="stable")
    gids, owners = gids[order], owners[order]
    if gids.size == 0 or (gids < 1).any() or (gids > N_CELLS).any() or \
            (np.diff(gids) <= 0).any() or (owners < 1).any():
        raise InputError(f"{path}: not a PRIO-GRID table (expected unique gids in 1..{N_CELLS} "
                         f"and positive country ids); {fix}", parameter="pgm_cells")
    return GlobalGrid(gids=gids, country_ids=owners, names=_names(path.parent / _NAMES))


def _names(path: Path) -> dict[int, str]:
    """Country names where the neighbouring table has them (optional)."""
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path, columns=["country_id", "name"])
    except (pa.ArrowException, OSError, KeyError):
        return {}
    return {int(c): str(n) for c, n in zip(table["country_id"].to_pylist(),
                                           table["name"].to_pylist(), strict=True)
            if c is not None and n is not None}
