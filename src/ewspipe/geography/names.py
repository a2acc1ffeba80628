"""Unit id -> name, ISO code and label, read from the snapshots of the workspace."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.errors import EwspipeError
from ewspipe.geography.table import read_cell_countries, table_path
from ewspipe.panel.snapshot import DATA_FILE, SnapshotStore
from ewspipe.settings import Settings

__all__ = ["NAME_FIELDS", "UnitNames", "unit_labels", "unit_names"]

NAME_COLUMN, ISO_COLUMN = "country_name", "isoab"
#: The columns a named row gains after its unit column (the keys of ``UnitNames.record``),
#: in every output that names units: API rows, ``forecasts query``, exports.
NAME_FIELDS = {"cm": ("name", "isoab", "label"), "pgm": ("country_id", "name", "isoab", "label")}
COUNTRY_FILE = "country.parquet"  # beside the global cell table: VIEWS id, isoab, name


@dataclass(frozen=True)
class UnitNames:
    """Names of the units of one level.

    ``name``/``iso`` map a country id to its name and ISO-3 code (cm); ``country`` maps a
    cell to its country id (pgm). ``label(id)`` is what a person reads: "Ukraine (UKR)",
    "cell 202022 (Ukraine)", or "country 117" when the data carries no name.
    """

    level: str
    name: dict[int, str] = field(default_factory=dict)
    iso: dict[int, str] = field(default_factory=dict)
    country: dict[int, int] = field(default_factory=dict)

    def country_label(self, country_id: int) -> str:
        name = self.name.get(int(country_id))
        if name is None:
            return f"country {int(country_id)}"
        iso = self.iso.get(int(country_id))
        return f"{name} ({iso})" if iso else name

    def label(self, unit: int) -> str:
        unit = int(unit)
        if self.level == "cm":
            return self.country_label(unit)
        cid = self.country.get(unit)
        if cid is None:
            return f"cell {unit}"
        return f"cell {unit} ({self.name.get(cid, f'country {cid}')})"

    def record(self, unit: int) -> dict[str, object]:
        """JSON fields for an API row: name, iso, country_id (pgm) and label."""
        unit = int(unit)
        cid = unit if self.level == "cm" else self.country.get(unit)
        return {"name": self.name.get(cid) if cid is not None else None,
                "isoab": self.iso.get(cid) if cid is not None else None,
                **({"country_id": cid} if self.level == "pgm" else {}),
                "label": self.label(unit)}


def _last_rows(path: str, key: str, columns: list[str]) -> list[dict[str, object]]:
    table = pq.read_table(path, columns=["month_id", key, *columns])
    frame = table.to_pandas().sort_values("month_id", kind="stable")
    return frame.drop_duplicates(key, keep="last").to_dict("records")  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _cm_names(path: str, sha256: str) -> tuple[dict[int, str], dict[int, str]]:
    del sha256  # cache key only
    columns = set(pq.read_schema(path).names)
    if NAME_COLUMN not in columns:
        return {}, {}
    wanted = [NAME_COLUMN, *([ISO_COLUMN] if ISO_COLUMN in columns else [])]
    names: dict[int, str] = {}
    isos: dict[int, str] = {}
    for row in _last_rows(path, "country_id", wanted):
        cid = int(row["country_id"])  # type: ignore[call-overload]
        if isinstance(row.get(NAME_COLUMN), str) and row[NAME_COLUMN]:
            names[cid] = str(row[NAME_COLUMN])
        if isinstance(row.get(ISO_COLUMN), str) and row[ISO_COLUMN]:
            isos[cid] = str(row[ISO_COLUMN])
    return names, isos


@lru_cache(maxsize=16)
def _cell_countries(path: str, sha256: str) -> dict[int, int]:
    del sha256
    if "country_id" not in pq.read_schema(path).names:
        return {}
    return {int(r["priogrid_gid"]): int(r["country_id"])  # type: ignore[call-overload]
            for r in _last_rows(path, "priogrid_gid", ["country_id"])}


def _snapshot(store: SnapshotStore, level: str, ref: str | None
              ) -> tuple[tuple[str, str], bool] | None:
    """((data file, sha256), is a demo world) of a snapshot, or None."""
    try:
        manifest = store.get(ref) if ref else store.latest(level)
    except EwspipeError:  # no snapshot (or a damaged manifest): no names, ids stay
        return None
    return ((str(store.root / manifest.id / DATA_FILE), str(manifest.file_sha256)),
            manifest.source.get("kind") == "demo")


@lru_cache(maxsize=4)
def _table_names(path: str, mtime_ns: int) -> tuple[dict[int, str], dict[int, str]]:
    del mtime_ns  # cache key only
    frame = pq.read_table(path, columns=["country_id", "name", "isoab"]).to_pandas()
    names = {int(r.country_id): str(r.name) for r in frame.itertuples()
             if isinstance(r.name, str) and r.name}
    isos = {int(r.country_id): str(r.isoab) for r in frame.itertuples()
            if isinstance(r.isoab, str) and r.isoab}
    return names, isos


def _global_names(settings: Settings) -> tuple[dict[int, str], dict[int, str]]:
    """VIEWS country names of the global table's ``country.parquet`` (beside the cell
    table), for real data without name columns; none when the table is absent."""
    try:
        path = table_path(settings)[0].with_name(COUNTRY_FILE)
        return _table_names(str(path), path.stat().st_mtime_ns)
    except (EwspipeError, OSError, KeyError, pa.ArrowException):
        return {}, {}


def _global_cells(settings: Settings) -> dict[int, int]:
    try:
        table = read_cell_countries(table_path(settings)[0])
    except EwspipeError:
        return {}
    return dict(zip(table.gids.tolist(), table.country_ids.tolist(), strict=True))


def unit_names(settings: Settings, level: str, *, snapshot: str | None = None,
               cm_snapshot: str | None = None) -> UnitNames:
    """The names of ``level``'s units: from ``snapshot`` (default: the newest of the level);
    pgm cells take their country names from ``cm_snapshot`` (default: the newest cm)."""
    store = SnapshotStore(settings.snapshot_dir)
    cm = _snapshot(store, "cm", snapshot if level == "cm" else cm_snapshot)
    try:  # names only label rows: an unreadable snapshot leaves the ids (runs refuse it)
        names, isos = _cm_names(*cm[0]) if cm else ({}, {})
    except (OSError, pa.ArrowException):
        names, isos = {}, {}
    if cm and not names and not cm[1]:  # real data without name columns: VIEWS names
        names, isos = _global_names(settings)
    if level == "cm":
        return UnitNames("cm", dict(names), dict(isos))
    pgm = _snapshot(store, "pgm", snapshot)
    try:
        cells = _cell_countries(*pgm[0]) if pgm else {}
    except (OSError, pa.ArrowException):
        cells = {}
    if pgm and not cells and not pgm[1]:  # real cells without country_id: the global table
        cells = _global_cells(settings)
    return UnitNames("pgm", dict(names), dict(isos), dict(cells))


def unit_labels(settings: Settings, level: str, units: Iterable[int],
                **kwargs: str | None) -> dict[int, str]:
    """``{unit: label}`` for the given units (see :class:`UnitNames.label`)."""
    names = unit_names(settings, level, **kwargs)
    return {int(u): names.label(int(u)) for u in units}
