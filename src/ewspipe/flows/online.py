"""Online evaluation (``ewspipe online-eval``): score every stored forecast whose target months
now have actuals, compare deployed and shadow models, alert on a deployed model going bad.

1. **Forecasts.** Every stored forecast run (``kind = "forecast"``) contributes, per model and
   ensemble, one origin: its last observed month. When several runs of a model share an origin
   (a re-run), the newest run counts and the others are listed as superseded. With an
   environment (``--env``; or when no forecast run is stored, the default one) the monthly
   runs (``ewspipe run``) of that environment contribute instead, read from its prediction
   store: every stored partition (deployed, shadow and baseline models, ensembles) is one
   origin of its model (:func:`monthly_histories`).
2. **Actuals now.** The newest snapshot of each level (or the ones given). Rows whose target
   month is after the snapshot's last month are *pending* (counted, not scored); rows up to it
   without an actual (a unit that left the panel) are *missing* (counted, not scored).
3. **Scores.** Per model, the stacked forecasts are joined with the actuals and scored by
   :func:`ewspipe.evaluation.schemes.evaluate` with the metrics of evaluation runs: pooled,
   step-wise (= lead time), month-wise (= target month) and sequence-wise (= origin), plus one
   row per (origin, step) cell. The numbers equal an offline evaluation of the same forecasts.
4. **Deployed vs shadow.** Every deployed model or ensemble is compared with every shadow one
   of its level and target on the rows both have: over all scored months and over the window.
5. **Alerts** (source ``online_eval``), for deployed models and ensembles, by the rule of
   :mod:`ewspipe.evaluation.online` with ``[qa.online]``: worse than a baseline over the last
   ``window_months`` scored target months -> ERROR; above its own historical band -> WARNING.

Results go to ``<state_dir>/online/`` (monthly runs: ``<state_dir>/<env>/online/``, alerts to
that environment's ``alerts.jsonl``): ``scores.parquet`` (model x scheme x group x metric),
``cells.parquet`` (model x origin x step x metric; target month = origin + step) and
``summary.json``. They are recomputed from scratch on every call, so the same runs and
actuals give the same tables; alerts are delivered once per distinct input (``digest``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.atomic import atomic_file, json_default, write_json
from ewspipe.errors import InputError, StoreError
from ewspipe.evaluation.online import (
    Assessment,
    Pending,
    assess,
    cell_scores,
    pair_scores,
    scored_months,
    split_pending,
)
from ewspipe.evaluation.schemes import Evaluation, Scored, evaluate, join_actuals
from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS
from ewspipe.flows.output_drift import run_order
from ewspipe.layout import StateFolder
from ewspipe.models.forecast import Forecast
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.progress import current as current_reporter
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import read_forecast
from ewspipe.store.runs import RunStore

__all__ = [
    "ONLINE_DIR",
    "SOURCE",
    "ModelHistory",
    "ModelOnline",
    "OnlineEvalResult",
    "forecast_histories",
    "monthly_histories",
    "online_eval",
    "stack_history",
    "summary_path",
]

ONLINE_DIR = "online"
SOURCE = "online_eval"
SCORES_FILE = "scores.parquet"
CELLS_FILE = "cells.parquet"
SUMMARY_FILE = "summary.json"


# --------------------------------------------------------------------------- stored forecasts


@dataclass(frozen=True)
class RunRef:
    """One forecast of one model: the run, its origin and the predictions file (a forecast
    run's file, or a partition of a monthly run's prediction store when ``level`` is set)."""

    run_id: str
    origin: int
    order: tuple[str, int, str]  # flows.output_drift.run_order
    path: Path
    status: str
    level: str | None = None  # set for a prediction-store partition (run = its store run)
    model: str | None = None

    def read(self, *, samples: bool = True) -> tuple[Forecast, dict[str, Any]]:
        if self.level is None or self.model is None:
            return read_forecast(self.path, samples=samples)
        store = PredictionStore(self.path.parents[3])  # <root>/level=/run=/model=/part-0
        return store.read(self.level, self.run_id, self.model, samples=samples)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "origin": self.origin, "status": self.status}


@dataclass
class ModelHistory:
    """A model's (or ensemble's) forecasts across runs, one per origin, oldest first."""

    model: str
    level: str
    kind: str
    status: str  # as recorded in its newest run
    runs: list[RunRef] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)

    @property
    def origins(self) -> list[int]:
        return [r.origin for r in self.runs]


def _origin(record: dict[str, Any], level: str) -> int | None:
    part = (record.get("partition") or {}).get(level) or {}
    origins = part.get("origins") or []
    return int(origins[0]) if len(origins) == 1 else None


def forecast_histories(runs: RunStore) -> dict[str, ModelHistory]:
    """Every model and ensemble of every stored forecast run, by name (see the module doc)."""
    records = [r for r in runs.list() if r.get("kind") == "forecast"]
    order = {r["run_id"]: run_order(runs, r) for r in records}
    records.sort(key=lambda r: order[r["run_id"]])
    chosen: dict[tuple[str, int], tuple[RunRef, dict[str, Any]]] = {}
    superseded: dict[str, list[str]] = {}
    for record in records:  # oldest first: a later run of the same origin replaces it
        for entry in record.get("models") or []:
            origin = _origin(record, entry["level"])
            if origin is None or not entry.get("predictions"):
                continue
            ref = RunRef(record["run_id"], origin, order[record["run_id"]],
                         runs.path(record["run_id"]) / entry["predictions"],
                         str(entry.get("status", "")))
            key = (entry["model"], origin)
            if key in chosen:
                superseded.setdefault(entry["model"], []).append(chosen[key][0].run_id)
            chosen[key] = (ref, entry)
    histories: dict[str, ModelHistory] = {}
    for (name, _), (ref, entry) in sorted(chosen.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        hist = histories.get(name)
        if hist is None:
            hist = histories[name] = ModelHistory(name, entry["level"],
                                                  entry.get("kind", "model"), ref.status)
        hist.runs.append(ref)
    for name, hist in histories.items():
        newest = max(hist.runs, key=lambda r: r.order)
        hist.status = newest.status
        hist.superseded = sorted(superseded.get(name, []))
    return histories


def monthly_histories(store: PredictionStore) -> dict[str, ModelHistory]:
    """Every model and ensemble of every monthly run in one environment's prediction store,
    by name: one origin per run (its last observed month), the newest partition of an origin
    counting (partitions are immutable, so write time orders them) and the others listed as
    superseded. The status, kind and target are those the partition recorded."""
    chosen: dict[tuple[str, int], RunRef] = {}
    meta: dict[tuple[str, int], dict[str, Any]] = {}
    superseded: dict[str, list[str]] = {}
    parts = []
    for part in store.partitions():
        origins = store.origins(part.level, part.run, part.model)
        if len(origins) != 1:
            continue
        parts.append((part.path.stat().st_mtime_ns, part, origins[0]))
    for mtime, part, origin in sorted(parts, key=lambda p: (p[0], p[1].run, p[1].model)):
        info = store.metadata(part.level, part.run, part.model)
        ref = RunRef(part.run, origin, ("", mtime, part.run), part.path,
                     str(info.get("status", "")), level=part.level, model=part.model)
        key = (part.model, origin)
        if key in chosen:
            superseded.setdefault(part.model, []).append(chosen[key].run_id)
        chosen[key], meta[key] = ref, {**info, "level": part.level}
    histories: dict[str, ModelHistory] = {}
    for (name, origin), ref in sorted(chosen.items()):
        info = meta[(name, origin)]
        hist = histories.get(name)
        if hist is None:
            hist = histories[name] = ModelHistory(name, info["level"],
                                                  str(info.get("kind", "model")), ref.status)
        hist.runs.append(ref)
    for name, hist in histories.items():
        hist.status = max(hist.runs, key=lambda r: r.order).status
        hist.superseded = sorted(superseded.get(name, []))
    return histories


def stack_history(history: ModelHistory) -> tuple[Forecast, dict[str, Any], list[str]]:
    """The model's forecasts of every origin in one Forecast (origin order), the newest
    file's metadata and notes. Samples are kept when every run has the same number."""
    notes: list[str] = []
    parts, metas = [], []
    for ref in history.runs:
        forecast, meta = ref.read()
        parts.append(forecast)
        metas.append(meta)
    widths = sorted({p.n_samples for p in parts})
    if len(widths) > 1:
        notes.append(f"runs differ in samples per row ({widths}); scored on point predictions "
                     "only, without sample metrics")
        parts = [ref.read(samples=False)[0] for ref in history.runs]
    targets = sorted({str(m.get("target")) for m in metas})
    if len(targets) > 1:
        notes.append(f"runs differ in target ({', '.join(targets)}); scored against "
                     f"{metas[-1].get('target')}, the newest run's")
    return Forecast.concat(parts), metas[-1], notes


