"""What the monthly run computes: plain task functions, one per node of the graph.

Every task is ``func(ctx, *, key, **inputs, **params) -> output`` where ``output`` is a small
JSON-ready dict; bulky results (forecasts, ensembles, reports) are files below the
environment's state folder, named by the task key and written temp-then-rename, and the
output carries their paths relative to that folder. Tasks never look at the clock or the
executor for anything that goes into an output (alert times are stamped at delivery), so the
same inputs give the same outputs in-process and on any Dask worker.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.atomic import commit_dir, make_temp_dir
from ewspipe.catalog import Catalog, load_catalog
from ewspipe.catalog.spec import ModelSpec
from ewspipe.drift.check import DriftConfig, check_panel
from ewspipe.drift.selftest import run_selftest
from ewspipe.errors import InputError, StoreError
from ewspipe.evaluation.plausibility import (
    Implausible,
    check_forecast,
    combine,
    largest_observed,
    plausibility_ceiling,
)
from ewspipe.flows.ensemble_run import plan_run, run_ensembles
from ewspipe.flows.graph import TRACE
from ewspipe.flows.ingest import import_demo_checked
from ewspipe.flows.modelrun import (
    fit_or_reuse,
    load_snapshot,
    model_design,
    require_snapshot_data,
    spare_panels,
    task_budget,
    write_predictions,
)
from ewspipe.flows.publish_policy import decide_publish, deployed_pointers
from ewspipe.layout import EnvironmentLayout
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.partitions import Partition, RunType
from ewspipe.provenance import code_version
from ewspipe.settings import Settings
from ewspipe.store.artifacts import ArtifactStore
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import iter_forecast, read_forecast, read_forecast_metadata
from ewspipe.store.published import PublishedPointers
from ewspipe.store.runs import RunStore, RunWriter
from ewspipe.store.statedb import open_state_db

__all__ = [
    "TaskContext",
    "artifact_present",
    "build_ensembles",
    "check_drift",
    "forecast_model",
    "publish",
    "qa_checks",
    "route_alerts",
    "select_snapshots",
    "store_predictions",
    "stored_intact",
    "train_model",
    "write_report",
]

RUN_TYPE = RunType.FORECASTING
Output = dict[str, Any]


@dataclass(frozen=True)
class TaskContext:
    """What every task may read: settings (snapshots shared in ``settings.snapshot_dir``) and
    the environment's state folder, where everything the run writes goes."""

    settings: Settings
    environment: str
    state: Path

    @property
    def layout(self) -> EnvironmentLayout:
        return self.settings.layout.env(self.environment)

    @property
    def artifacts(self) -> ArtifactStore:
        """The one artifact cache, shared with ``ewspipe evaluate``/``forecast`` (same key:
        model, run type, config hash, snapshot, training end, code), so a model fitted by
        one is reused by the other."""
        return ArtifactStore(self.layout.artifacts,
                             allow_pickle=self.settings.models.allow_pickle)

    @property
    def predictions(self) -> PredictionStore:
        return PredictionStore(self.layout.predictions)

    def catalog(self) -> Catalog:
        return load_catalog(self.settings.models_dir, ensembles_dir=self.settings.ensembles_dir)


# --------------------------------------------------------------------------- helpers


def _spec(ctx: TaskContext, model: str, config_hash: str) -> ModelSpec:
    """The model the graph was built for: its file must not have changed since (a task runs
    exactly the definition its key names, never one edited mid-run)."""
    spec = ctx.catalog().models.get(model)
    if spec is None or spec.config_hash != config_hash:
        raise InputError(f"model {model!r}: its file {'is gone' if spec is None else 'changed'}"
                         " while the run was going; run again with the files left alone")
    return spec


def _snapshot(ctx: TaskContext, snapshots: Mapping[str, Any], level: str) -> tuple[Manifest, Panel]:
    return load_snapshot(str(ctx.settings.snapshot_dir), snapshots[level]["id"])


def _partition(ctx: TaskContext, manifest: Manifest) -> Partition:
    return ctx.settings.partition_scheme().partition(RUN_TYPE, last_observed=manifest.last_month)


