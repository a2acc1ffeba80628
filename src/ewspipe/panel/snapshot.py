"""Immutable, content-addressed snapshots of validated panels.

A snapshot is a folder ``<root>/<id>/`` holding ``data.parquet`` and ``manifest.json``. The id
is derived from the panel's content (level, column names, dtypes, values), so importing the
same data twice yields the same snapshot and two different panels can never share an id.
Writes go to a temporary folder that is renamed into place only when complete, so a crash
never leaves a half-written snapshot visible.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe import __version__
from ewspipe.atomic import (
    TMP_DIR_PREFIX,
    atomic_dir,
    commit_dir,
    make_temp_dir,
    remove_stale_temps,
)
from ewspipe.errors import InputError, IntegrityError, SnapshotNotFound, StoreError
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import TIME_COLUMN, Level, Panel, PanelSpec, ValidationReport

__all__ = [
    "DATA_FILE",
    "Manifest",
    "PanelFacts",
    "SnapshotStore",
    "content_hash",
    "file_content_hash",
    "file_sha256",
    "read_frame",
]

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = TMP_DIR_PREFIX
_ID_HEX = 16


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(panel: Panel) -> str:
    """sha256 of the panel's meaning, independent of Parquet writer versions."""
    h = _hash_header(panel.level, panel.spec.count_columns)
    for name in panel.frame.columns:
        col = panel.frame[name]
        h.update(f"column={name}:{col.dtype};".encode())
        if pd.api.types.is_numeric_dtype(col):
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:
            h.update("\x1f".join("\x00" if pd.isna(v) else str(v) for v in col).encode())
    return h.hexdigest()


def _hash_header(level: Level, count_columns: tuple[str, ...] | list[str]) -> hashlib._Hash:
    h = hashlib.sha256()
    h.update(f"level={level.value};counts={','.join(count_columns)};".encode())
    return h


def file_content_hash(path: Path, level: Level, count_columns: tuple[str, ...]) -> str:
    """:func:`content_hash` of a stored panel whose columns are all int64, read back one
    column at a time: a streamed panel is never whole in memory, not even to be hashed."""
    h = _hash_header(level, count_columns)
    parquet = pq.ParquetFile(path)
    for name in parquet.schema_arrow.names:
        h.update(f"column={name}:int64;".encode())
        for batch in parquet.iter_batches(batch_size=1 << 22, columns=[name]):
            h.update(memoryview(np.ascontiguousarray(batch.column(0).to_numpy())))
    return h.hexdigest()


@dataclass(frozen=True)
class PanelFacts:
    """What a manifest records about a panel: from the frame, or gathered while it streamed."""

    level: Level
    count_columns: tuple[str, ...]
    columns: dict[str, str]
    rows: int
    first_month: int
    last_month: int
    units: int
    units_last_month: int
    totals: dict[str, int]

    @classmethod
    def of(cls, panel: Panel) -> PanelFacts:
        return cls(
            level=panel.level, count_columns=tuple(panel.spec.count_columns),
            columns={c: str(t) for c, t in panel.frame.dtypes.items()},
            rows=len(panel.frame), first_month=panel.first_month,
            last_month=panel.last_month, units=len(panel.units),
            units_last_month=len(panel.forecast_entities()), totals=panel.totals(),
        )


@dataclass(frozen=True)
class Manifest:
    id: str
    sha256: str
    file_sha256: str
    level: str
    source: dict[str, Any]
    imported_at: str
    fetched_at: str
    columns: dict[str, str]
    count_columns: list[str]
    rows: int
    first_month: int
    last_month: int
    months: int
    units: int
    units_last_month: int
    totals: dict[str, int]
    validation: dict[str, Any]
    ewspipe_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def span(self) -> str:
        return (f"{self.first_month}..{self.last_month} "
                f"({month_label(self.first_month)}..{month_label(self.last_month)})")


