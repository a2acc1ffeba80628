"""`ewspipe forecasts`: read the prediction store (DuckDB) and the published pointers.

Read-only: the state database is opened read-only and never created. Every file read is
hash-checked first; a damaged one exits 2 naming the file and how to repair it. ``query
--out FILE`` is the one write: the rows as CSV, Parquet or JSON, written atomically, never
over an existing file without ``--force``. Query rows name their units (``name``/``isoab``
for countries, ``country_id``/``name`` for cells, and a ``label``; ``ewspipe.store.named``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from ewspipe.atomic import atomic_file
from ewspipe.cli.choices import ENVIRONMENTS, LevelName, OutFormat
from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.errors import InputError
from ewspipe.panel.schema import Level
from ewspipe.settings import Settings
from ewspipe.store.named import NAME_FIELDS, name_query_rows
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.published import PublishedPointers
from ewspipe.store.statedb import open_state_db_for_reading

__all__ = ["app"]

app = typer.Typer(help="Stored forecasts of monthly runs, and what is published.",
                  no_args_is_help=True,
                  rich_markup_mode=None)

ENV_OPTION = typer.Option(None, "--env", help=f"Environment: {ENVIRONMENTS}; default [run] "
                          "environment.")
FORMATS: tuple[str, ...] = get_args(OutFormat)


def _env(settings: Settings, env: str | None) -> str:
    name = env or settings.run.environment
    if name not in settings.run.environments:
        raise InputError(f"option --env: {name!r} is not an environment; use one of "
                         f"{', '.join(settings.run.environments)}")
    return name


def _scope(ctx: typer.Context, env: str | None, level: str) -> tuple[Settings, str, str]:
    """The settings, the environment's name and the level's value a command reads."""
    settings: Settings = ctx.obj
    return settings, _env(settings, env), Level.parse(level).value


def _pointers(settings: Settings, name: str) -> PublishedPointers:
    layout = settings.layout.env(name)
    return PublishedPointers(layout.published,
                             open_state_db_for_reading(settings.run.state_url, layout.root),
                             environment=name)


@app.command("query")
def query(
    ctx: typer.Context,
    level: LevelName = typer.Option(..., "--level", help="cm or pgm."),
    model: str = typer.Option(..., "--model", help="Model or ensemble name."),
    month: int | None = typer.Option(None, "--month", help="Forecast month_id (default all)."),
    run: str | None = typer.Option(None, "--run", help="Store run (default: the latest run "
                                   "holding the model; with --published the published one)."),
    published: bool = typer.Option(False, "--published", help="Read the run the published "
                                   "pointer of this level and the model's target points to."),
    samples: bool = typer.Option(False, "--samples", help="Include the sample arrays."),
    top: int | None = typer.Option(None, "--top", help="Only the N units with the highest "
                                   "point forecast of each origin and step."),
    out: Path | None = typer.Option(None, "--out", help="Write the rows to this file "
                                    "(atomically) instead of printing them."),
    fmt: OutFormat | None = typer.Option(None, "--format", case_sensitive=False,
                                         help="Format of --out: json, csv or parquet "
                                         "(default: from the file's suffix)."),
    force: bool = typer.Option(False, "--force", help="Let --out replace an existing file."),
    env: str | None = ENV_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """One model's stored forecasts (point, optionally samples) for a month."""
    if top is not None and top < 1:
        raise InputError(f"option --top: {top} is not a number of units; give 1 or more")
    out_format = _out_format(out, fmt, force)
    settings, name, lvl = _scope(ctx, env, level)
    layout = settings.layout.env(name)
    if published:
        pointers = _pointers(settings, name)
        hits = [p for p in (pointers.current(lvl, t.stem) for t in
                            sorted((layout.published / lvl).glob("*.json")))
                if p and model in p["models"]]
        if not hits:
            raise InputError(f"no published {lvl} pointer in environment {name!r} includes "
                             f"{model!r}; run `ewspipe run --env {name}` first")
        run = hits[0]["run"]
    store = PredictionStore(layout.predictions)
    frame = store.query(lvl, model, month=month, run=run, samples=samples)
    if top is not None:
        frame = _top(frame, top)
    frame = name_query_rows(store, settings, frame, level=lvl, model=model)
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    for r in records:
        if "samples" in r:
            r["samples"] = [float(x) for x in r["samples"]]
        r["point"] = float(r["point"])
        for k in NAME_FIELDS[lvl]:  # missing names are null in JSON, never NaN
            r[k] = None if pd.isna(r[k]) else int(r[k]) if k == "country_id" else str(r[k])
    doc = {"level": lvl, "model": model, "month": month, "environment": name,
           "run": records[0]["run"] if records else run, "rows": len(records),
           "top": top, "predictions": records}
    if out is not None and out_format is not None:
        _write_rows(frame, out, out_format, doc, replace=force)
        doc = {**{k: v for k, v in doc.items() if k != "predictions"}, "out": str(out),
               "format": out_format}

    def human() -> str:
        if out is not None:
            return f"wrote {doc['rows']} rows of {model} ({lvl}) to {out} ({out_format})"
        if not records:
            return f"no {lvl} forecasts of {model} for month {month}"
        unit = next(c for c in frame.columns if c in ("country_id", "priogrid_gid"))
        lines = [f"{model} ({lvl}), run {doc['run']}: {len(records)} rows"]
        lines += [f"  month {r['month_id']} step {r['step']:>2} {unit} {r[unit]:>6}  "
                  f"point {r['point']:.3f}  {r['label']}" for r in records[:50]]
        if len(records) > 50:
            lines.append(f"  ... {len(records) - 50} more (use --json)")
        return "\n".join(lines)

    emit(doc, as_json, human)