def _commit_dir(tmp: Path, final: Path) -> None:
    """Commit ``tmp`` as ``final`` (ewspipe.atomic); removes ``tmp`` on any failure.

    An existing ``final`` is replaced: the task runs again only when its output is missing,
    damaged or from an interrupted attempt, and keeping that folder would keep the damage
    (a deleted ensemble forecast was never rebuilt, run after run)."""
    try:
        commit_dir(tmp, final, replace=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _alert_dict(alert: Alert, environment: str) -> dict[str, Any]:
    data = alert.to_dict()
    data.pop("time", None)  # stamped at delivery, so outputs stay deterministic
    data.pop("run_id", None)
    data["environment"] = environment
    return data


def _items(forecasts: Mapping[str, Output], ensembles: Output) -> list[Output]:
    return [*(forecasts[k] for k in sorted(forecasts)), *ensembles["ensembles"]]


# --------------------------------------------------------------------------- tasks


def select_snapshots(ctx: TaskContext, *, key: str, levels: list[str]) -> Output:
    """The latest snapshot per level; the demo world is imported first when there is none
    at all (and ``[run] demo_when_empty``)."""
    store = SnapshotStore(ctx.settings.snapshot_dir)
    if not store.list() and ctx.settings.run.demo_when_empty:
        import_demo_checked(ctx.settings)
    chosen: dict[str, Any] = {}
    for level in levels:
        m = store.latest(level)
        require_snapshot_data(store, m)
        # re-hashed every run: reused tasks never read the data, so a file changed since the
        # import would otherwise be published from (the hash is the tasks' key)
        store.data_path(m.id, verify=True)
        chosen[level] = {"id": m.id, "sha256": m.sha256, "first_month": m.first_month,
                         "last_month": m.last_month, "units_last_month": m.units_last_month}
    return chosen


def check_drift(ctx: TaskContext, *, key: str, snapshots: Output, level: str) -> Output:
    """Input drift of the snapshot's last month (thresholds of the forecasting run type)."""
    manifest, panel = _snapshot(ctx, snapshots, level)
    config = DriftConfig.from_settings(ctx.settings.drift, RUN_TYPE.value, level)
    try:
        report = check_panel(panel, config, snapshot=manifest.id)
    except InputError as exc:  # too little history: reported, not fatal
        return {"level": level, "snapshot": manifest.id, "skipped": str(exc), "failed": False,
                "alarms": 0, "alerts": [], "selftest": None}
    # the detectors prove they still work, once per run: each must fire on its perturbation
    # (alarms on the unperturbed month are this month's drift, reported above, not a fault)
    selftest = run_selftest(panel, config, snapshot=manifest.id)
    broken = selftest.insensitive()
    alerts = [_alert_dict(a, ctx.environment) for a in report.alerts()]
    if broken:
        alerts.append(_alert_dict(Alert(
            source="drift.selftest", severity=Severity.CRITICAL, offender=level,
            message=f"drift self-test failed on {manifest.id}: " + "; ".join(broken)),
            ctx.environment))
    return {
        "level": level, "snapshot": manifest.id, "failed": report.failed,
        "alarms": len(report.alarms), "max_severity": report.max_severity,
        "by_detector": report.counts(), "alerts": alerts,
        "selftest": {"passed": not broken, "failures": broken,
                     "not_applicable": selftest.not_applicable()},
    }


def train_model(ctx: TaskContext, *, key: str, snapshots: Output, model: str,
                config_hash: str) -> Output:
    """Fit ``model`` on everything up to the last observed month, or reuse its artifact
    (``trace.reused``: found in the shared cache, e.g. fitted by ``ewspipe forecast``)."""
    spec = _spec(ctx, model, config_hash)
    manifest, panel = _snapshot(ctx, snapshots, spec.level.value)
    partition = _partition(ctx, manifest)
    design = model_design(spec, panel, manifest, train_last=partition.train.last)
    del panel
    spare_panels(task_budget(ctx.settings))
    artifacts = ctx.artifacts
    _, _, reused = fit_or_reuse(spec, design, run_type=RUN_TYPE,
                                train_last=partition.train.last, snapshot=manifest,
                                artifacts=artifacts)
    akey = artifacts.key(spec.name, RUN_TYPE.value, spec.config_hash, manifest.sha256,
                         partition.train.last)
    return {"model": model, "level": spec.level.value, "artifact_key": akey.digest,
            "train_last": partition.train.last, TRACE: {"reused": reused}}


def artifact_present(ctx: TaskContext, output: Output) -> bool:
    """Before a cached train task is reused: its artifact is still in the cache. A deleted
    one (the cache cleared by hand, a lost disk) makes the task run again and refit, so the
    state heals instead of failing every re-run."""
    model = output.get("model") if isinstance(output, dict) else None
    digest = output.get("artifact_key") if isinstance(output, dict) else None
    if not isinstance(model, str) or not isinstance(digest, str):
        return False
    return ctx.artifacts.find_digest(model, RUN_TYPE.value, digest) is not None


def stored_intact(ctx: TaskContext, output: Output) -> bool:
    """Before a cached store task is reused: every partition it wrote still matches its
    sha256. A damaged one makes the task run again, which rewrites it (the run does not
    report ok on top of a damaged partition)."""
    paths = [ctx.layout.resolve(p["path"]) for p in output.get("partitions", [])]
    return not ctx.predictions.damaged(paths)


def forecast_model(ctx: TaskContext, *, key: str, snapshots: Output, trained: Output,
                   model: str, config_hash: str) -> Output:
    """Predict steps 1..36 from the last observed month with the trained artifact, written
    chunk by chunk within ``[run] memory_budget`` (a sampling model's draws are never all in
    memory)."""
    spec = _spec(ctx, model, config_hash)
    manifest, panel = _snapshot(ctx, snapshots, spec.level.value)
    partition = _partition(ctx, manifest)
    artifacts = ctx.artifacts
    akey = artifacts.key(spec.name, RUN_TYPE.value, spec.config_hash, manifest.sha256,
                         partition.train.last)
    found = artifacts.find(akey)
    if found is None or found.digest != trained["artifact_key"]:
        raise StoreError(f"model {model!r}: the artifact trained in this run "
                         f"({trained['artifact_key'][:16]}) is missing from {artifacts.root}")
    fitted = artifacts.load(found)
    [origin] = [s.origin for s in partition.rolling_origins()]
    design = model_design(spec, panel, manifest, predict_from=origin)
    budget = task_budget(ctx.settings)
    del panel
    spare_panels(budget)
    rel = f"work/forecasts/{model}/{key[:16]}.parquet"
    _, rows, n_samples, _ = write_predictions(
        fitted, design, partition, ctx.layout.resolve(rel), budget=budget, metadata={
            "model": model, "kind": "model", "run_type": RUN_TYPE.value,
            "snapshot": manifest.id, "config_hash": spec.config_hash,
            "artifact": found.directory, "status": spec.status.value,
            "code_commit": code_version().commit, "target": spec.target,
        })
    return {"model": model, "level": spec.level.value, "status": spec.status.value,
            "target": spec.target, "kind": "model", "path": rel, "rows": rows,
            "n_samples": n_samples}


def build_ensembles(ctx: TaskContext, *, key: str, snapshots: Output,
                    forecasts: Mapping[str, Output], names: list[str],
                    config: dict[str, str]) -> Output:
    """Aggregate, post-process and reconcile every ensemble (ewspipe.flows.ensemble_run)."""
    if not names:
        return {"ensembles": [], "alerts": []}
    catalog = ctx.catalog()
    plan = plan_run(catalog, names)
    by_model = {out["model"]: out for out in forecasts.values()}
    members = {m: read_forecast(ctx.layout.resolve(by_model[m]["path"]))[0] for m in plan.needed}
    levels = sorted({e.level.value for e in plan.ensembles})
    loaded = {lvl: _snapshot(ctx, snapshots, lvl) for lvl in levels}
    final = ctx.layout.ensemble_work / key[:16]
    tmp = make_temp_dir(final)
    try:
        writer = RunWriter(store=RunStore(tmp.parent), run_id=f"run-{key[:12]}", tmp=tmp)
        outcomes, alerts = run_ensembles(
            plan, members, {}, settings=ctx.settings, catalog=catalog, run_type=RUN_TYPE,
            snapshots={lvl: m for lvl, (m, _) in loaded.items()},
            panels={lvl: p for lvl, (_, p) in loaded.items()}, writer=writer, score=None,
        )
        _commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rel = final.relative_to(ctx.state).as_posix()
    return {
        "ensembles": [{
            "model": o.model, "level": o.level, "status": o.status,
            "target": catalog.ensembles[o.model].target, "kind": "ensemble",
            "path": f"{rel}/{o.predictions}", "rows": o.rows, "n_samples": o.n_samples,
            "ensemble": o.ensemble,
        } for o in outcomes],
        "alerts": [_alert_dict(a, ctx.environment) for a in alerts],
    }


class _QaTally:
    """The QA checks of one forecast, accumulated chunk by chunk (its rows, in order)."""

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.non_finite = self.negative = self.month_mismatch = False
        self.implausible: Implausible | None = None
        self.origins: set[int] = set()
        self.steps: set[int] = set()
        self.units: set[int] = set()
        self.rows = 0

    def add(self, chunk: Forecast) -> None:
        frame = chunk.frame
        self.non_finite |= not (np.isfinite(chunk.point).all()
                                and np.isfinite(chunk.samples).all())
        self.negative |= bool((chunk.point < 0).any() or (chunk.samples < 0).any())
        self.implausible = combine(self.implausible, check_forecast(chunk, self.ceiling))
        self.month_mismatch |= not (frame["month_id"] == frame["origin"] + frame["step"]).all()
        self.origins.update(int(o) for o in frame["origin"].unique())
        self.steps.update(int(s) for s in frame["step"].unique())
        self.units.update(int(u) for u in frame[chunk.unit_column].unique())
        self.rows += len(frame)

    def problems(self, item: Output, snap: Output, steps: int) -> list[str]:
        problems = []
        if self.non_finite:
            problems.append("non-finite values")
        if self.negative:
            problems.append("negative values")
        if self.implausible is not None:
            problems.append(self.implausible.message())
        if self.month_mismatch:
            problems.append("month_id != origin + step")
        if self.origins != {snap["last_month"]}:
            problems.append(f"origin is not the last observed month {snap['last_month']}")
        if sorted(self.steps) != list(range(1, steps + 1)):
            problems.append(f"steps are not 1..{steps}")
        units = len(self.units)
        if item["kind"] == "model" and units != snap["units_last_month"]:
            problems.append(f"{units} units, expected the {snap['units_last_month']} of the "
                            "last observed month")
        if self.rows != units * steps:
            problems.append(f"{self.rows} rows for {units} units x {steps} steps")
        return problems


def _qa_one(forecast: Forecast | Iterable[Forecast], item: Output, snap: Output, steps: int,
            ceiling: float) -> list[str]:
    """The QA problems of one forecast, whole or as its chunks in order."""
    tally = _QaTally(ceiling)
    for chunk in [forecast] if isinstance(forecast, Forecast) else forecast:
        tally.add(chunk)
    return tally.problems(item, snap, steps)


def qa_checks(ctx: TaskContext, *, key: str, snapshots: Output,
              forecasts: Mapping[str, Output], ensembles: Output) -> Output:
    """Every forecast of the run: finite, non-negative, plausible (below ``[qa]
    max_forecast_factor`` times the largest count observed at its level), steps 1..36 from the
    last observed month, one row per unit of that month and step. Failures block
    publication."""
    steps = ctx.settings.partitions.steps
    factor = ctx.settings.qa.max_forecast_factor
    checks = []
    alerts = []
    observed: dict[tuple[str, str], float] = {}
    for item in _items(forecasts, ensembles):
        where = (item["level"], item["target"])
        if where not in observed:
            _, panel = _snapshot(ctx, snapshots, item["level"])
            observed[where] = largest_observed(panel, item["target"])
        ceiling = plausibility_ceiling(observed[where], factor)
        problems = _qa_one(iter_forecast(ctx.layout.resolve(item["path"])),  # by row group
                           item, snapshots[item["level"]], steps, ceiling)
        checks.append({"model": item["model"], "passed": not problems, "problems": problems})
        if problems:
            alerts.append(_alert_dict(Alert(
                source="qa", severity=Severity.ERROR, offender=item["model"],
                message=f"QA failed for {item['model']}: {'; '.join(problems)}"),
                ctx.environment))
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "alerts": alerts}


