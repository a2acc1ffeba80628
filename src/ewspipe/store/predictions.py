"""The one forecast format on disk: a Parquet table per model and run.

Columns ``origin``, ``step``, ``month_id``, the unit column, ``point`` and ``samples`` (a
list column of the value type, one row per prediction, never one per draw; a point model's
list holds its one value); values are raw counts;
provenance lives in the Parquet key-value metadata (key ``ewspipe``) so a file read on its own
still says where it came from. Run folders and task outputs keep full precision (float64,
int64: what is scored and aggregated is exactly what was computed); the prediction store
(:mod:`ewspipe.store.prediction_store`) writes the same table ``compact`` (float32 values,
int32/int16 index). Reading widens either to a float64 :class:`Forecast`.

``samples`` is a variable-size ``list<float>``, not a fixed-size list, so that the
prediction store's partitions of 1-draw and 100-draw models share one schema and the folder
reads as one dataset (pandas, polars, DuckDB). Files of earlier versions (fixed-size lists)
are read the same way.

A forecast too big for memory (a sampling model's 1,000 draws on the grid) is written chunk
by chunk (:func:`forecast_writer`, from :func:`ewspipe.models.chunking.predict_chunks`) and
read back row group by row group (:func:`iter_forecast`): each chunk is whole rows of the
forecast, in order. The prediction store also writes, for a sample forecast, one float32
column per :data:`STORED_QUANTILES` level, computed per chunk from the stored draws.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.atomic import atomic_file
from ewspipe.errors import StoreError
from ewspipe.models.forecast import INDEX_COLUMNS, Forecast

__all__ = ["META_KEY", "STORED_QUANTILES", "ChunkWriter", "draw_quantiles", "forecast_table",
           "forecast_writer", "iter_forecast", "quantile_column", "read_forecast",
           "read_forecast_metadata", "table_forecast", "write_forecast", "write_forecast_chunks",
           "write_table"]

META_KEY = _META_KEY = b"ewspipe"
#: quantile levels of the draws computed once, when a sample forecast is stored (one float32
#: column each, named by :func:`quantile_column`), so a reader (the API, the dashboard) never
#: decompresses the draws to serve them: at S = 1,000 on the global grid they are ~9.5 GB
STORED_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def quantile_column(level: float) -> str:
    """The stored column of quantile ``level``: ``q0.05`` (the API's ``q<level>`` names)."""
    return f"q{level:g}"


# the prediction store's index types (months and origins fit int32, steps 1..36 int16)
_COMPACT_INTS = {"origin": np.int32, "step": np.int16, "month_id": np.int32}


def _columns(forecast: Forecast, *, compact: bool, quantiles: bool) -> dict[str, pa.Array]:
    n, s = forecast.samples.shape
    frame = forecast.frame
    ints = _COMPACT_INTS if compact else dict.fromkeys(INDEX_COLUMNS, np.int64)
    columns: dict[str, pa.Array] = {c: pa.array(frame[c].to_numpy(ints[c])) for c in INDEX_COLUMNS}
    columns[forecast.unit_column] = pa.array(frame[forecast.unit_column].to_numpy(np.int64))
    values = np.float32 if compact else np.float64
    columns["point"] = pa.array(forecast.point.astype(values))
    draws: npt.NDArray[np.floating[Any]] = np.ascontiguousarray(forecast.samples, dtype=values)
    offsets = pa.array(np.arange(0, (n + 1) * s, s, dtype=np.int32))
    columns["samples"] = pa.ListArray.from_arrays(offsets, pa.array(draws.ravel()))
    if quantiles and s > 1:
        # of the values as stored, exactly as a reader computing them from the samples would
        for name, values in draw_quantiles(draws, STORED_QUANTILES).items():
            columns[name] = pa.array(values)
    return columns


def draw_quantiles(draws: npt.NDArray[np.floating[Any]],
                   levels: Sequence[float]) -> dict[str, npt.NDArray[np.float32]]:
    """Each row's quantiles of its draws (``np.quantile``, linear), float32, by column name:
    the one rule of the stored quantile columns and of readers that compute them from the
    stored draws (the API for other levels or older partitions), so both give equal numbers."""
    if len(draws) == 0:
        return {quantile_column(q): np.empty(0, np.float32) for q in levels}
    if draws.shape[1] == 0:
        values = np.quantile(draws, list(levels), axis=1).astype(np.float32)
    else:
        values = _sorted_linear_quantiles(np.sort(draws, axis=1), levels).astype(np.float32)
    return {quantile_column(q): values[i] for i, q in enumerate(levels)}


def _sorted_linear_quantiles(ordered: npt.NDArray[np.floating[Any]],
                             levels: Sequence[float]) -> npt.NDArray[np.float64]:
    """``np.quantile(ordered, levels, axis=1)`` (method "linear") for rows already sorted,
    with numpy's own arithmetic step for step (virtual index, bounds, gamma, the two-sided
    lerp), so the numbers are the same bits (a test holds it to np.quantile; only a zero's
    sign may differ where a row mixes -0.0 and 0.0, which sort as equals). np.quantile
    partitions every row for every level, 7x the time of one sort here: 0.9 s of the 1.3 s
    a 471,960-row x 100-draw partition's quantiles took."""
    n = ordered.shape[1]
    q = np.asarray(levels, dtype=np.float64)
    virtual = (n - 1) * q  # numpy's virtual index of method "linear"
    previous = np.floor(virtual)
    following = previous + 1
    above, below = virtual >= n - 1, virtual < 0
    previous[above] = following[above] = -1
    previous[below] = following[below] = 0
    lo, hi = previous.astype(np.intp), following.astype(np.intp)
    gamma = (virtual - lo)[:, None]  # an array, as numpy's: float32 rows lerp in float64
    out = np.empty((len(q), len(ordered)), dtype=np.result_type(ordered.dtype, np.float64))
    for k in range(len(q)):
        a, b, t = ordered[:, lo[k]], ordered[:, hi[k]], gamma[k]
        diff = b - a
        np.add(a, diff * t, out=out[k])
        if t[0] >= 0.5:
            np.subtract(b, diff * (1 - t), out=out[k], casting="unsafe", dtype=out.dtype)
    if np.issubdtype(ordered.dtype, np.inexact):
        out[:, np.isnan(ordered[:, -1])] = np.nan  # a row holding NaN (sorted last)
    return out


def forecast_table(forecast: Forecast, metadata: dict[str, Any], *,
                   compact: bool = False, quantiles: bool = False) -> pa.Table:
    """The forecast as the format's table (``compact``: the prediction store's types;
    ``quantiles``: with the :data:`STORED_QUANTILES` columns when it has samples)."""
    n, s = forecast.samples.shape
    meta = {**metadata, "unit_column": forecast.unit_column, "n_samples": s, "rows": n}
    table = pa.table(_columns(forecast, compact=compact, quantiles=quantiles))
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})