def _now() -> str:
    """UTC with microseconds: two imports in the same second must still sort in order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SnapshotStore:
    """The snapshots below one folder; the only code that reads or writes them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ write
    def write(
        self,
        panel: Panel,
        report: ValidationReport,
        *,
        source: dict[str, Any],
        fetched_at: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Manifest, bool]:
        """Store the panel; returns (manifest, created). An identical panel is not stored twice.

        A subclass adds to the manifest's ``extra`` with :meth:`_annotate` and sees every
        written (or already stored) manifest in :meth:`_stored`."""
        extra = {**(extra or {}), **self._annotate(panel)}
        manifest, created = self._store(panel, report, source, fetched_at, extra)
        self._stored(panel, manifest)
        return manifest, created

    def _annotate(self, panel: Panel) -> dict[str, Any]:
        """Entries for the manifest's ``extra`` (none here)."""
        return {}

    def _stored(self, panel: Panel, manifest: Manifest) -> None:
        """Called with the manifest of every write, new or already stored."""

    def _store(self, panel: Panel, report: ValidationReport, source: dict[str, Any],
               fetched_at: str | None, extra: dict[str, Any]) -> tuple[Manifest, bool]:
        try:
            return self._store_in(panel, report, source, fetched_at, extra)
        except FileExistsError:
            raise
        except OSError as exc:  # read-only or full state folder: a clear refusal, not a trace
            raise self._unwritable(exc) from exc

    def _store_in(self, panel: Panel, report: ValidationReport, source: dict[str, Any],
                  fetched_at: str | None, extra: dict[str, Any]) -> tuple[Manifest, bool]:
        remove_stale_temps(self.root)  # what an import killed mid-write left behind
        digest = content_hash(panel)
        snap_id = f"{panel.level.value}-{digest[:_ID_HEX]}"
        final = self.root / snap_id
        if (final / MANIFEST_FILE).is_file():
            return self.get(snap_id), False
        try:
            with atomic_dir(final) as tmp:
                table = pa.Table.from_pandas(panel.frame, preserve_index=False)
                pq.write_table(table, tmp / DATA_FILE, compression="zstd")
                manifest = self._manifest(snap_id, digest, tmp / DATA_FILE, PanelFacts.of(panel),
                                          report, source, fetched_at, extra)
                (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        except FileExistsError:
            if (final / MANIFEST_FILE).is_file():  # a concurrent writer won the race
                return self.get(snap_id), False
            raise
        return manifest, True

    @staticmethod
    def _manifest(snap_id: str, digest: str, data: Path, facts: PanelFacts,
                  report: ValidationReport, source: dict[str, Any], fetched_at: str | None,
                  extra: dict[str, Any]) -> Manifest:
        imported = _now()
        return Manifest(
            id=snap_id,
            sha256=digest,
            file_sha256=file_sha256(data),
            level=facts.level.value,
            source=source,
            imported_at=imported,
            fetched_at=fetched_at or imported,
            columns=dict(facts.columns),
            count_columns=list(facts.count_columns),
            rows=facts.rows,
            first_month=facts.first_month,
            last_month=facts.last_month,
            months=facts.last_month - facts.first_month + 1,
            units=facts.units,
            units_last_month=facts.units_last_month,
            totals=dict(facts.totals),
            validation=report.to_dict(),
            ewspipe_version=__version__,
            extra=extra,
        )

    # ------------------------------------------------------------------ streamed write
    def staging(self, level: Level) -> Path:
        """A fresh temporary folder for a streamed write: fill ``<folder>/DATA_FILE``
        (int64 columns, sorted by month and unit), then :meth:`write_staged` it or
        :meth:`discard` it."""
        try:
            remove_stale_temps(self.root)
            return make_temp_dir(self.root / f"{level.value}-incoming")
        except OSError as exc:
            raise self._unwritable(exc) from exc

    @staticmethod
    def discard(staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def write_staged(
        self,
        staged: Path,
        facts: PanelFacts,
        report: ValidationReport,
        *,
        source: dict[str, Any],
        fetched_at: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Manifest, bool]:
        """Store a panel streamed into ``staged`` (see :meth:`staging`) like :meth:`write`
        stores one in memory: the same id, manifest and hooks, where :meth:`_annotate` sees
        only the last :meth:`_annotate_months` months. ``staged`` is consumed either way."""
        data = staged / DATA_FILE
        try:
            digest = file_content_hash(data, facts.level, facts.count_columns)
            snap_id = f"{facts.level.value}-{digest[:_ID_HEX]}"
            final = self.root / snap_id
            tail = self._tail(data, facts)
            extra = {**(extra or {}), **self._annotate(tail)}
            if (final / MANIFEST_FILE).is_file():
                manifest, created = self.get(snap_id), False
            else:
                manifest = self._manifest(snap_id, digest, data, facts, report, source,
                                          fetched_at, extra)
                (staged / MANIFEST_FILE).write_text(
                    json.dumps(manifest.to_dict(), indent=2) + "\n")
                try:
                    commit_dir(staged, final)
                    created = True
                except FileExistsError:
                    if not (final / MANIFEST_FILE).is_file():
                        raise
                    manifest, created = self.get(snap_id), False  # a concurrent writer won
        except OSError as exc:
            raise self._unwritable(exc) from exc
        finally:
            self.discard(staged)
        self._stored(tail, manifest)
        return manifest, created

    def _annotate_months(self) -> int | None:
        """How many trailing months :meth:`_annotate` reads (None: all of them); a streamed
        write loads only those."""
        return 1

    def _tail(self, data: Path, facts: PanelFacts) -> Panel:
        months = self._annotate_months()
        first = facts.first_month if months is None else \
            max(facts.first_month, facts.last_month - max(months, 1) + 1)
        filters = [(TIME_COLUMN, ">=", first)] if first > facts.first_month else None
        frame = pq.read_table(data, filters=filters).to_pandas(split_blocks=True,
                                                              self_destruct=True)
        return Panel(frame=frame, spec=PanelSpec(level=facts.level,
                                                 count_columns=facts.count_columns))

    def _unwritable(self, exc: OSError) -> InputError:
        return InputError(
            f"{self.root}: cannot write the snapshot ({exc.strerror or exc}); nothing was "
            "stored. Make the state folder writable and free some space, or pass "
            "--state-dir with a writable folder, then re-run the import"
        )

    # ------------------------------------------------------------------ read
    def list(self) -> list[Manifest]:
        """All snapshots, oldest import first."""
        if not self.root.is_dir():
            return []
        found = [
            self._read_manifest(p / MANIFEST_FILE)
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(_TMP_PREFIX) and (p / MANIFEST_FILE).is_file()
        ]
        return sorted(found, key=lambda m: (m.imported_at, m.id))

    def latest(self, level: Level | str) -> Manifest:
        level = Level(level)
        of_level = [m for m in self.list() if m.level == level.value]
        if not of_level:
            raise SnapshotNotFound(
                f"no {level.value} snapshot in {self.root}; import one with "
                f"`ewspipe data import panel FILE --level {level.value}` or `ewspipe data demo`"
            )
        return of_level[-1]

    def resolve(self, ref: str) -> str:
        """Full id from an id or unique prefix (with or without the level)."""
        ids = [m.id for m in self.list()]
        if ref in ids:
            return ref
        hits = [i for i in ids if i.startswith(ref) or i.split("-", 1)[-1].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise SnapshotNotFound(
                f"no snapshot '{ref}' in {self.root}; `ewspipe data list` shows the ids"
            )
        raise SnapshotNotFound(
            f"snapshot prefix '{ref}' is ambiguous ({', '.join(hits)}); give more characters"
        )

    def get(self, ref: str) -> Manifest:
        return self._read_manifest(self.root / self.resolve(ref) / MANIFEST_FILE)

    def data_path(self, ref: str, *, verify: bool = True) -> Path:
        """The snapshot's Parquet file (for block-wise readers); ``verify`` re-hashes it
        against the manifest first."""
        manifest = self.get(ref)
        path = self.root / manifest.id / DATA_FILE
        if verify and file_sha256(path) != manifest.file_sha256:
            raise IntegrityError(
                f"snapshot {manifest.id}: {path} no longer matches its recorded sha256; the "
                "store was modified. Re-import the source to recreate it."
            )
        if verify:
            _check_span(manifest, path, self.root / manifest.id / MANIFEST_FILE)
        return path

    def load(self, ref: str, *, verify: bool = True) -> Panel:
        """The stored panel; ``verify`` re-hashes the file against the manifest first."""
        manifest = self.get(ref)
        path = self.data_path(manifest.id, verify=verify)
        frame = read_frame(path)
        spec = PanelSpec(level=Level(manifest.level), count_columns=tuple(manifest.count_columns))
        return Panel(frame=frame, spec=spec)

    @staticmethod
    def _read_manifest(path: Path) -> Manifest:
        try:
            return Manifest(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"{path}: unreadable snapshot manifest ({exc})") from exc


def _check_span(manifest: Manifest, data: Path, manifest_path: Path) -> None:
    """The manifest's months are the data's (from the Parquet statistics, no data read):
    runs plan their partitions from the manifest, so a hand-edited span would train on
    months the data does not hold."""
    with pq.ParquetFile(data) as parquet:
        meta = parquet.metadata
        names = parquet.schema_arrow.names
        if TIME_COLUMN not in names or meta.num_row_groups == 0:
            return
        col = names.index(TIME_COLUMN)
        stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
    if any(st is None or not st.has_min_max for st in stats):
        return
    first, last = min(int(st.min) for st in stats), max(int(st.max) for st in stats)
    if (first, last) != (manifest.first_month, manifest.last_month):
        raise IntegrityError(
            f"snapshot {manifest.id}: {manifest_path} says months {manifest.first_month}.."
            f"{manifest.last_month}, but its data holds {first}..{last}: the manifest was "
            "edited. Restore it from a backup, or re-import the source to recreate it."
        )


def read_frame(path: Path) -> pd.DataFrame:
    """A snapshot's Parquet file as a frame equal to ``pq.read_table(path).to_pandas()``.

    A file of null-free numeric columns (every snapshot ewspipe writes) is copied row group by
    row group into one array per column: the peak is the frame plus one row group. Reading
    the whole table and converting it held Arrow's copy and pandas' at once, and the
    allocator kept the freed Arrow memory: 3.4 GB of RSS for the 1.3 GB global pgm panel,
    for the rest of the process. Any other file takes that path, then returns the freed
    memory to the system.
    """
    with pq.ParquetFile(path) as parquet:
        if _streamable(parquet):
            return _read_row_groups(parquet)
    # one block per column, each taken over from Arrow as it is converted: no consolidation
    frame = pq.read_table(path).to_pandas(split_blocks=True, self_destruct=True)
    pa.default_memory_pool().release_unused()
    return frame


def _streamable(parquet: pq.ParquetFile) -> bool:
    """Whether ``to_pandas`` would give a plain numpy column per field on a default index."""
    schema = parquet.schema_arrow
    if not all(pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_boolean(f.type) for f in schema):
        return False
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    if any(not isinstance(i, dict) or i.get("kind") != "range" or i.get("start") != 0
           or i.get("step") != 1 or i.get("name") is not None for i in index):
        return False
    meta = parquet.metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            stats = group.column(c).statistics
            if stats is None or not stats.has_null_count or stats.null_count != 0:
                return False  # a null turns an integer column into float64 NaN
    return True


def _read_row_groups(parquet: pq.ParquetFile) -> pd.DataFrame:
    schema, n = parquet.schema_arrow, parquet.metadata.num_rows
    arrays = {f.name: np.empty(n, dtype=f.type.to_pandas_dtype()) for f in schema}
    at = 0
    for g in range(parquet.metadata.num_row_groups):
        table = parquet.read_row_group(g)
        rows = table.num_rows
        for name, out in arrays.items():
            out[at:at + rows] = table.column(name).to_numpy()
        at += rows
        del table
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(arrays, copy=False)