def store_predictions(ctx: TaskContext, *, key: str, snapshots: Output,
                      forecasts: Mapping[str, Output], ensembles: Output, qa: Output) -> Output:
    """Write every forecast into the prediction store, run ``m<last month>-<key>`` per level
    (read and written row group by row group, with the stored quantiles of a sample
    forecast)."""
    store = ctx.predictions
    runs = {lvl: f"m{snap['last_month']}-{key[:12]}" for lvl, snap in snapshots.items()}
    partitions = []
    for item in _items(forecasts, ensembles):
        path = ctx.layout.resolve(item["path"])
        meta = read_forecast_metadata(path)
        info, _ = store.write_chunks(iter_forecast(path), rows=int(meta["rows"]),
                                     level=item["level"], run=runs[item["level"]],
                                     model=item["model"], metadata={
                                         **meta, "environment": ctx.environment,
                                         "snapshot_sha256": snapshots[item["level"]]["sha256"],
                                         "qa_passed": qa["passed"]})
        partitions.append({"model": item["model"], "level": item["level"],
                           "status": item["status"], "kind": item["kind"],
                           "target": item["target"], "run": runs[item["level"]],
                           "path": info.path.relative_to(ctx.state).as_posix()})
    return {"root": "predictions", "runs": runs, "partitions": partitions}