#: zstd; only the keys dictionary-encoded (encoding float draws only costs time, 5x here,
#: and space)
_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd"}


def write_table(table: pa.Table, path: Path | str, unit_column: str, **options: Any) -> None:
    """Write a forecast table in the format's encoding."""
    pq.write_table(table, path, **_WRITE_OPTIONS, use_dictionary=[*INDEX_COLUMNS, unit_column],
                   **options)


class ChunkWriter:
    """Writes one forecast file chunk by chunk (:func:`forecast_writer`): each chunk is a
    :class:`Forecast` of the next rows, in order, and becomes one or more row groups, so only
    one chunk's draws are in memory. ``rows`` (the whole forecast's) goes into the metadata,
    which Parquet writes before the rows; closing with another count is an error."""

    def __init__(self, path: Path, metadata: dict[str, Any], *, rows: int, compact: bool,
                 quantiles: bool, row_group_rows: Callable[[Forecast], int] | None,
                 compression: str | None = None) -> None:
        self.path = path
        self.options = {**_WRITE_OPTIONS, **({} if compression is None else
                                             {"compression": compression})}
        self.metadata = metadata
        self.rows = rows
        self.compact = compact
        self.quantiles = quantiles
        self.row_group_rows = row_group_rows
        self.written = 0
        self.n_samples: int | None = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, chunk: Forecast) -> None:
        """Append ``chunk``'s rows (same unit column and sample count as the first chunk)."""
        if self.n_samples is not None and chunk.n_samples != self.n_samples:
            raise ValueError(f"{self.path.name}: a chunk has {chunk.n_samples} samples, the "
                             f"first had {self.n_samples}")
        columns = _columns(chunk, compact=self.compact, quantiles=self.quantiles)
        if self._writer is None:
            meta = {**self.metadata, "unit_column": chunk.unit_column,
                    "n_samples": chunk.n_samples, "rows": self.rows}
            self._schema = pa.table(columns).schema.with_metadata(
                {_META_KEY: json.dumps(meta).encode()})
            self._writer = pq.ParquetWriter(
                self.path, self._schema, **self.options,
                use_dictionary=[*INDEX_COLUMNS, chunk.unit_column])
            self.n_samples = chunk.n_samples
        table = pa.Table.from_pydict(columns, schema=self._schema)
        options = {} if self.row_group_rows is None else {
            "row_group_size": self.row_group_rows(chunk)}
        self._writer.write_table(table, **options)
        self.written += len(chunk)

    def abort(self) -> None:
        """Close the file after a failure (the caller removes it)."""
        if self._writer is not None:
            self._writer.close()

    def close(self) -> None:
        if self._writer is None:
            raise ValueError(f"{self.path.name}: no rows were written (an empty forecast)")
        self._writer.close()
        if self.written != self.rows:
            raise ValueError(f"{self.path.name}: {self.written} rows written, {self.rows} "
                             "planned")


