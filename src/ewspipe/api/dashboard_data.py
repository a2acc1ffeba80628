"""What the dashboard shows, read straight from the stores (read-only: nothing is created).

Each function returns a JSON-ready dict for one panel of the page: the workspace overview,
a forecast map (one step of one stored run) with the units' names, the geometry of countries
drawn from their PRIO-GRID cells (ewspipe.geography), one unit's history with its forecast
and interval, evaluation runs by step, online-evaluation results and the alert feed. Bad
query values raise :class:`ParamError` (422 naming the parameter); something absent raises
:class:`NotFound` (404).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ewspipe.errors import EwspipeError, InputError, StoreError
from ewspipe.flows.online import summary_path
from ewspipe.geography import country_geometry as geography_shapes
from ewspipe.geography import unit_names
from ewspipe.layout import EnvironmentLayout
from ewspipe.panel.months import month_label
from ewspipe.panel.snapshot import DATA_FILE, Manifest, SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.integrity import open_sealed_json
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import quantile_column
from ewspipe.store.runs import RunStore
from ewspipe.store.statedb import open_state_db_for_reading

__all__ = [
    "LEVEL_UNIT",
    "NotFound",
    "ParamError",
    "alerts",
    "country_geometry",
    "evaluation",
    "forecast_map",
    "online",
    "overview",
    "unit_series",
]

LEVEL_UNIT = {"cm": "country_id", "pgm": "priogrid_gid"}
RUN_HINT = "run `ewspipe run` (or `make run`) to produce forecasts"
INTERVAL = (0.1, 0.5, 0.9)  # a unit's forecast interval and median (of the samples)


class ParamError(InputError):
    """A query parameter has a value that is well-formed but unusable (-> 422)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class NotFound(InputError):
    """The thing asked for is not stored (-> 404); the message says how to produce it."""


