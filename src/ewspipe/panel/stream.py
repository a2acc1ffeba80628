"""Streamed import of a pgm panel: validate and write it block by block in bounded memory.

The global pgm panel is ~29 million rows; held as pandas it costs several copies of 1.4 GB
on the way to a snapshot. A well-formed table (integer columns, no missing values, sorted by
(month_id, priogrid_gid), every value plausible) is checked here one Arrow block at a time
and written straight into the snapshot; what makes the id, manifest and report (the content
hash, totals, units, span) is gathered on the way, identical to the in-memory path's.

Anything else, the first doubtful block (a missing value, text, a negative count, rows out
of order, a gap), raises :class:`NotStreamable`: the caller falls back to the in-memory
validation (:func:`ewspipe.panel.schema.validate_panel`), which either accepts the table
(e.g. an unsorted one) or refuses it with today's message naming the row and column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.panel.months import current_month_id, month_label
from ewspipe.panel.priogrid import N_CELLS
from ewspipe.panel.schema import (
    COUNT_PATTERN,
    TIME_COLUMN,
    Level,
    MissingPolicy,
    ValidationReport,
)
from ewspipe.panel.snapshot import DATA_FILE, PanelFacts

__all__ = ["NotStreamable", "PgmStreamWriter", "parquet_blocks"]

IntArray = npt.NDArray[np.int64]
_UNIT = Level.PGM.unit_column
_OWNER = "country_id"
_INT64 = pa.int64()
_BLOCK_ROWS = 1 << 20


class NotStreamable(Exception):
    """This table needs the in-memory validation (it may still be valid, e.g. unsorted)."""


def _is_plain_int(t: pa.DataType) -> bool:
    """Integer types that fit int64 without a range check (uint64 may wrap: not plain)."""
    return pa.types.is_integer(t) and not pa.types.is_uint64(t)


def parquet_blocks(path: Path, batch_size: int = _BLOCK_ROWS) -> Iterable[pa.RecordBatch]:
    """The file's rows as Arrow batches of ``batch_size`` rows, pandas index columns left out
    (the in-memory path drops them too)."""
    parquet = pq.ParquetFile(path)
    meta = parquet.schema_arrow.pandas_metadata or {}
    index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
    columns = [c for c in parquet.schema_arrow.names if c not in index]
    yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


@dataclass
class _Tracker:
    """Per-cell first month, last month and row count (dense over all PRIO-GRID gids)."""

    first: IntArray = field(default_factory=lambda: np.zeros(N_CELLS + 1, dtype=np.int64))
    last: IntArray = field(default_factory=lambda: np.zeros(N_CELLS + 1, dtype=np.int64))
    rows: IntArray = field(default_factory=lambda: np.zeros(N_CELLS + 1, dtype=np.int64))

    def add(self, month: int, units: IntArray) -> None:
        fresh = self.rows[units] == 0
        self.first[units[fresh]] = month
        self.last[units] = month
        self.rows[units] += 1


class PgmStreamWriter:
    """Validate pgm blocks and append them to ``<staged>/DATA_FILE``.

    ``feed`` every block in order, then ``finish`` for the report and the manifest facts.
    Raises :class:`NotStreamable` at the first block the fast checks cannot accept.
    """

    def __init__(self, staged: Path, *, source: str, count_columns: list[str] | None = None,
                 missing: MissingPolicy | str = MissingPolicy.ERROR,
                 max_count: int | None = None, today: date | None = None) -> None:
        self.path = staged / DATA_FILE
        self.source = source
        self.requested = None if count_columns is None else tuple(count_columns)
        self.missing = MissingPolicy(missing)
        self.max_count = max_count
        self.limit = current_month_id(today)
        self.columns: tuple[str, ...] = ()
        self.counts: tuple[str, ...] = ()
        self.input_names: list[str] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.totals: dict[str, int] = {}
        self.prev: tuple[int, int] | None = None
        self.last_month_rows = 0
        self.tracker = _Tracker()
        self.month_range: tuple[int, int] | None = None

    # ------------------------------------------------------------------ schema
    def _layout(self, schema: pa.Schema) -> None:
        names = [str(n) for n in schema.names]
        if len(set(names)) != len(names) or TIME_COLUMN not in names or _UNIT not in names:
            raise NotStreamable("columns")
        if self.requested is None:
            counts = tuple(c for c in names if COUNT_PATTERN.match(c))
        else:
            counts = self.requested
            if any(c not in names or c in (TIME_COLUMN, _UNIT) for c in counts):
                raise NotStreamable("counts")
        if not counts:
            raise NotStreamable("no counts")
        ordered = [TIME_COLUMN, _UNIT, *counts]
        others = [c for c in names if c not in ordered]
        if others not in ([], [_OWNER]):  # other columns keep their dtype in memory
            raise NotStreamable("extra columns")
        if not all(_is_plain_int(schema.field(c).type) for c in names):
            raise NotStreamable("types")
        self.columns, self.counts = (*ordered, *others), counts
        self.input_names = names
        self.totals = dict.fromkeys(counts, 0)
        schema_out = pa.schema([(c, _INT64) for c in self.columns])
        self.writer = pq.ParquetWriter(self.path, schema_out, compression="zstd")

    # ------------------------------------------------------------------ blocks
    def feed(self, block: pa.RecordBatch | pa.Table) -> None:
        if self.writer is None:
            self._layout(block.schema)
        if [str(n) for n in block.schema.names] != self.input_names:
            raise NotStreamable("schema changed")
        if block.num_rows == 0:
            return
        arrays: dict[str, IntArray] = {}
        for name in self.columns:
            column = block.column(block.schema.get_field_index(name))
            if column.null_count or not _is_plain_int(column.type):
                raise NotStreamable(f"{name}: missing values or type")
            values = column.to_numpy()
            arrays[name] = values if values.dtype == np.int64 else values.astype(np.int64)
        months, units = arrays[TIME_COLUMN], arrays[_UNIT]
        if months.min() < 1 or months.max() > self.limit or units.min() < 1 or \
                units.max() > N_CELLS:
            raise NotStreamable("index range")
        for name in self.counts:
            values = arrays[name]
            if values.min() < 0 or (self.max_count is not None and values.max() > self.max_count):
                raise NotStreamable(f"{name}: range")
            self.totals[name] += int(values.sum())
        if _OWNER in arrays and arrays[_OWNER].min() < -1:
            raise NotStreamable("country_id range")
        self._order(months, units)
        self._track(months, units)
        self.rows += months.size
        assert self.writer is not None
        self.writer.write_table(pa.table([pa.array(arrays[c]) for c in self.columns],
                                         names=list(self.columns)))

    def _order(self, months: IntArray, units: IntArray) -> None:
        """Strictly increasing (month, unit), across block boundaries too: sorted and unique."""
        if self.prev is not None:
            m0, u0 = int(months[0]), int(units[0])
            if (m0, u0) <= self.prev:
                raise NotStreamable("order")
        dm = np.diff(months)
        if (dm < 0).any() or ((dm == 0) & (np.diff(units) <= 0)).any():
            raise NotStreamable("order")
        self.prev = (int(months[-1]), int(units[-1]))

    def _track(self, months: IntArray, units: IntArray) -> None:
        bounds = np.flatnonzero(np.diff(months)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [months.size]])
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            month = int(months[lo])
            if self.month_range is None or month != self.month_range[1]:
                self.last_month_rows = 0
            self.tracker.add(month, units[lo:hi])
            self.last_month_rows += hi - lo
            first = month if self.month_range is None else self.month_range[0]
            self.month_range = (first, month)

    # ------------------------------------------------------------------ end
    def finish(self) -> tuple[PanelFacts, ValidationReport]:
        """Close the file; the contiguity check, then the report and facts of the panel."""
        if self.writer is None or self.month_range is None:
            raise NotStreamable("no rows")
        self.writer.close()
        tracker = self.tracker
        seen = tracker.rows > 0
        if (tracker.last[seen] - tracker.first[seen] + 1 != tracker.rows[seen]).any():
            raise NotStreamable("gaps")
        first, last = self.month_range
        units = int(seen.sum())
        report = ValidationReport(source=self.source)
        report.add("readable", f"{self.rows:,} rows, {len(self.input_names)} columns")
        report.add("columns", f"index ({TIME_COLUMN}, {_UNIT}); counts {', '.join(self.counts)}")
        report.add("index", f"months {first}..{last} ({month_label(first)}..{month_label(last)})"
                   ", no future months")
        report.add("missing values", "none")
        report.add("counts", "integer, non-negative" + (
            f", at most {self.max_count:,}" if self.max_count is not None else ""))
        report.add("unique", f"one row per ({TIME_COLUMN}, {_UNIT})")
        report.add("contiguous", f"{units:,} units, each with contiguous months")
        facts = PanelFacts(
            level=Level.PGM, count_columns=self.counts,
            columns=dict.fromkeys(self.columns, "int64"), rows=self.rows, first_month=first,
            last_month=last, units=units, units_last_month=self.last_month_rows,
            totals=dict(self.totals),
        )
        return facts, report

    def close(self) -> None:
        """Release the file after a failure (the staged folder is discarded by the caller)."""
        if self.writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()