# --------------------------------------------------------------------------- results


@dataclass
class ModelOnline:
    """One model's online evaluation."""

    model: str
    level: str
    kind: str
    status: str
    target: str
    runs: list[RunRef]
    superseded: list[str]
    actuals: str | None
    rows: int = 0
    pending: Pending = field(default_factory=lambda: Pending(0, ()))
    missing: int = 0
    scored: Scored | None = None
    evaluation: Evaluation | None = None
    cells: pd.DataFrame | None = None
    assessment: Assessment | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_scored(self) -> int:
        return 0 if self.scored is None else len(self.scored)

    def by_step(self) -> list[dict[str, Any]]:
        """Step-wise (lead time) scores: one dict per step with n and every metric."""
        if self.evaluation is None:
            return []
        table = self.evaluation.groups["step"]
        out: dict[int, dict[str, Any]] = {}
        for r in table.itertuples(index=False):
            row = out.setdefault(int(r.group), {"step": int(r.group), "n": int(r.n)})
            row[r.metric] = None if pd.isna(r.value) else float(r.value)
        return [out[k] for k in sorted(out)]

    def to_dict(self, *, steps: bool = True) -> dict[str, Any]:
        months = scored_months(self.scored) if self.scored is not None else []
        ev = self.evaluation
        return {
            "model": self.model, "level": self.level, "kind": self.kind, "status": self.status,
            "target": self.target, "actuals": self.actuals,
            "runs": [r.to_dict() for r in self.runs], "superseded": self.superseded,
            "origins": {"count": len(self.runs), "first": self.runs[0].origin if self.runs
                        else None, "last": self.runs[-1].origin if self.runs else None},
            "rows": self.rows, "scored": self.n_scored, "missing_actuals": self.missing,
            "pending": self.pending.to_dict(),
            "scored_months": {"count": len(months), "first": months[0] if months else None,
                              "last": months[-1] if months else None},
            "pooled": dict(ev.pooled) if ev else None,
            "means": {k: dict(v) for k, v in ev.means.items()} if ev else None,
            "by_step": self.by_step() if steps else None,
            "assessment": self.assessment.to_dict() if self.assessment else None,
            "notes": list(self.notes) + (list(ev.notes) if ev else []),
        }


