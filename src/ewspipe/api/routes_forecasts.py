"""``GET /api/v1/forecasts/{level}/{target}``: stored forecasts as JSON, CSV, Parquet or an
Arrow IPC stream.

By default the published forecast (the pointer of the level and target in the publishing
environment, as ``ewspipe forecasts published`` reads it); ``?run=`` reads any stored run.
"""

from __future__ import annotations

import gzip
import io
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as paipc
import pyarrow.parquet as pq
from fastapi import APIRouter, Path, Query, Request, Response

from ewspipe.api.deps import (
    ENV_QUERY,
    NAME_PATTERN,
    SettingsDep,
    env_or_default,
    publish_environment,
    publishing_env,
)
from ewspipe.api.encoding import accepts_gzip
from ewspipe.api.errors import invalid, not_found
from ewspipe.api.forecast_reads import (
    ForecastQuery,
    ForecastSlice,
    read_forecast_slice,
    with_unit_names,
)
from ewspipe.api.json_rows import json_rows
from ewspipe.api.publishing import current_pointer
from ewspipe.api.schemas import ErrorBody, ForecastPage
from ewspipe.geography import unit_names
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import quantile_column

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["forecasts"])

TARGET_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_UNITS = 20_000
MAX_QUANTILES = 20
Format = Literal["json", "csv", "parquet", "arrow"]
ARROW_MEDIA = "application/vnd.apache.arrow.stream"
MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8",
         "parquet": "application/vnd.apache.parquet", "arrow": ARROW_MEDIA}
_PARQUET_ACCEPT = ("application/vnd.apache.parquet", "application/x-parquet",
                   "application/parquet")


MAX_ID = 2**63 - 1
LARGE_BODY = 1 << 20  # bytes: from here on the answer is gzipped fast (level 1), see _response


def _ints(text: str | None, name: str, limit: int) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        invalid("query", name, f"{text[:80]!r} is not a comma-separated list of integer ids")
    if len(values) > limit:
        invalid("query", name, f"{len(values)} ids; at most {limit} per request")
    huge = [v for v in values if not 0 <= v <= MAX_ID]
    if huge:  # the stores keep 64-bit ids: a larger one matches nothing and overflows DuckDB
        invalid("query", name, f"id {str(huge[0])[:40]} is out of range; ids are integers "
                f"from 0 to {MAX_ID}")
    return values