def _out_format(out: Path | None, fmt: str | None, force: bool) -> str | None:
    """The format to write ``out`` in, after checking ``out`` can be written (exit 2 naming
    it otherwise), before any store is read."""
    if out is None:
        if fmt is not None or force:
            raise InputError(f"option {'--format' if fmt is not None else '--force'}: "
                             "only applies to --out FILE; add --out")
        return None
    if out.is_dir():
        raise InputError(f"option --out: {out} is a folder; give a file path")
    given = fmt is not None
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        if given:
            raise InputError(f"option --format: {fmt!r} is not a format; use one of "
                             f"{', '.join(FORMATS)}")
        raise InputError(f"option --out: {out} ends in {out.suffix or 'no suffix'!r}, which "
                         f"names no format ({', '.join(FORMATS)}): end it in one of them, or "
                         "pass --format")
    if not out.parent.is_dir():
        raise InputError(f"option --out: folder {out.parent} of {out} does not exist; "
                         "create it first")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"option --out: folder {out.parent} is not writable")
    if out.exists() and not force:
        raise InputError(f"option --out: {out} exists; add --force to replace it")
    return fmt


def _top(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` rows of highest point forecast of each (origin, step), highest first."""
    ranked = frame.sort_values(["origin", "step", "point"], ascending=[True, True, False],
                               kind="stable")
    return ranked.groupby(["origin", "step"], sort=False).head(n).reset_index(drop=True)


def _write_rows(frame: pd.DataFrame, out: Path, fmt: str, doc: dict[str, Any], *,
                replace: bool) -> None:
    """Write the query's rows to ``out`` atomically (CSV: one column per draw)."""
    try:
        with atomic_file(out, exclusive=not replace) as tmp:
            if fmt == "json":
                tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
            elif fmt == "parquet":
                table = pa.Table.from_pandas(frame.drop(columns=["samples"], errors="ignore"),
                                             preserve_index=False)
                if "samples" in frame.columns:
                    table = table.append_column("samples", pa.array(
                        [list(map(float, s)) for s in frame["samples"]],
                        pa.list_(pa.float32())))
                pq.write_table(table, tmp, compression="zstd")
            else:
                flat = frame.drop(columns=["samples"], errors="ignore")
                if "samples" in frame.columns and len(frame):
                    draws = np.stack(frame["samples"].to_list())
                    flat = flat.assign(**{f"sample_{i}": draws[:, i]
                                          for i in range(draws.shape[1])})
                flat.to_csv(tmp, index=False)
    except FileExistsError as exc:
        raise InputError(f"option --out: {out} exists; add --force to replace it") from exc
    except OSError as exc:
        raise InputError(f"option --out: cannot write {out} ({exc.strerror or exc})") from exc


@app.command("published")
def published_cmd(
    ctx: typer.Context,
    level: LevelName = typer.Option(..., "--level", help="cm or pgm."),
    target: str = typer.Option("ged_sb", "--target", help="Target column."),
    env: str | None = typer.Option(None, "--env", help=f"Environment: {ENVIRONMENTS}; default "
                                   "the production environment, the first of [run] "
                                   "publish_environments."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The published pointer of a level and target, with its history."""
    settings, name, lvl = _scope(ctx, env or ctx.obj.run.production_environment, level)
    pointers = _pointers(settings, name)
    doc: dict[str, Any] = {"level": lvl, "target": target, "environment": name,
           "current": pointers.current(lvl, target), "history": pointers.history(lvl, target)}

    def human() -> str:
        cur = doc["current"]
        if cur is None:
            return f"nothing published for {lvl}/{target} in {name}"
        lines = [f"{lvl}/{target} ({name}): run {cur['run']}, {', '.join(cur['models'])} "
                 f"(published {cur['published_at']})", "  history:"]
        lines += [f"    {h['published_at']}  run {h['run']}  {h['primary']}"
                  for h in doc["history"]]
        return "\n".join(lines)

    emit(doc, as_json, human)