@contextmanager
def forecast_writer(path: Path, *, metadata: dict[str, Any], rows: int,
                    compact: bool = False, quantiles: bool = False,
                    row_group_rows: Callable[[Forecast], int] | None = None,
                    compression: str | None = None,
                    ) -> Iterator[ChunkWriter]:
    """A :class:`ChunkWriter` on a temporary name, renamed to ``path`` once every one of
    ``rows`` rows is written (removed on any failure); ``row_group_rows(chunk)``: the row
    group size of a chunk (default: Parquet's); ``compression``: instead of the format's
    zstd (``"lz4"`` for a file read once soon: a third of zstd's time both ways)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        writer = ChunkWriter(tmp, metadata, rows=rows, compact=compact, quantiles=quantiles,
                             row_group_rows=row_group_rows, compression=compression)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()


def table_forecast(table: pa.Table, meta: dict[str, Any], *, samples: bool) -> Forecast:
    """A table of the format (either precision) as a float64 :class:`Forecast` with an int64
    index; ``samples=False``: the point stands in for the draws."""
    unit = str(meta.get("unit_column", "country_id"))
    frame = pd.DataFrame({c: table.column(c).to_numpy().astype(np.int64)
                          for c in (*INDEX_COLUMNS, unit)})
    point = table.column("point").to_numpy().astype(np.float64)
    if samples:
        s = int(meta.get("n_samples", 1))
        flat = table.column("samples").combine_chunks().flatten().to_numpy()
        draws = np.asarray(flat, dtype=np.float64).reshape(-1, s)
    else:
        draws = point[:, None].copy()
    return Forecast(frame=frame, point=point, samples=draws, unit_column=unit)


def write_forecast(forecast: Forecast, path: Path, *, metadata: dict[str, Any]) -> Path:
    """Write at full precision, atomically (temporary name, then rename)."""
    return write_forecast_chunks([forecast], path, metadata=metadata, rows=len(forecast))


def write_forecast_chunks(chunks: Iterable[Forecast], path: Path, *,
                          metadata: dict[str, Any], rows: int) -> Path:
    """:func:`write_forecast` of the forecast made of ``chunks`` (in order, ``rows`` in all),
    one chunk in memory at a time."""
    with forecast_writer(path, metadata=metadata, rows=rows) as out:
        for chunk in chunks:
            out.write(chunk)
    return path


def _meta(schema: pa.Schema, path: Path) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise StoreError(f"{path}: not an ewspipe forecast file (no metadata)")
    meta: dict[str, Any] = json.loads(raw)
    return meta


def read_forecast_metadata(path: Path) -> dict[str, Any]:
    """A forecast file's provenance, without reading its rows."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: unreadable forecast file ({exc})") from exc
    return _meta(schema, path)


def read_forecast(path: Path, *, samples: bool = True) -> tuple[Forecast, dict[str, Any]]:
    """The stored forecast; ``samples=False`` skips the sample column (the point stands in)."""
    meta = read_forecast_metadata(path)
    columns = [*INDEX_COLUMNS, meta["unit_column"], "point", *(["samples"] if samples else [])]
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: unreadable forecast file ({exc})") from exc
    return table_forecast(table, meta, samples=samples), meta


def iter_forecast(path: Path, *, samples: bool = True,
                  rows: int | None = None) -> Iterator[Forecast]:
    """The stored forecast row group by row group (each a :class:`Forecast` of the next
    rows, in order): what streamed readers (QA, the store, scoring) use instead of
    :func:`read_forecast`, so a file of 1,000-draw chunks is read one chunk at a time.
    ``rows``: at most that many rows a chunk (a row group read in parts)."""
    meta = read_forecast_metadata(path)
    columns = [*INDEX_COLUMNS, meta["unit_column"], "point", *(["samples"] if samples else [])]
    try:
        with pq.ParquetFile(path) as parquet:
            if rows is not None:
                for batch in parquet.iter_batches(batch_size=rows, columns=columns):
                    yield table_forecast(pa.Table.from_batches([batch]), meta,
                                         samples=samples)
                return
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=columns)
                yield table_forecast(table, meta, samples=samples)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: unreadable forecast file ({exc})") from exc