def publish(ctx: TaskContext, *, key: str, snapshots: Output, stored: Output, qa: Output,
            drift: Mapping[str, Output], output_drift: Output | None = None,
            release: Output | None = None) -> Output:
    """Move the "published" pointer of each level and target to this run's deployed
    forecasts (deployed ensembles first, then deployed models), only when
    :func:`ewspipe.flows.publish_policy.decide_publish` allows it (QA, detectors, freshness,
    a clean release that is exactly what runs, and this run made by it). A refusal is an
    output, not an error: the run records it as ``not_published`` and alerts.
    ``output_drift`` is an input for its order only: publish runs once monitoring has."""
    decision = decide_publish(
        ctx.settings, environment=ctx.environment, run_release=release,
        qa_passed=bool(qa["passed"]),
        qa_failed=[c["model"] for c in qa["checks"] if not c["passed"]],
        selftest_failed=[d["level"] for d in drift.values()
                         if d.get("selftest") is not None and not d["selftest"]["passed"]],
        snapshot_ids=[s["id"] for s in snapshots.values()], catalog=ctx.catalog())
    if not decision.allowed:
        return {"published": [], "skipped": decision.message(), "reasons": decision.reasons,
                "checked_at": decision.checked_at, "guards": decision.guards}
    assert release is not None  # an allowed decision always has the run's release
    db = open_state_db(ctx.settings.run.state_url, ctx.state)
    pointers = PublishedPointers(ctx.layout.published, db, environment=ctx.environment)
    moves = deployed_pointers(
        stored["partitions"], last_month={lvl: s["last_month"] for lvl, s in snapshots.items()},
        release=release, publish_id=f"{key[:12]}-{uuid.uuid4().hex[:8]}",
        published_at=_now(), published_by={"via": "ewspipe run"})
    moved = [pointers.move(p) for p in moves]
    if not moved:
        return {"published": [], "skipped": "refusing to publish: no deployed model or "
                "ensemble", "reasons": ["no deployed model or ensemble"],
                "checked_at": decision.checked_at, "guards": decision.guards}
    return {"published": moved, "skipped": None, "reasons": [],
            "checked_at": decision.checked_at, "guards": decision.guards}


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary_stats(ctx: TaskContext, item: Output) -> dict[str, Any]:
    forecast, _ = read_forecast(ctx.layout.resolve(item["path"]), samples=False)
    first = forecast.frame["step"].to_numpy() == 1
    total = float(forecast.point[first].sum())
    return {"model": item["model"], "level": item["level"], "kind": item["kind"],
            "status": item["status"], "rows": item["rows"],
            "step1_total": round(total, 3) if math.isfinite(total) else None}