def _round(value: float | None, digits: int = 4) -> float | None:
    """Significant digits only: smaller JSON, and the page never needs more."""
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(float(value), max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def check_environment(settings: Settings, env: str) -> EnvironmentLayout:
    if env not in settings.run.environments:
        raise ParamError("env", f"env: {env!r} is not an environment; use one of "
                         f"{', '.join(settings.run.environments)}")
    return settings.layout.env(env)


# --------------------------------------------------------------------------- overview


def _published(env_dir: EnvironmentLayout) -> list[dict[str, Any]]:
    out = []
    for path in sorted(env_dir.published.glob("*/*.json")):
        try:
            out.append(open_sealed_json(path, what="published pointer",
                                        fix="re-publish with `ewspipe run`"))
        except EwspipeError as exc:
            out.append({"level": path.parent.name, "target": path.stem,
                        "error": f"damaged pointer file: {exc}"})
    return out


def _run_records(settings: Settings, env: str, env_dir: EnvironmentLayout
                 ) -> list[dict[str, Any]]:
    """The newest monthly-run records; never creates a database that is not there."""
    db = open_state_db_for_reading(settings.run.state_url, env_dir.root)
    if db is None:
        return []
    records = db.run_records(env, limit=5)
    return [{"run_id": r.run_id, "status": r.status, "started_at": r.started_at,
             "finished_at": r.finished_at, "seconds": r.seconds, "error": r.error,
             "qa_passed": r.qa_passed} for r in records]


def _stored_levels(env_dir: EnvironmentLayout, published: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """Per level: the runs (newest first), the models each run holds, and defaults that go
    together: the published run (else the newest) and a model that run holds, so the map's
    first request never pairs a model with a run that lacks it."""
    store = PredictionStore(env_dir.predictions)
    levels: dict[str, Any] = {}
    for level in LEVEL_UNIT:
        runs = list(reversed(store.runs(level)))
        if not runs:
            continue
        run_models: dict[str, list[str]] = {run: [] for run in runs}
        newest: dict[str, str] = {}  # model -> the newest run holding it, for its metadata
        for part in store.partitions(level=level):
            run_models[part.run].append(part.model)
        for run in reversed(runs):
            newest.update({model: run for model in run_models[run]})
        models = []
        for model in sorted(newest):
            meta = store.metadata(level, newest[model], model)
            models.append({k: meta.get(k) for k in
                           ("model", "kind", "status", "target", "n_samples", "snapshot")})
        pointer = next((p for p in published if p.get("level") == level), None)
        default_run = pointer["run"] if pointer and pointer.get("run") in runs else runs[0]
        held = set(run_models[default_run])
        levels[level] = {"runs": runs, "run_models": run_models, "models": models,
                         "default_run": default_run,
                         "default_model": _default_model(
                             [m for m in models if m["model"] in held], pointer)}
    return levels


def _default_model(models: list[dict[str, Any]], published: dict[str, Any] | None) -> str | None:
    names = {m["model"] for m in models}
    if published and published.get("primary") in names:
        return str(published["primary"])
    ranked = sorted(models, key=lambda m: (m.get("status") != "deployed",
                                           m.get("kind") != "ensemble", m["model"]))
    return ranked[0]["model"] if ranked else None


def overview(settings: Settings) -> dict[str, Any]:
    """Environments (runs, published pointers, stored forecasts), snapshots and hints."""
    envs = []
    for env in settings.run.environments:
        env_dir = settings.layout.env(env)
        published = _published(env_dir)
        envs.append({"name": env, "exists": env_dir.root.is_dir(),
                     "runs": _run_records(settings, env, env_dir),
                     "published": published, "levels": _stored_levels(env_dir, published)})
    with_data = [e["name"] for e in envs if e["levels"]]
    default = next((n for n in (settings.run.production_environment, settings.run.environment)
                    if n in with_data),
                   with_data[0] if with_data else settings.run.environment)
    snapshots = [{"id": m.id, "level": m.level, "first_month": m.first_month,
                  "last_month": m.last_month, "last_month_label": month_label(m.last_month),
                  "imported_at": m.imported_at}
                 for m in SnapshotStore(settings.snapshot_dir).list()]
    return {"environments": envs, "default_environment": default, "snapshots": snapshots,
            "empty": not with_data, "hint": None if with_data else RUN_HINT}


# --------------------------------------------------------------------------- forecasts


def _partition(settings: Settings, env: str, level: str, model: str,
               run: str | None) -> tuple[Path, dict[str, Any]]:
    store = PredictionStore(check_environment(settings, env).predictions)
    runs = store.runs(level, model)
    if not runs:
        known = sorted({p.model for p in store.partitions(level=level)})
        raise NotFound(f"model {model!r} has no stored {level} forecasts in environment "
                       f"{env}; stored models: {', '.join(known) or 'none'} ({RUN_HINT})")
    chosen = run or runs[-1]
    if chosen not in runs:
        raise NotFound(f"run {chosen!r} holds no {level} forecasts of {model!r} in "
                       f"environment {env}; runs: {', '.join(runs)}")
    return store.checked_path(level, chosen, model), {
        **store.metadata(level, chosen, model), "run": chosen}


def _json_file(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A stored JSON object; an unreadable one is a StoreError naming it (503)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable {what} ({exc}); {fix}") from exc
    if not isinstance(doc, dict):
        raise StoreError(f"{path}: unreadable {what} (not a JSON object); {fix}")
    return doc


def _sql(sql: str, params: list[Any]) -> Any:
    """Run a query over the stored file(s) in ``params``; a file DuckDB cannot read is a
    StoreError naming it (503), never a raw DuckDB error."""
    import duckdb

    try:
        with duckdb.connect() as con:
            return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        files = [str(p) for p in params if isinstance(p, str)]
        raise StoreError(f"{', '.join(files) or 'a stored file'}: unreadable ({exc}); "
                         "re-run `ewspipe run` (forecasts) or re-import the snapshot "
                         "(`ewspipe data import`) to rewrite it") from exc


def forecast_map(settings: Settings, *, env: str, level: str, model: str, run: str | None,
                 step: int | None, month: int | None) -> dict[str, Any]:
    """Predicted values of every unit for one step (or target month) of the latest origin."""
    path, meta = _partition(settings, env, level, model, run)
    unit = LEVEL_UNIT[level]
    (origin, max_step), = _sql("SELECT max(origin), max(step) FROM read_parquet(?)",
                               [str(path)])
    steps = range(1, int(max_step) + 1)
    if month is not None and step is not None:
        raise ParamError("month", "month: give either step or month, not both")
    if month is not None:
        if not origin < month <= origin + max_step:
            raise ParamError("month", f"month: {month} is outside this forecast's months "
                             f"{origin + 1}..{origin + max_step} (origin {origin})")
        step = month - origin
    step = 1 if step is None else step
    if step not in steps:
        raise ParamError("step", f"step: {step} is outside 1..{max_step}")
    rows = _sql(f"SELECT {unit}, point FROM read_parquet(?) WHERE origin = ? AND step = ? "
                f"ORDER BY {unit}", [str(path), int(origin), int(step)])
    values = [v for _, v in rows if v is not None and math.isfinite(v)]
    names = unit_names(settings, level, snapshot=meta.get("snapshot"))
    return {
        "environment": env, "level": level, "model": model, "run": meta["run"],
        "target": meta.get("target"), "status": meta.get("status"), "kind": meta.get("kind"),
        "unit_column": unit, "origin": int(origin), "step": int(step),
        "month": int(origin + step), "month_label": month_label(int(origin + step)),
        "months": [{"step": s, "month": int(origin + s), "label": month_label(int(origin + s))}
                   for s in steps],
        "max": _round(max(values)) if values else 0.0,
        "total": _round(float(sum(values))) if values else 0.0,
        "units": [[int(u), _round(v)] for u, v in rows],
        "labels": {str(int(u)): names.label(int(u)) for u, _ in rows},
    }


def _newest_snapshot(settings: Settings, level: str) -> Manifest | None:
    found = [m for m in SnapshotStore(settings.snapshot_dir).list() if m.level == level]
    return found[-1] if found else None


def unit_series(settings: Settings, *, env: str, level: str, model: str, unit: int,
                run: str | None, history: int) -> dict[str, Any]:
    """Observed values of one unit (newest snapshot) and its forecast with a 10-90% interval
    when the model draws samples."""
    path, meta = _partition(settings, env, level, model, run)
    col = LEVEL_UNIT[level]
    target = str(meta.get("target") or "ged_sb")
    (origin,), = _sql("SELECT max(origin) FROM read_parquet(?)", [str(path)])
    with_samples = int(meta.get("n_samples") or 1) > 1
    stored = PredictionStore(check_environment(settings, env).predictions).stored_quantiles(
        level, meta["run"], model)
    # the interval's stored columns when the partition has them: every row group holds
    # every unit, so reading the samples of one unit decompresses all draws of the run
    interval = ("".join(f', "{quantile_column(q)}"' for q in INTERVAL)
                if set(INTERVAL) <= set(stored) else ", samples" if with_samples else "")
    rows = _sql(f"SELECT step, month_id, point{interval} "
                f"FROM read_parquet(?) WHERE origin = ? AND {col} = ? ORDER BY step",
                [str(path), int(origin), int(unit)])
    if not rows:
        raise NotFound(f"unit {unit} ({col}) is not in the {level} forecast of {model!r}, "
                       f"run {meta['run']}")
    forecast = []
    for row in rows:
        item: dict[str, Any] = {"step": int(row[0]), "month": int(row[1]),
                                "point": _round(row[2])}
        if with_samples:
            lo, med, hi = row[3:] if len(row) == 6 else np.quantile(
                np.asarray(row[3], dtype=np.float64), INTERVAL)
            item.update(q10=_round(lo), q50=_round(med), q90=_round(hi))
        forecast.append(item)
    observed: list[list[Any]] = []
    snap = _newest_snapshot(settings, level)
    if snap is not None and target in snap.count_columns:
        first = int(origin) - history + 1
        observed = [[int(m), int(v)] for m, v in _sql(
            f"SELECT month_id, {target} FROM read_parquet(?) WHERE {col} = ? AND "
            "month_id >= ? ORDER BY month_id",
            [str(settings.snapshot_dir / snap.id / DATA_FILE), int(unit), first])]
    return {
        "environment": env, "level": level, "model": model, "run": meta["run"],
        "unit": int(unit), "unit_column": col,
        **unit_names(settings, level, snapshot=meta.get("snapshot")).record(int(unit)),
        "target": target, "origin": int(origin),
        "origin_label": month_label(int(origin)), "n_samples": int(meta.get("n_samples") or 1),
        "interval": "10-90% of samples" if with_samples else None,
        "snapshot": snap.id if snap else None, "observed": observed, "forecast": forecast,
    }


# --------------------------------------------------------------------------- geometry


def country_geometry(settings: Settings) -> dict[str, Any]:
    """Country shapes (SVG paths) for the map: see :func:`ewspipe.geography.country_geometry`
    (the global PRIO-GRID table, or a demo world's own cells)."""
    return geography_shapes(settings)


# --------------------------------------------------------------------------- evaluation


def evaluation(settings: Settings, *, level: str, metric: str,
               run: str | None) -> dict[str, Any]:
    """Metric by step of every model of ``level`` in one evaluation run (default: newest)."""
    store = RunStore(settings.runs_dir)
    runs = [r for r in store.list() if r.get("kind") == "evaluate"
            and any(m.get("level") == level for m in r.get("models", []))]
    runs.sort(key=lambda r: (r.get("started_at", ""), r["run_id"]))
    listing = [{"run_id": r["run_id"], "run_type": r.get("run_type"),
                "started_at": r.get("started_at")} for r in reversed(runs)]
    if not runs:
        return {"level": level, "runs": [], "run": None, "metric": metric, "models": [],
                "metrics": [], "hint": f"no evaluation run at level {level}: run `ewspipe "
                "evaluate --run-type calibration`"}
    if run is None:
        record = runs[-1]
    else:
        hits = [r for r in runs if r["run_id"] == run]
        if not hits:
            raise NotFound(f"run {run!r} is not an evaluation run at level {level}; runs: "
                           f"{', '.join(r['run_id'] for r in runs[-10:])}")
        record = hits[0]
    models, metrics = [], set()
    for m in record.get("models", []):
        if m.get("level") != level:
            continue
        path = store.path(record["run_id"]) / "metrics" / f"{m['model']}.json"
        if not path.is_file():
            continue
        scores = _json_file(path, "metrics file", f"re-run the evaluation ({record['run_id']})")
        metrics.update(scores.get("metrics", []))
        by_step = [[int(g["group"]), _round(g["value"], 6)]
                   for g in scores.get("groups", {}).get("step", []) if g["metric"] == metric]
        models.append({"model": m["model"], "status": m.get("status"), "kind": m.get("kind"),
                       "pooled": _round((scores.get("pooled") or {}).get(metric), 6),
                       "by_step": by_step})
    if models and metric not in metrics:
        raise ParamError("metric", f"metric: {metric!r} is not in run {record['run_id']}; "
                         f"use one of {', '.join(sorted(metrics))}")
    return {"level": level, "runs": listing, "run": record["run_id"],
            "run_type": record.get("run_type"), "metric": metric, "metrics": sorted(metrics),
            "models": models, "hint": None}


def online(settings: Settings, *, level: str) -> dict[str, Any]:
    """The stored online-evaluation summary of ``level``: by-step scores and assessments."""
    path = summary_path(settings)
    hint = ("no online evaluation yet: run `ewspipe run` (or `ewspipe forecast`) each month, "
            "then `ewspipe online-eval` once the forecast months have been observed")
    if not path.is_file():
        return {"level": level, "computed_at": None, "models": [], "hint": hint}
    doc = _json_file(path, "online evaluation", "re-run `ewspipe online-eval`")
    metric = (doc.get("rule") or {}).get("metric", "msle")
    models = []
    for m in doc.get("models", []):
        if m.get("level") != level:
            continue
        a = m.get("assessment") or {}
        models.append({
            "model": m["model"], "status": m.get("status"), "kind": m.get("kind"),
            "scored": m.get("scored"), "pending": (m.get("pending") or {}).get("rows"),
            "pooled": _round((m.get("pooled") or {}).get(metric), 6),
            "by_step": [[s["step"], _round(s.get(metric), 6)] for s in m.get("by_step") or []
                        if s.get(metric) is not None],
            "window_score": _round(a.get("score"), 6) if a.get("score") is not None else None,
            "worse_than_baseline": a.get("worse_than_baseline"),
            "beyond_band": a.get("beyond_band"),
        })
    return {"level": level, "computed_at": doc.get("computed_at"), "metric": metric,
            "actuals": (doc.get("actuals") or {}).get(level), "models": models,
            "alerts": len(doc.get("alerts") or []),
            "hint": None if models else hint}


# --------------------------------------------------------------------------- alerts


def _tail_lines(path: Path, limit: int) -> list[str]:
    """The last ``limit`` non-empty lines, read from the end in blocks (the log only grows)."""
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        fh.seek(0, 2)
        end = fh.tell()
        data, block = b"", 1 << 16
        while end > 0 and data.count(b"\n") <= limit:
            start = max(0, end - block)
            fh.seek(start)
            data = fh.read(end - start) + data
            end = start
    lines = [ln for ln in data.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-limit:]


def alerts(settings: Settings, *, env: str | None, limit: int,
           severity: str | None) -> dict[str, Any]:
    """Newest first: the environment's ``alerts.jsonl`` and the workspace-wide one."""
    ranks = {"INFO": 0, "WARNING": 1, "ERROR": 2, "CRITICAL": 3}
    if severity is not None and severity.upper() not in ranks:
        raise ParamError("severity", f"severity: {severity!r} is not a severity; use one of "
                         f"{', '.join(ranks)}")
    if env is not None:
        check_environment(settings, env)
    sources = [("workspace", settings.layout.alerts_log)] + [
        (e, settings.layout.env(e).alerts_log) for e in settings.run.environments
        if env is None or e == env]
    items, unreadable = [], 0
    for where, path in sources:
        # with a filter, look further back (bounded: the log only grows)
        for line in reversed(_tail_lines(path, limit * 20 if severity else limit)):
            try:
                rec = json.loads(line)
                rec["log"] = where
                if severity is None or ranks.get(rec.get("severity"), 0) >= ranks[
                        severity.upper()]:
                    items.append(rec)
            except (ValueError, TypeError):  # not JSON, or not an object
                unreadable += 1
    items.sort(key=lambda a: str(a.get("time", "")), reverse=True)  # stable: newest line first
    return {"count": len(items[:limit]), "alerts": items[:limit], "unreadable": unreadable,
            "hint": None if items else "no alerts recorded yet; `ewspipe run` writes its "
                                      "alerts to <state_dir>/<env>/alerts.jsonl"}