@dataclass
class OnlineEvalResult:
    actuals: dict[str, Manifest]
    models: list[ModelOnline]
    comparisons: list[dict[str, Any]]
    alerts: list[Alert]
    digest: str
    settings: dict[str, Any]
    computed_at: str
    directory: Path | None = None
    delivery: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def pending_rows(self) -> int:
        return sum(m.pending.rows for m in self.models)

    def model(self, name: str) -> ModelOnline:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(name)

    def to_dict(self, *, steps: bool = True) -> dict[str, Any]:
        return {
            "computed_at": self.computed_at, "digest": self.digest, "source": self.source,
            "actuals": {lvl: {"snapshot": m.id, "last_month": m.last_month,
                              "last_month_label": month_label(m.last_month),
                              "fetched_at": m.fetched_at}
                        for lvl, m in sorted(self.actuals.items())},
            "rule": self.settings,
            "models": [m.to_dict(steps=steps) for m in self.models],
            "comparisons": self.comparisons,
            "alerts": [a.to_dict() for a in self.alerts],
            "pending_rows": self.pending_rows,
            "directory": str(self.directory) if self.directory else None,
            "files": {k: str(self.directory / v) for k, v in (
                ("scores", SCORES_FILE), ("cells", CELLS_FILE), ("summary", SUMMARY_FILE))}
            if self.directory else None,
            "delivery": self.delivery,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- actuals


def _actual_snapshots(
    store: SnapshotStore, refs: Sequence[str], levels: set[str]
) -> dict[str, Manifest]:
    chosen: dict[str, Manifest] = {}
    for ref in refs:
        manifest = store.get(ref)
        if manifest.level in chosen:
            raise InputError(f"two snapshots given for level {manifest.level} "
                             f"({chosen[manifest.level].id}, {manifest.id}); give one per level",
                             parameter="snapshot")
        chosen[manifest.level] = manifest
    for level in sorted(levels - set(chosen)):
        ofs = [m for m in store.list() if m.level == level]
        if ofs:  # newest import; within the same second, the one reaching furthest
            chosen[level] = max(ofs, key=lambda m: (m.imported_at, m.last_month, m.rows))
    return chosen


# --------------------------------------------------------------------------- the flow


def _metrics(forecast: Forecast) -> tuple[str, ...]:
    return POINT_METRICS + (SAMPLE_METRICS if forecast.n_samples > 1 else ())


def _score_model(
    hist: ModelHistory, actuals: dict[str, Manifest], panels: dict[str, Panel],
    cache: dict[tuple[str, str], pd.DataFrame],
) -> ModelOnline:
    forecast, meta, notes = stack_history(hist)
    target = str(meta.get("target") or "")
    manifest = actuals.get(hist.level)
    out = ModelOnline(hist.model, hist.level, hist.kind, hist.status, target, hist.runs,
                      hist.superseded, manifest.id if manifest else None, rows=len(forecast),
                      notes=notes)
    if manifest is None:
        out.pending = Pending(len(forecast), tuple(int(m) for m in
                                                   np.unique(forecast.frame["month_id"])))
        out.notes.append(f"no {hist.level} snapshot: nothing scored; import {hist.level} data")
        return out
    panel = panels[hist.level]
    if target not in panel.frame.columns:
        out.notes.append(f"snapshot {manifest.id} has no column {target!r}: not scored")
        return out
    due, out.pending = split_pending(forecast, manifest.last_month)
    if due is None:
        return out
    key = (hist.level, target)
    if key not in cache:
        cache[key] = panel.actuals(target)
    scored = join_actuals(due, cache[key])
    out.missing = scored.n_unscored
    if len(scored) == 0:
        return out
    metrics = _metrics(forecast)
    out.scored = scored
    out.evaluation = evaluate(scored, metrics)
    out.cells = cell_scores(scored, metrics)
    return out


def _assess_all(models: list[ModelOnline], settings: Settings) -> None:
    rule = settings.qa.online
    for m in models:
        if m.status != "deployed" or m.scored is None:
            continue
        baselines = {b.model: b.scored for b in models
                     if b.status == "baseline" and b.level == m.level and b.target == m.target
                     and b.scored is not None}
        m.assessment = assess(
            m.model, m.scored, baselines, metric=rule.metric, window_months=rule.window_months,
            tolerance=rule.baseline_tolerance, band_sd=rule.band_sd,
            band_min_windows=rule.band_min_windows,
        )


def _compare(models: list[ModelOnline], settings: Settings) -> list[dict[str, Any]]:
    """Deployed vs shadow on the rows both have (all scored months, and the window)."""
    rule = settings.qa.online
    metric = rule.metric
    out = []
    for d in models:
        if d.status != "deployed" or d.scored is None:
            continue
        for s in models:
            if (s.status != "shadow" or s.scored is None or s.level != d.level
                    or s.target != d.target):
                continue
            dv, sv, n = pair_scores(d.scored, s.scored, metric)
            months = sorted(set(scored_months(d.scored)) & set(scored_months(s.scored)))
            window = months[-rule.window_months:]
            wd, ws, wn = pair_scores(d.scored, s.scored, metric, window)
            out.append({
                "deployed": d.model, "shadow": s.model, "level": d.level, "target": d.target,
                "metric": metric, "rows": n,
                "months": {"count": len(months), "first": months[0] if months else None,
                           "last": months[-1] if months else None},
                "deployed_score": dv, "shadow_score": sv,
                "delta": None if dv is None or sv is None else sv - dv,
                "shadow_better": bool(dv is not None and sv is not None and sv < dv),
                "window": {"months": window, "rows": wn, "deployed_score": wd,
                           "shadow_score": ws,
                           "delta": None if wd is None or ws is None else ws - wd,
                           "shadow_better": bool(wd is not None and ws is not None
                                                 and ws < wd)},
            })
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _alerts(models: list[ModelOnline], settings: Settings) -> list[Alert]:
    rule = settings.qa.online
    alerts = []
    for m in models:
        a = m.assessment
        if a is None or not a.window:
            continue
        span = (f"target months {month_label(a.window[0])}..{month_label(a.window[-1])} "
                f"({len(a.window)} months, {a.rows:,} rows)")
        what = "ensemble" if m.kind == "ensemble" else "model"
        details = {"model": m.model, "kind": m.kind, "level": m.level, "target": m.target,
                   "metric": a.metric, "window": list(a.window), "actuals": m.actuals}
        if a.worse_than_baseline:
            worse = [b for b in a.baselines if b.worse]
            b = min(worse, key=lambda c: (c.baseline_score, c.baseline))
            alerts.append(Alert(
                source=SOURCE, severity=Severity.ERROR, offender=m.model,
                value=b.model_score, threshold=None if b.baseline_score is None
                else b.baseline_score * (1 + rule.baseline_tolerance),
                message=(f"deployed {what} {m.model} ({m.level}) scores {a.metric} "
                         f"{_fmt(b.model_score)} over {span}, worse than baseline "
                         f"{b.baseline} ({_fmt(b.baseline_score)}) on the same {b.rows:,} "
                         "rows; review it (ewspipe online-eval --json) and consider rolling "
                         "it back to shadow"),
                details={**details, "rule": "baseline", "baselines": [
                    c.to_dict() for c in a.baselines], "tolerance": rule.baseline_tolerance},
            ))
        if a.beyond_band:
            alerts.append(Alert(
                source=SOURCE, severity=Severity.WARNING, offender=m.model, value=a.score,
                threshold=a.band.upper,
                message=(f"deployed {what} {m.model} ({m.level}) scores {a.metric} "
                         f"{_fmt(a.score)} over {span}, above its historical band "
                         f"{_fmt(a.band.upper)} (mean {_fmt(a.band.mean)} + {rule.band_sd:g} "
                         f"sd over {a.band.windows} earlier {len(a.window)}-month windows)"),
                details={**details, "rule": "band", "band": a.band.to_dict()},
            ))
    return alerts


def _digest(actuals: dict[str, Manifest], histories: dict[str, ModelHistory],
            settings: Settings) -> str:
    doc = {
        "actuals": {lvl: m.id for lvl, m in sorted(actuals.items())},
        "runs": {name: [r.run_id for r in h.runs] for name, h in sorted(histories.items())},
        "status": {name: h.status for name, h in sorted(histories.items())},
        "rule": settings.qa.online.model_dump(),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _model_columns(m: ModelOnline, frame: pd.DataFrame) -> pd.DataFrame:
    head = pd.DataFrame({"model": m.model, "level": m.level, "kind": m.kind,
                         "status": m.status, "target": m.target}, index=frame.index)
    return pd.concat([head, frame], axis=1)


def _scores_table(models: list[ModelOnline]) -> pd.DataFrame:
    parts = []
    for m in models:
        ev = m.evaluation
        if ev is None:
            continue
        pooled = pd.DataFrame({
            "scheme": "pooled", "group": np.zeros(len(ev.metrics), dtype=np.int64),
            "metric": list(ev.metrics),
            "value": pd.array([ev.pooled[k] for k in ev.metrics], dtype="Float64"),
            "n": np.full(len(ev.metrics), ev.n_scored, dtype=np.int64), "reason": "",
        })
        parts.append(_model_columns(m, pd.concat([pooled, ev.frame()], ignore_index=True)))
    if not parts:
        return pd.DataFrame(columns=["model", "level", "kind", "status", "target", "scheme",
                                     "group", "metric", "value", "n", "reason"])
    return pd.concat(parts, ignore_index=True)


def _cells_table(models: list[ModelOnline]) -> pd.DataFrame:
    parts = [_model_columns(m, m.cells) for m in models if m.cells is not None]
    if not parts:
        return pd.DataFrame(columns=["model", "level", "kind", "status", "target", "origin",
                                     "step", "month_id", "metric", "value", "n", "reason"])
    return pd.concat(parts, ignore_index=True)


def _store(directory: Path, result: OnlineEvalResult) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    scores, cells = _scores_table(result.models), _cells_table(result.models)
    with atomic_file(directory / SCORES_FILE) as tmp:
        scores.to_parquet(tmp, index=False)
    with atomic_file(directory / CELLS_FILE) as tmp:
        cells.to_parquet(tmp, index=False)
    write_json(directory / SUMMARY_FILE, result.to_dict(), default=json_default)


def _previous(directory: Path) -> dict[str, Any] | None:
    path = directory / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _sources(settings: Settings, environment: str | None,
             ) -> tuple[dict[str, ModelHistory], dict[str, Any], Path, list[str]]:
    """(histories, source description, folder for results and alerts, notes): the monthly
    runs of ``environment``; without one the ``ewspipe forecast`` runs, or when none is
    stored the monthly runs of the default environment."""
    if environment is not None and environment not in settings.run.environments:
        raise InputError(f"{environment!r} is not an environment; use one of "
                         f"{', '.join(settings.run.environments)} (ewspipe.toml [run] "
                         "environments)", parameter="environment")
    if environment is None:
        histories = forecast_histories(RunStore(settings.runs_dir))
        if histories:
            return (histories, {"kind": "forecast_runs", "environment": None,
                                "path": str(settings.runs_dir)}, settings.state_dir, [])
    env = environment or settings.run.environment
    layout = settings.layout.env(env)
    histories = monthly_histories(PredictionStore(layout.predictions))
    if not histories:
        raise InputError(
            f"no stored monthly run in {layout.predictions}"
            + ("" if environment else f" and no stored forecast run in {settings.runs_dir}")
            + f": nothing to evaluate online; run `ewspipe run --env {env}` each month (or "
            "`ewspipe forecast`), then `ewspipe online-eval"
            + (f" --env {env}" if environment else "") + "` once actuals arrive"
        )
    notes = [] if environment else [
        f"no stored forecast run: evaluated the monthly runs of {env} ([run] environment); "
        "pass --env to choose another environment"]
    return (histories, {"kind": "monthly_runs", "environment": env,
                        "path": str(layout.predictions)}, layout.root, notes)


def summary_path(settings: Settings, environment: str | None = None) -> Path:
    """Where the latest online evaluation's ``summary.json`` is: of ``environment``'s monthly
    runs; without one, of the ``ewspipe forecast`` runs when that was evaluated, else of the
    default environment's monthly runs (the same choice as :func:`online_eval`)."""
    if environment is not None:
        return settings.layout.env(environment).online_summary
    path = settings.layout.online_summary
    if path.is_file():
        return path
    return settings.layout.env(settings.run.environment).online_summary


def online_eval(
    settings: Settings,
    *,
    snapshot: str | Sequence[str] | None = None,
    deliver: bool = True,
    store: bool = True,
    environment: str | None = None,
) -> OnlineEvalResult:
    """Score every stored forecast against the actuals available now (module docstring).

    Args:
        snapshot: the actuals: a snapshot id (or unique prefix) per level; levels not given
            use their newest snapshot.
        deliver: send the alerts to the ``[alerts]`` sinks (once per distinct input).
        store: write the results (scores.parquet, cells.parquet, summary.json) to
            ``<state_dir>/online/``, or ``<state_dir>/<env>/online/`` for monthly runs.
        environment: evaluate the monthly runs (``ewspipe run``) of this environment, from its
            prediction store. None: the ``ewspipe forecast`` runs, or when none is stored
            the monthly runs of ``[run] environment``.

    Raises:
        InputError: nothing is stored to evaluate; unknown environment; unknown or ambiguous
            snapshot; two snapshots of one level.
    """
    refs = [snapshot] if isinstance(snapshot, str) else list(snapshot or [])
    histories, source, home, notes = _sources(settings, environment)
    snapshots = SnapshotStore(settings.snapshot_dir)
    actuals = _actual_snapshots(snapshots, refs, {h.level for h in histories.values()})
    panels = {lvl: snapshots.load(m.id) for lvl, m in actuals.items()}
    cache: dict[tuple[str, str], pd.DataFrame] = {}
    models: list[ModelOnline] = []
    alerts: list[Alert] = []
    report = current_reporter()
    names = sorted(histories, key=lambda n: (histories[n].level, n))
    for i, name in enumerate(names, start=1):
        try:
            models.append(_score_model(histories[name], actuals, panels, cache))
        except StoreError as exc:
            notes.append(f"{name}: not scored: {exc}")
            alerts.append(Alert(source=SOURCE, severity=Severity.WARNING, offender=name,
                                message=f"online evaluation skipped {name}: {exc}"))
        report.step("online-eval", i, len(names), f"scored {name}")
    _assess_all(models, settings)
    comparisons = _compare(models, settings)
    alerts += _alerts(models, settings)
    if source["environment"] is not None:
        alerts = [replace(a, environment=source["environment"]) for a in alerts]
    rule = settings.qa.online.model_dump()
    result = OnlineEvalResult(
        actuals=actuals, models=models, comparisons=comparisons, alerts=alerts,
        digest=_digest(actuals, histories, settings), settings=rule,
        computed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), notes=notes,
        source=source,
    )
    directory = StateFolder(home).online
    previous = _previous(directory)
    if deliver and alerts:
        if previous is not None and previous.get("digest") == result.digest and \
                (previous.get("delivery") or {}).get("delivered"):
            result.delivery = {"delivered": False, "reason": "already delivered for these "
                               "forecasts and actuals (same digest)"}
        else:
            with build_router(settings.alerts, home) as router:
                result.delivery = {"delivered": True, **router.route(alerts).to_dict()}
    elif deliver:
        result.delivery = {"delivered": True, "alerts": 0, "sinks": {}}
    if store:
        result.directory = directory
        _store(directory, result)
    return result