def write_report(ctx: TaskContext, *, key: str, snapshots: Output, drift: Mapping[str, Output],
                 forecasts: Mapping[str, Output], ensembles: Output, qa: Output,
                 stored: Output, published: Output | None = None) -> Output:
    """``reports/<key>/report.json`` and ``report.md``: data, drift, forecasts, QA, store."""
    doc = {
        "environment": ctx.environment, "snapshots": snapshots,
        "drift": {d["level"]: {k: v for k, v in d.items() if k != "alerts"}
                  for d in drift.values()},
        "forecasts": [_summary_stats(ctx, item) for item in _items(forecasts, ensembles)],
        "qa": qa, "store": stored, "published": published,
    }
    lines = [f"# Monthly run ({ctx.environment})", ""]
    for lvl, snap in sorted(snapshots.items()):
        lines.append(f"- {lvl}: snapshot {snap['id']}, months {snap['first_month']}.."
                     f"{snap['last_month']}, run {stored['runs'][lvl]}")
    lines += ["", "| model | level | kind | status | rows | step-1 total |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {f['model']} | {f['level']} | {f['kind']} | {f['status']} | {f['rows']} | "
              f"{f['step1_total']} |" for f in doc["forecasts"]]
    lines += ["", f"QA: {'passed' if qa['passed'] else 'FAILED'}"]
    final = ctx.layout.reports / key[:16]
    tmp = make_temp_dir(final)
    try:
        (tmp / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _commit_dir(tmp, final)
    return {"path": f"reports/{key[:16]}/report.md",
            "json": f"reports/{key[:16]}/report.json"}


def route_alerts(ctx: TaskContext, *, key: str, drift: Mapping[str, Output], ensembles: Output,
                 qa: Output, report: Output, published: Output | None = None,
                 deliver: bool = True) -> Output:
    """Deliver the run's alerts (drift, ensembles, QA, a refused publication) through the
    ``[alerts]`` sinks, once: a re-run reuses this task and sends nothing again (a refused
    publication is checked anew on each run, so each refusal alerts). ``deliver=False``
    (``run --no-alerts``): counted, not delivered."""
    raw = [*(a for d in drift.values() for a in d["alerts"]), *ensembles["alerts"],
           *qa["alerts"]]
    if published is not None and not published.get("published"):
        raw.append(_alert_dict(Alert(
            source="publish", severity=Severity.ERROR, offender=ctx.environment,
            message=f"{ctx.environment} run did not publish: "
                    + "; ".join(published.get("reasons") or [str(published.get("skipped"))])),
            ctx.environment))
    run_id = f"run-{key[:12]}"
    alerts = [Alert.from_dict({**a, "run_id": run_id}) for a in raw]
    if deliver:
        with build_router(ctx.settings.alerts, ctx.state) as router:
            delivery = router.route(alerts).to_dict()
    else:
        delivery = {"delivered": False, "reason": "not asked to deliver (--no-alerts)"}
    by_source: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for a in alerts:
        by_source[a.source] = by_source.get(a.source, 0) + 1
        by_severity[a.severity.value] = by_severity.get(a.severity.value, 0) + 1
    return {"count": len(alerts), "by_source": by_source, "by_severity": by_severity,
            "top": [{"severity": a.severity.value, "source": a.source, "message": a.message}
                    for a in alerts[:10]],
            "delivery": delivery, "log": "alerts.jsonl"}
