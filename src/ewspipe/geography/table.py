"""The global PRIO-GRID cell -> country table: where it is, and reading it safely.

By default the table is the data file of the ``views-reporting`` wheel (MIT, PRIO), installed
without its dependencies from ``requirements-geo.lock``; only its Parquet files are read, its
code is never imported. ``[geography] priogrid_country`` points at another folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.errors import InputError
from ewspipe.panel.priogrid import N_CELLS
from ewspipe.settings import Settings

__all__ = ["TABLE_FILE", "CellCountries", "read_cell_countries", "table_path"]

TABLE_FILE = "priogrid.parquet"
PACKAGE = "views-reporting"
PACKAGE_DIR = "views_reporting/metadata/data"

INSTALL_HINT = ("install it with `make run` (requirements-geo.lock) or `pip install --no-deps "
                f"{PACKAGE}==0.3.4`, or set [geography] priogrid_country in ewspipe.toml to a "
                f"folder holding {TABLE_FILE}")


@dataclass(frozen=True)
class CellCountries:
    """One country per cell: ``gids`` and ``country_ids`` (int64, same length)."""

    path: Path
    sha256: str
    gids: np.ndarray
    country_ids: np.ndarray


def table_path(settings: Settings) -> tuple[Path, str]:
    """The table file and where that choice comes from (for messages); InputError when the
    setting names no usable folder or the package is not installed."""
    folder = settings.geography.priogrid_folder(settings.source_file)
    if folder is not None:
        where = f"[geography] priogrid_country of {settings.source_file or 'the settings'}"
        if not (folder / TABLE_FILE).is_file():
            raise InputError(f"{where}: {folder} holds no {TABLE_FILE}; point it at a folder "
                             f"with {TABLE_FILE} (columns priogrid_id, country_id) or set it "
                             f"to \"\" to use the installed {PACKAGE} table")
        return folder / TABLE_FILE, where
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"the PRIO-GRID cell -> country table ({PACKAGE}) is not installed; "
                         f"{INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(f"{PACKAGE_DIR}/{TABLE_FILE}")))
    if not path.is_file():
        raise InputError(f"the installed {PACKAGE} {dist.version} has no {PACKAGE_DIR}/"
                         f"{TABLE_FILE}; {INSTALL_HINT}")
    return path, f"the installed {PACKAGE} {dist.version}"


def _int_column(table: pa.Table, names: tuple[str, ...], path: Path) -> np.ndarray:
    name = next((n for n in names if n in table.column_names), None)
    if name is None:
        raise InputError(f"{path}: no {' or '.join(names)} column (columns: "
                         f"{', '.join(table.column_names)}); the table needs priogrid_id and "
                         "country_id")
    column = table.column(name)
    if not pa.types.is_integer(column.type) or column.null_count:
        raise InputError(f"{path}: column {name} must be whole numbers without gaps (found "
                         f"{column.type}, {column.null_count} empty)")
    return column.to_numpy().astype(np.int64)


def read_cell_countries(path: Path) -> CellCountries:
    """Read and check the table: unique cell ids within the globe, integer country ids."""
    try:
        data = path.read_bytes()
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        if meta.num_rows > N_CELLS:
            raise InputError(f"{path}: {meta.num_rows} rows, more than the {N_CELLS} cells of "
                             "the globe; the table has one row per PRIO-GRID cell")
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet table ({exc}); "
                         f"{INSTALL_HINT}") from None
    gids = _int_column(table, ("priogrid_id", "priogrid_gid"), path)
    cids = _int_column(table, ("country_id",), path)
    if len(gids) and (gids.min() < 1 or gids.max() > N_CELLS):
        raise InputError(f"{path}: cell ids must lie in 1..{N_CELLS} (found "
                         f"{gids.min()}..{gids.max()})")
    if len(np.unique(gids)) != len(gids):
        raise InputError(f"{path}: a cell is listed more than once; the table gives one "
                         "country per cell")
    return CellCountries(path, hashlib.sha256(data).hexdigest(), gids, cids)
