"""Forecasts on disk: one Parquet file per model and run, samples as a fixed-size list column.

Values are raw counts (the column names say so: ``point``, ``samples``); provenance lives in
the Parquet key-value metadata so a file read on its own still says where it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.atomic import atomic_file
from ewspipe.errors import StoreError
from ewspipe.models.forecast import INDEX_COLUMNS, Forecast

__all__ = ["read_forecast", "read_forecast_metadata", "write_forecast"]

_META_KEY = b"ewspipe"


def write_forecast(forecast: Forecast, path: Path, *, metadata: dict[str, Any]) -> Path:
    """Write atomically (temporary name, then rename)."""
    n, s = forecast.samples.shape
    columns: dict[str, pa.Array] = {
        name: pa.array(forecast.frame[name].to_numpy(np.int64)) for name in
        [*INDEX_COLUMNS, forecast.unit_column]
    }
    columns["point"] = pa.array(forecast.point.astype(np.float64))
    flat = pa.array(np.ascontiguousarray(forecast.samples, dtype=np.float64).ravel())
    columns["samples"] = pa.FixedSizeListArray.from_arrays(flat, s)
    table = pa.table(columns)
    meta = {**metadata, "unit_column": forecast.unit_column, "n_samples": s, "rows": n}
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        # dictionary-encoding float draws only costs time (5x here) and space; keep it for keys
        pq.write_table(table, tmp, compression="zstd",
                       use_dictionary=[*INDEX_COLUMNS, forecast.unit_column])
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
    unit = meta["unit_column"]
    columns = [*INDEX_COLUMNS, unit, "point", *(["samples"] if samples else [])]
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: unreadable forecast file ({exc})") from exc
    frame = table.select([*INDEX_COLUMNS, unit]).to_pandas()
    point = table.column("point").to_numpy()
    if samples:
        s = int(meta["n_samples"])
        values = table.column("samples").combine_chunks().flatten().to_numpy().reshape(-1, s)
    else:
        values = point[:, None]
    return Forecast(frame=frame, point=point, samples=values, unit_column=unit), meta
