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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.atomic import atomic_file
from ewspipe.errors import StoreError
from ewspipe.models.forecast import INDEX_COLUMNS, Forecast

__all__ = ["META_KEY", "STORED_QUANTILES", "forecast_table", "quantile_column", "read_forecast",
           "read_forecast_metadata", "table_forecast", "write_forecast", "write_table"]

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


def forecast_table(forecast: Forecast, metadata: dict[str, Any], *,
                   compact: bool = False) -> pa.Table:
    """The forecast as the format's table (``compact``: the prediction store's types)."""
    n, s = forecast.samples.shape
    frame = forecast.frame
    ints = _COMPACT_INTS if compact else dict.fromkeys(INDEX_COLUMNS, np.int64)
    columns: dict[str, pa.Array] = {c: pa.array(frame[c].to_numpy(ints[c])) for c in INDEX_COLUMNS}
    columns[forecast.unit_column] = pa.array(frame[forecast.unit_column].to_numpy(np.int64))
    values = np.float32 if compact else np.float64
    columns["point"] = pa.array(forecast.point.astype(values))
    flat = pa.array(np.ascontiguousarray(forecast.samples, dtype=values).ravel())
    offsets = pa.array(np.arange(0, (n + 1) * s, s, dtype=np.int32))
    columns["samples"] = pa.ListArray.from_arrays(offsets, flat)
    meta = {**metadata, "unit_column": forecast.unit_column, "n_samples": s, "rows": n}
    return pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})


def write_table(table: pa.Table, path: Path | str, unit_column: str, **options: Any) -> None:
    """Write a forecast table (zstd; only the keys dictionary-encoded: encoding float draws
    only costs time, 5x here, and space)."""
    pq.write_table(table, path, compression="zstd",
                   use_dictionary=[*INDEX_COLUMNS, unit_column], **options)


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
    table = forecast_table(forecast, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        write_table(table, tmp, forecast.unit_column)
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