def _quantiles(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        invalid("query", "quantiles", f"{text[:80]!r} is not a comma-separated list of "
                "numbers, e.g. 0.05,0.5,0.95")
    if len(values) > MAX_QUANTILES:
        invalid("query", "quantiles", f"{len(values)} levels; at most {MAX_QUANTILES}")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        invalid("query", "quantiles", f"{bad[0]} is outside [0, 1]; use levels such as 0.05")
    levels = tuple(dict.fromkeys(values))
    named: dict[str, float] = {}
    for level in levels:  # one column per level: q<level> keeps 6 significant digits
        other = named.setdefault(quantile_column(level), level)
        if other != level:
            invalid("query", "quantiles", f"{other!r} and {level!r} both name the column "
                    f"{quantile_column(level)}; levels must differ within 6 significant "
                    "digits")
    return levels


def _format(fmt: Format | None, accept: str | None) -> Format:
    if fmt is not None:
        return fmt
    accept = (accept or "").lower()
    if "text/csv" in accept:
        return "csv"
    if any(a in accept for a in _PARQUET_ACCEPT):
        return "parquet"
    if ARROW_MEDIA in accept:
        return "arrow"
    return "json"


def _locate_run(settings: Settings, env: str | None, level: str, run: str) -> str:
    """The environment whose store holds ``run`` at ``level`` (publishing ones first)."""
    if env is not None:
        names = [env_or_default(settings, env)]
    else:
        first = publish_environment(settings)
        names = sorted(settings.run.environments, key=lambda e: e != first)
    for name in names:
        if PredictionStore(settings.layout.env(name).predictions).partitions(
                level=level, run=run):
            return name
    not_found("query", "run", f"no stored {level} forecasts of run {run!r} in "
              f"{'environment ' + repr(names[0]) if env else 'any environment'}; list runs "
              "with GET /api/v1/runs")


def _resolve(settings: Settings, level: str, target: str, model: str | None, run: str | None,
             env: str | None) -> tuple[str, str, str, bool]:
    """(environment, run, model, published) of the request."""
    if run is None:
        name = publishing_env(settings, env, fix="pass ?env= and ?run=")
        pointer = current_pointer(settings, name, level, target)
        if pointer is None:
            publishing = settings.run.publish_environments
            how = (f"publish with `ewspipe run --env {name}`" if name in publishing else
                   f"environment {name!r} never publishes ([run] publish_environments: "
                   f"{', '.join(publishing) or 'none'})")
            not_found("path", "target", f"nothing published for {level}/{target} in "
                      f"environment {name!r}; {how}, or read a stored run with ?run=")
        chosen = model or pointer["primary"]
        if chosen not in pointer["models"]:
            not_found("query", "model", f"{chosen!r} is not in the published {level}/{target} "
                      f"forecast of environment {name!r} (run {pointer['run']}: "
                      f"{', '.join(pointer['models'])}); pass ?run= to read another run")
        return name, pointer["run"], chosen, True
    name = _locate_run(settings, env, level, run)
    pointer = current_pointer(settings, name, level, target)
    published = pointer is not None and pointer["run"] == run
    stored = sorted(p.model for p in PredictionStore(
        settings.layout.env(name).predictions).partitions(level=level, run=run))
    if model is None:
        if not published:
            invalid("query", "model", f"required with ?run= (run {run} is not the published "
                    f"one); stored models: {', '.join(stored)}")
        model = pointer["primary"] if pointer else stored[0]
    if model not in stored:
        not_found("query", "model", f"run {run!r} ({level}, environment {name!r}) holds no "
                  f"forecasts of {model!r}; stored models: {', '.join(stored)}")
    return name, run, model, published and model in pointer["models"]


def _json_body(head: dict[str, Any], table: pa.Table) -> bytes:
    start = json.dumps(head)[:-1].encode() + b', "rows": '
    body = json_rows(table, start, b"}")  # column-wise, no object per row
    if body is not None:
        return body
    for i, f in enumerate(table.schema):  # the samples' lists: pandas (float64 is faster)
        if f.type == pa.float32():
            table = table.set_column(i, f.name, table.column(i).cast(pa.float64()))
    frame = table.to_pandas()
    rows = frame.to_json(orient="records", double_precision=6) if len(frame) else "[]"
    return start + rows.encode() + b"}"


def _response(request: Request, body: bytes, fmt: Format, headers: dict[str, str]
              ) -> Response:
    """The answer; a large one gzipped here at level 1 when the client accepts gzip (the app's
    middleware, level 6, then passes it on as it is): on a global month's 14 MB of JSON that
    is ~2x faster for ~25 % more bytes."""
    if len(body) >= LARGE_BODY and accepts_gzip(request.headers.get("accept-encoding", "")):
        body = gzip.compress(body, compresslevel=1, mtime=0)
        headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(body, media_type=MEDIA[fmt], headers=headers)


def _csv_table(sl: ForecastSlice) -> pa.Table:
    table = sl.table
    if "samples" not in table.column_names:
        return table
    flat = table.column("samples").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    draws = np.asarray(flat, dtype=np.float32).reshape(-1, max(sl.n_samples, 1))
    table = table.drop_columns(["samples"])
    for i in range(draws.shape[1]):  # one column per draw: CSV has no lists
        table = table.append_column(f"sample_{i}", pa.array(draws[:, i]))
    return table


@router.get(
    "/forecasts/{level}/{target}",
    summary="Forecasts of a level and target (published by default)",
    response_model=ForecastPage,
    responses={
        200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {},
                          ARROW_MEDIA: {}},
              "description": "JSON (ForecastPage), CSV, Parquet or Arrow IPC stream rows; "
              "CSV, Parquet and Arrow carry the paging in X-Total-Count, X-Limit and X-Offset "
              "headers"},
        404: {"model": ErrorBody, "description": "nothing published, unknown run or model"},
    },
)
def get_forecasts(
    request: Request,
    settings: SettingsDep,
    level: Literal["cm", "pgm"],
    target: str = Path(..., pattern=TARGET_PATTERN, max_length=64,
                       description="Target column, e.g. ged_sb."),
    model: str | None = Query(None, pattern=NAME_PATTERN, max_length=200,
                              description="Model or ensemble (default: the pointer's "
                              "primary; required with ?run= unless it is the published run)."),
    run: str | None = Query(None, pattern=NAME_PATTERN, max_length=200,
                            description="Stored run to read instead of the published one."),
    env: str | None = ENV_QUERY,
    month_from: int | None = Query(None, ge=1, le=100_000,
                                   description="First target month_id (inclusive)."),
    month_to: int | None = Query(None, ge=1, le=100_000,
                                 description="Last target month_id (inclusive)."),
    step: int | None = Query(None, ge=1, le=120, description="Only this step."),
    units: str | None = Query(None, max_length=200_000, description="Comma-separated "
                              "country_id (cm) or priogrid_gid (pgm) values."),
    samples: bool = Query(False, description="Include the draws (``samples`` column)."),
    quantiles: str | None = Query(None, max_length=400, description="Comma-separated "
                                  "levels in [0, 1], e.g. 0.05,0.95: one ``q<level>`` column "
                                  "each, read from the partition when it stores them all "
                                  "(``stored_quantiles`` of the answer: 0.05, 0.1, 0.25, 0.5, "
                                  "0.75, 0.9, 0.95 of a sample forecast), else computed from "
                                  "the samples (slower: the draws are read)."),
    format: Format | None = Query(None, description="json, csv, parquet or arrow (an Arrow "
                                  "IPC stream, " + ARROW_MEDIA + "; default: from the Accept "
                                  "header, else json)."),
    limit: int | None = Query(None, ge=1, le=5_000_000, description="Rows per page (default "
                              "and maximum [api] max_forecast_rows)."),
    offset: int = Query(0, ge=0, le=10**9, description="Rows to skip."),
) -> Response:
    """One model's forecasts: point predictions per unit and target month, optionally with
    quantiles or the samples, filtered by month range, step and units, paged. Each row names
    its unit (``name``, ``isoab``, ``label``; a cell also its ``country_id``) from the
    snapshots.

    One whole month of the global grid (66,205 cells) fits one page (``limit`` up to ``[api]
    max_forecast_rows``, default 100,000): ``?month_from=m&month_to=m&quantiles=0.05,0.5,0.95``
    reads the stored quantile columns of that month's row groups only, never the draws. JSON
    is the default; ``format=arrow`` (or ``parquet``) hands the same columns over typed and
    several times smaller, for clients that load them into a data frame."""
    cap = settings.api.max_forecast_rows
    if limit is not None and limit > cap:
        invalid("query", "limit", f"{limit} exceeds {cap} rows ([api] max_forecast_rows); "
                "page with offset")
    if month_from is not None and month_to is not None and month_from > month_to:
        invalid("query", "month_to", f"{month_to} is before month_from {month_from}; the "
                "range is inclusive, month_from <= month_to")
    query = ForecastQuery(month_from=month_from, month_to=month_to, step=step,
                          units=_ints(units, "units", MAX_UNITS), samples=samples,
                          quantiles=_quantiles(quantiles), limit=limit or cap, offset=offset)
    name, run_id, chosen, published = _resolve(settings, level, target, model, run, env)
    store = PredictionStore(settings.layout.env(name).predictions)
    if not store.partitions(level=level, run=run_id, model=chosen):
        not_found("query", "run", f"the published {level}/{target} run {run_id!r} of "
                  f"environment {name!r} has no stored forecasts of {chosen!r} (was the "
                  "prediction store pruned?); re-publish with `ewspipe run`")
    meta = store.metadata(level, run_id, chosen)
    if meta.get("target", target) != target:
        not_found("path", "target", f"model {chosen!r} of run {run_id} forecasts "
                  f"{meta.get('target')!r}, not {target!r}")
    if query.quantiles and int(meta.get("n_samples", 1)) < 2:
        invalid("query", "quantiles", f"model {chosen!r} stored point forecasts only (no "
                "samples) in this run; drop ?quantiles")
    sl = read_forecast_slice(store, level, run_id, chosen, query)
    sl.table = with_unit_names(sl.table, sl.unit_column, unit_names(
        settings, level, snapshot=meta.get("snapshot")))
    head = {"level": level, "target": target, "model": chosen, "run": run_id,
            "environment": name, "published": published, "unit_column": sl.unit_column,
            "n_samples": sl.n_samples, "quantiles": list(query.quantiles),
            "stored_quantiles": list(sl.stored_quantiles), "total": sl.total,
            "limit": query.limit, "offset": query.offset}
    fmt = _format(format, request.headers.get("accept"))
    headers = {"X-Total-Count": str(sl.total), "X-Limit": str(query.limit),
               "X-Offset": str(query.offset), "X-Run": run_id, "X-Model": chosen,
               "X-Environment": name}
    if fmt == "json":
        return _response(request, _json_body(head, sl.table), fmt, headers)
    stem = f"{level}_{target}_{chosen}_{run_id}"
    sink = io.BytesIO()
    described = sl.table.replace_schema_metadata({b"ewspipe": json.dumps(head).encode()})
    if fmt == "csv":
        pacsv.write_csv(_csv_table(sl), sink)
    elif fmt == "arrow":
        with paipc.new_stream(sink, described.schema) as writer:
            writer.write_table(described)
    else:
        pq.write_table(described, sink)
    suffix = "arrows" if fmt == "arrow" else fmt
    headers["Content-Disposition"] = f'attachment; filename="{stem}.{suffix}"'
    return _response(request, sink.getvalue(), fmt, headers)
