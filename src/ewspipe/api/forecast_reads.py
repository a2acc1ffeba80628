"""Reading forecasts for the API: one filtered, paged DuckDB query over one prediction-store
partition, with quantiles only when asked: read from the partition's stored quantile columns
when it has every level asked for (``q0.05``..., computed when it was written), else computed
from the samples (partitions of earlier versions, other levels). A global month at S = 1,000
is 66,205 x 1,000 draws (265 MB) to decompress and sort, but only 66,205 values per stored
level; DuckDB reads the requested columns of the row groups whose month_id statistics match.

:class:`~ewspipe.store.prediction_store.PredictionStore` names the partition and its
metadata; the query itself runs here because the API filters by month range, step and units
and pages, which ``PredictionStore.query`` does not. One in-memory DuckDB connection per
process; each request takes a cheap cursor of it (a fresh connection costs ~10 ms).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ewspipe.errors import IntegrityError
from ewspipe.geography.names import NAME_FIELDS, UnitNames
from ewspipe.store.prediction_store import PredictionStore, partition_fix
from ewspipe.store.predictions import draw_quantiles, quantile_column

__all__ = ["ForecastQuery", "ForecastSlice", "read_forecast_slice", "with_unit_names"]

_LOCK = threading.Lock()
_CON: Any = None


def _cursor() -> Any:
    global _CON
    import duckdb

    with _LOCK:
        if _CON is None:
            _CON = duckdb.connect()
        return _CON.cursor()


@dataclass(frozen=True)
class ForecastQuery:
    month_from: int | None = None
    month_to: int | None = None
    step: int | None = None
    units: tuple[int, ...] = ()
    samples: bool = False
    quantiles: tuple[float, ...] = ()
    limit: int = 100_000
    offset: int = 0


@dataclass
class ForecastSlice:
    """The rows of one page (``table``) and what describes them."""

    table: pa.Table
    total: int
    unit_column: str
    n_samples: int
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the quantile levels the partition stores (read from there when all those asked are)
    stored_quantiles: tuple[float, ...] = ()


def _where(q: ForecastQuery, unit: str) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if q.month_from is not None:
        clauses.append("month_id >= ?")
        params.append(q.month_from)
    if q.month_to is not None:
        clauses.append("month_id <= ?")
        params.append(q.month_to)
    if q.step is not None:
        clauses.append("step = ?")
        params.append(q.step)
    if q.units:
        clauses.append(f"list_contains(?::BIGINT[], {unit})")
        params.append(list(q.units))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _quantile_columns(samples: pa.ChunkedArray, n_samples: int,
                      quantiles: Sequence[float]) -> dict[str, pa.Array]:
    flat = samples.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    draws = np.asarray(flat, dtype=np.float32).reshape(-1, max(n_samples, 1))
    return {name: pa.array(values, pa.float32())
            for name, values in draw_quantiles(draws, quantiles).items()}


def read_forecast_slice(store: PredictionStore, level: str, run: str, model: str,
                        q: ForecastQuery) -> ForecastSlice:
    """One page of one model's forecasts of one run (the partition must exist).

    Columns: origin, step, month_id, the unit column, point, then ``q<level>`` per quantile
    and ``samples`` when asked. Rows are ordered by origin, step and unit. Quantiles come
    from the stored columns when the partition has all of them, else from the samples.
    """
    path = store.checked_path(level, run, model)  # IntegrityError when damaged
    meta = store.metadata(level, run, model)
    unit = str(meta.get("unit_column", "country_id"))
    n_samples = int(meta.get("n_samples", 1))
    stored = store.stored_quantiles(level, run, model)
    where, params = _where(q, unit)
    from_columns = set(q.quantiles) <= set(stored)  # also when none are asked
    need_samples = q.samples or not from_columns
    cols = f"origin, step, month_id, {unit}, point"
    if q.quantiles and from_columns:
        cols += "".join(f', "{quantile_column(v)}"' for v in q.quantiles)
    cols += ", samples" if need_samples else ""
    params = [str(path), *params]
    import duckdb

    cur = _cursor()
    try:
        table = cur.sql(
            f"SELECT {cols} FROM read_parquet(?){where} ORDER BY origin, step, {unit} "
            "LIMIT ? OFFSET ?", params=[*params, q.limit, q.offset]).to_arrow_table()
        if q.offset == 0 and table.num_rows < q.limit:
            total = table.num_rows  # the whole selection fits this page: no count query
        else:
            total = int(cur.sql(f"SELECT count(*) FROM read_parquet(?){where}",
                                params=params).fetchall()[0][0])
    except duckdb.Error as exc:  # damaged although its hash matched (or none recorded)
        raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                             f"{partition_fix(path)}") from exc
    finally:
        cur.close()
    if not from_columns:
        for name, column in _quantile_columns(table.column("samples"), n_samples,
                                              q.quantiles).items():
            table = table.append_column(name, column)
    if need_samples and not q.samples:
        table = table.drop_columns(["samples"])
    elif q.samples:  # samples last, after the quantiles
        samples = table.column("samples")
        table = table.drop_columns(["samples"]).append_column("samples", samples)
    return ForecastSlice(table, total, unit, n_samples, meta, stored)


def _countries(cells: np.ndarray, country: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(country id, found) of each cell: a sorted lookup, no Python call per cell."""
    if not country:
        return np.zeros(len(cells), np.int64), np.zeros(len(cells), bool)
    keys = np.fromiter(country.keys(), np.int64, len(country))
    values = np.fromiter(country.values(), np.int64, len(country))
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    at = np.minimum(np.searchsorted(keys, cells), len(keys) - 1)
    found = keys[at] == cells
    return np.where(found, values[at], 0), found


def with_unit_names(table: pa.Table, unit: str, names: UnitNames) -> pa.Table:
    """``table`` with, after the unit column, what a person reads: ``country_id`` (pgm),
    ``name``, ``isoab`` and ``label`` (None where the data carries no name): the values of
    :meth:`UnitNames.record`, built per country and spread by index (a global month is
    66,205 cells but only ~250 countries)."""
    ids = np.asarray(table.column(unit).to_numpy(), dtype=np.int64)
    if names.level == "cm":
        cids, found = ids, np.ones(len(ids), bool)
    else:
        cids, found = _countries(ids, names.country)
    distinct = np.unique(cids[found])
    at = np.full(len(ids), len(distinct), np.int64)  # the last entry: no country
    at[found] = np.searchsorted(distinct, cids[found])
    countries = [int(c) for c in distinct]
    index = pa.array(at)

    def spread(values: list[object], kind: pa.DataType) -> pa.Array:
        return pa.array([*values, None], type=kind).take(index)

    columns = {"country_id": spread(countries, pa.int64()),
               "name": spread([names.name.get(c) for c in countries], pa.string()),
               "isoab": spread([names.iso.get(c) for c in countries], pa.string())}
    if names.level == "cm":
        columns["label"] = spread([names.country_label(c) for c in countries], pa.string())
    else:  # "cell 202022 (Ukraine)", "cell 202022 (country 117)", "cell 5"
        cells = pc.cast(pa.array(ids), pa.string())
        owner = spread([names.name.get(c, f"country {c}") for c in countries], pa.string())
        columns["label"] = pc.coalesce(
            pc.binary_join_element_wise("cell ", cells, " (", owner, ")", ""),
            pc.binary_join_element_wise("cell ", cells, ""))
    at_column = table.column_names.index(unit) + 1
    for i, key in enumerate(NAME_FIELDS[names.level]):
        table = table.add_column(at_column + i, key, columns[key])
    return table
