"""Evaluation and forecast runs of named models, with artifacts, predictions and metrics.

Evaluation follows the rolling-origin protocol: each model is fitted once on the partition's
training window (months <= train end) and predicts steps 1..36 from each of the 13 origins
using only data up to that origin (DOMAIN.md section 2; the peers do the same). A forecast
run fits on everything up to the last observed month L and predicts L+1..L+36 for the units
present in L. Fitted models are stored as artifacts keyed by their inputs and reused when
nothing changed.

Every model's and ensemble's forecast is held against the monthly QA's plausibility ceiling
(``[qa] max_forecast_factor`` x the largest count of its target observed at its level,
:mod:`ewspipe.evaluation.plausibility`): an offender is recorded in the run record
(``implausible``, and ``plausibility`` on its model entry) and raises an ERROR alert through
the ``[alerts]`` sinks. The run itself completes and is stored: the staging performance gate
fails a candidate with an offender.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.catalog import Catalog, ModelSpec
from ewspipe.errors import InputError, SpecError
from ewspipe.evaluation.plausibility import (
    RULE,
    check_forecast,
    largest_observed,
    plausibility_ceiling,
)
from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.features.build import build_design
from ewspipe.features.design import Design
from ewspipe.flows.ensemble_run import plan_run, run_ensembles
from ewspipe.flows.executors import ExecutorSpec, require_in_process
from ewspipe.flows.output_drift import after_forecast_run
from ewspipe.models import registry
from ewspipe.models.base import BaseForecaster
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.partitions import Partition, RunType
from ewspipe.provenance import code_version
from ewspipe.settings import Settings
from ewspipe.store.artifacts import ArtifactStore
from ewspipe.store.predictions import write_forecast
from ewspipe.store.runs import RunStore, RunWriter
from ewspipe.store.tracking import prefetch_tracking, track_run

__all__ = [
    "POINT_METRICS",
    "SAMPLE_METRICS",
    "ModelResult",
    "RunResult",
    "evaluate_models",
    "fit_or_reuse",
    "forecast_models",
    "plausibility_alerts",
    "predict_origins",
]

POINT_METRICS = ("mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar")
SAMPLE_METRICS = ("crps", "twcrps", "mis", "coverage", "brier")


@dataclass
class ModelResult:
    model: str
    level: str
    status: str
    snapshot: str
    artifact: str
    reused: bool
    predictions: str
    rows: int
    n_samples: int
    timings: dict[str, float]
    metrics: dict[str, Any] | None = None
    kind: str = "model"  # or "ensemble" (flows.ensemble_run)
    ensemble: dict[str, Any] | None = None  # members, aggregation, reconciliation summary
    plausibility: dict[str, Any] | None = None  # the worst point above the ceiling, if any

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class RunResult:
    run_id: str
    kind: str
    run_type: str
    path: str
    models: list[ModelResult] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.record, "path": self.path, "models": [m.to_dict() for m in self.models]}


# --------------------------------------------------------------------------- selection


def _snapshots_by_level(
    store: SnapshotStore, specs: Sequence[ModelSpec], refs: Sequence[str] | None
) -> dict[str, Manifest]:
    chosen: dict[str, Manifest] = {}
    for ref in refs or ():
        manifest = store.get(ref)
        if manifest.level in chosen:
            raise InputError(f"option --snapshot: two snapshots given for level {manifest.level}")
        chosen[manifest.level] = manifest
    for spec in specs:
        if spec.level not in chosen:
            try:
                chosen[spec.level] = store.latest(spec.level)
            except InputError as exc:
                raise InputError(
                    f"model {spec.name!r} is a {spec.level} model but {exc}; or leave it out "
                    f"with --level/--model"
                ) from None
    return chosen


def model_design(
    spec: ModelSpec, panel: Panel, manifest: Manifest, *, train_last: int | None = None
) -> Design:
    """The design ``spec``'s model reads when trained up to ``train_last``: from the first
    month it reads on (``BaseForecaster.first_design_month``); all rows without train_last."""
    first = None
    if train_last is not None:
        first = registry.create(spec.algorithm, spec.hyperparameters_dict()) \
            .first_design_month(train_last)
    try:
        return build_design(panel, spec.target, list(spec.features), first_month=first)
    except SpecError as exc:
        raise SpecError(
            f"model {spec.name!r} cannot run on snapshot {manifest.id}: {exc}"
        ) from exc


def _check_coverage(spec: ModelSpec, manifest: Manifest, partition: Partition) -> None:
    last_origin = partition.rolling_origins()[-1].origin
    if manifest.last_month < last_origin or manifest.first_month > partition.train.last:
        raise InputError(
            f"snapshot {manifest.id} covers months {manifest.span}, but the "
            f"{partition.run_type.value} partition of model {spec.name!r} trains up to "
            f"{partition.train.last} and forecasts from origins up to {last_origin}; import "
            "data that covers them or choose another run type"
        )


# --------------------------------------------------------------------------- fit / predict


def fit_or_reuse(
    spec: ModelSpec,
    design: Design,
    *,
    run_type: RunType,
    train_last: int,
    snapshot: Manifest,
    artifacts: ArtifactStore,
) -> tuple[BaseForecaster, str, bool]:
    """A fitted model for these inputs: loaded (hash-verified) if stored, else trained."""
    key = artifacts.key(spec.name, run_type.value, spec.config_hash, snapshot.sha256, train_last)
    found = artifacts.find(key)
    if found is not None:
        return artifacts.load(found), found.directory, True
    model = registry.create(spec.algorithm, spec.hyperparameters_dict())
    model.fit(design, train_last=train_last)
    manifest = artifacts.save(model, key, status=spec.status, snapshot_id=snapshot.id,
                              snapshot_fetched_at=snapshot.fetched_at)
    return model, manifest.directory, False


def predict_origins(
    model: BaseForecaster, design: Design, partition: Partition
) -> Forecast:
    steps = list(range(1, partition.steps + 1))
    parts = [model.predict(design, origin=seq.origin, steps=steps)
             for seq in partition.rolling_origins()]
    return Forecast.concat(parts)


def _score(forecast: Forecast, panel: Panel, target: str) -> dict[str, Any]:
    """The run's metrics of one forecast against the panel's actuals (JSON-ready)."""
    scored = join_actuals(forecast, _actuals(panel, target))
    names_ = POINT_METRICS + (SAMPLE_METRICS if forecast.n_samples > 1 else ())
    return evaluate(scored, names_).to_dict()


def _actuals(panel: Panel, target: str) -> pd.DataFrame:
    frame = panel.frame
    return pd.DataFrame({
        TIME_COLUMN: frame[TIME_COLUMN].to_numpy(),
        panel.unit_column: frame[panel.unit_column].to_numpy(),
        "value": frame[target].to_numpy(),
    })


# --------------------------------------------------------------------------- plausibility


def _ceilings(settings: Settings, panels: dict[str, Panel],
              wanted: set[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """(level, target) -> the monthly QA's plausibility ceiling on this run's snapshot."""
    factor = settings.qa.max_forecast_factor
    return {(lvl, target): plausibility_ceiling(largest_observed(panels[lvl], target), factor)
            for lvl, target in wanted}


def plausibility_alerts(results: Sequence[ModelResult], *, run_id: str,
                        run_type: str) -> tuple[list[dict[str, Any]], list[Alert]]:
    """The run's implausible forecasts (one entry per model or ensemble, its worst row) and
    one ERROR alert for each."""
    found: list[dict[str, Any]] = []
    alerts: list[Alert] = []
    for r in results:
        if r.plausibility is None:
            continue
        item = {"model": r.model, "kind": r.kind, "level": r.level, "status": r.status,
                **r.plausibility}
        found.append(item)
        alerts.append(Alert(
            source="plausibility", severity=Severity.ERROR, offender=r.model,
            value=item["value"], threshold=item["ceiling"], run_id=run_id,
            message=(f"{r.kind} {r.model} ({run_type}): {_implausible_text(item)}"),
            details={k: item[k] for k in ("unit_column", "unit", "month_id", "origin", "step",
                                          "rows_above", "level", "status")}))
    return found, alerts


def _implausible_text(item: dict[str, Any]) -> str:
    return (f"forecast {item['value']:,.0f} for {item['unit_column']} {item['unit']}, month "
            f"{item['month_id']} (origin {item['origin']}, step {item['step']}) is above the "
            f"plausibility ceiling {item['ceiling']:,.0f} ({RULE}); {item['rows_above']:,} "
            "row(s) above it")


# --------------------------------------------------------------------------- runs


def _run(
    settings: Settings,
    catalog: Catalog,
    *,
    kind: str,
    run_type: RunType,
    names: Sequence[str] | None,
    level: str | None,
    snapshot_refs: Sequence[str] | None,
) -> RunResult:
    plan = plan_run(catalog, names, level)  # models incl. ensemble members, then ensembles
    specs = plan.models
    snapshots = SnapshotStore(settings.snapshot_dir)
    chosen = _snapshots_by_level(snapshots, specs, snapshot_refs)
    panels = {lvl: snapshots.load(m.id) for lvl, m in chosen.items()}
    artifacts = ArtifactStore(settings.artifact_dir)
    scheme = settings.partition_scheme()
    runs = RunStore(settings.runs_dir)
    writer = runs.begin(kind, run_type.value)
    results: list[ModelResult] = []
    kept: dict[str, Forecast] = {}  # member forecasts the ensembles aggregate
    started = time.time()
    # Each fitted model is predicted, written and scored by one background thread while the
    # main thread builds the next design and fits the next model: those steps run on one core,
    # and the learners' threads then have the other. The ensembles' writes queue behind them.
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ewspipe-finish")
    finishing: deque[tuple[ModelSpec, Future[tuple[Forecast, ModelResult]]]] = deque()
    writes: list[Future[Any]] = []

    def collect(*, block: bool) -> None:
        """Results of finished models, in fitting order (sorted into plan order at the end);
        a forecast no ensemble needs is let go here."""
        while finishing and (block or finishing[0][1].done()):
            spec, done = finishing.popleft()
            forecast, result = done.result()
            results.append(result)
            if spec.name in plan.needed:
                kept[spec.name] = forecast

    def partition_of(spec: ModelSpec) -> Partition:
        return scheme.partition(run_type, last_observed=chosen[spec.level].last_month
                                if run_type is RunType.FORECASTING else None)

    def timed_design(spec: ModelSpec) -> tuple[Design, float]:
        t = time.perf_counter()
        design = model_design(spec, panels[spec.level], chosen[spec.level],
                              train_last=partition_of(spec).train.last)
        return design, time.perf_counter() - t

    # Each next design is built in a thread while the current model fits; models of the
    # smaller panel (cm) go first, so a pgm design (5.4M rows) is ready when its turn comes.
    # The record lists the models in plan order whatever the order of fitting.
    order = sorted(specs, key=lambda sp: len(panels[sp.level].frame))
    ceilings = _ceilings(settings, panels, {(str(sp.level), sp.target)
                                            for sp in [*specs, *plan.ensembles]})
    designer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ewspipe-design")
    upcoming: Future[tuple[Design, float]] | None = None
    try:
        if run_type is not RunType.FORECASTING:
            for spec in specs:  # every coverage problem before any work
                _check_coverage(spec, chosen[spec.level], partition_of(spec))
        for i, spec in enumerate(order):
            manifest, panel = chosen[spec.level], panels[spec.level]
            partition = partition_of(spec)
            current = upcoming if upcoming is not None else designer.submit(timed_design, spec)
            design, built = current.result()
            upcoming = designer.submit(timed_design, order[i + 1]) if i + 1 < len(order) \
                else None
            # MLflow's import and store warm up while the learners fit (no-op after the first
            # model); not earlier: the import holds the GIL and would stall building the design
            prefetch_tracking(settings)
            t1 = time.perf_counter()
            model, artifact, reused = fit_or_reuse(
                spec, design, run_type=run_type, train_last=partition.train.last,
                snapshot=manifest, artifacts=artifacts,
            )
            t2 = time.perf_counter()
            finishing.append((spec, background.submit(
                _finish, spec, model, design, partition, panel, manifest, writer,
                run_type=run_type, artifact=artifact, reused=reused,
                timings={"features": built, "fit": t2 - t1},
                ceiling=ceilings[(str(spec.level), spec.target)],
            )))
            del design, model  # the background thread holds them until it is done
            # a failed model stops the run now, not after the other models
            _raise_first_failure([done for _, done in finishing])
            collect(block=False)
        collect(block=True)
        rank = {spec.name: i for i, spec in enumerate(specs)}
        results.sort(key=lambda r: rank[r.model])
        ensembles, alerts = run_ensembles(
            plan, kept, {r.model: r.reused for r in results}, settings=settings,
            catalog=catalog, run_type=run_type, snapshots=chosen, panels=panels, writer=writer,
            score=None if run_type is RunType.FORECASTING else _score,
            defer=lambda fn, *args, **kwargs: writes.append(background.submit(fn, *args,
                                                                               **kwargs)),
            check=lambda fc, panel, target, lvl: _plausibility(
                fc, ceilings[(str(lvl), target)]),
        )
        results += [ModelResult(**e.fields()) for e in ensembles]
        implausible, raised = plausibility_alerts(results, run_id=writer.run_id,
                                                  run_type=run_type.value)
        alerts = [*alerts, *raised]
        for done in writes:  # a failed write fails the run before anything is committed
            done.result()
        code = code_version()
        record = {
            "run_id": writer.run_id, "kind": kind, "run_type": run_type.value,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 3),
            "snapshots": {lvl: {"id": m.id, "sha256": m.sha256, "fetched_at": m.fetched_at}
                          for lvl, m in chosen.items()},
            "code": code.to_dict(),
            "partition": {lvl: _partition_dict(scheme.partition(
                run_type, last_observed=m.last_month
                if run_type is RunType.FORECASTING else None)) for lvl, m in chosen.items()},
            "models": [r.to_dict() for r in results],
            "plausibility": {"factor": settings.qa.max_forecast_factor, "rule": RULE,
                             "ceilings": {f"{lvl}/{target}": c
                                          for (lvl, target), c in sorted(ceilings.items())}},
            "implausible": implausible,
            "alerts": [a.to_dict() for a in alerts],
        }
        path = writer.commit(record)
    except BaseException:
        pending = [done for _, done in finishing] + writes
        for future in pending:
            future.cancel()
        wait(pending)  # nothing may still write into the folder abort removes
        if upcoming is not None:
            upcoming.cancel()
        writer.abort()
        raise
    finally:
        background.shutdown(wait=True)
        designer.shutdown(wait=True, cancel_futures=True)
    result = RunResult(writer.run_id, kind, run_type.value, str(path), results, record)
    # MLflow mirror of the committed run; never raises, its outcome travels with the result
    configs = {s.name: {**s.semantic_dict(), "config_hash": s.config_hash}
               for s in [*specs, *plan.ensembles]}
    result.record["tracking"] = track_run(settings, result, configs=configs).to_dict()
    if kind == "forecast":  # vs the previous month's forecasts; never raises
        drift_alerts, result.record["output_drift"] = after_forecast_run(settings, writer.run_id)
        alerts = [*alerts, *drift_alerts]
    result.record["alert_delivery"] = _deliver(settings, alerts, writer.run_id)
    return result


def _finish(
    spec: ModelSpec,
    model: BaseForecaster,
    design: Design,
    partition: Partition,
    panel: Panel,
    manifest: Manifest,
    writer: RunWriter,
    *,
    run_type: RunType,
    artifact: str,
    reused: bool,
    timings: dict[str, float],
    ceiling: float,
) -> tuple[Forecast, ModelResult]:
    """Predict every origin of a fitted model, write the forecast, hold it against the
    plausibility ``ceiling`` and, outside forecasting runs, score it and write its
    metrics."""
    t2 = time.perf_counter()
    forecast = predict_origins(model, design, partition)
    t3 = time.perf_counter()
    rel = f"predictions/{spec.name}.parquet"
    write_forecast(forecast, writer.path / rel, metadata={
        "model": spec.name, "run_type": run_type.value, "snapshot": manifest.id,
        "config_hash": spec.config_hash, "artifact": artifact, "status": spec.status,
        "code_commit": code_version().commit, "target": spec.target,
    })
    metrics = None
    if run_type is not RunType.FORECASTING:
        metrics = _score(forecast, panel, spec.target)
        writer.write_json(f"metrics/{spec.name}.json", metrics)
    t4 = time.perf_counter()
    return forecast, ModelResult(
        model=spec.name, level=spec.level, status=spec.status, snapshot=manifest.id,
        artifact=artifact, reused=reused, predictions=rel, rows=len(forecast),
        n_samples=forecast.n_samples,
        timings={**timings, "predict": t3 - t2, "evaluate": t4 - t3}, metrics=metrics,
        plausibility=_plausibility(forecast, ceiling),
    )


def _plausibility(forecast: Forecast, ceiling: float) -> dict[str, Any] | None:
    found = check_forecast(forecast, ceiling)
    return None if found is None else found.to_dict()


def _raise_first_failure(futures: Sequence[Future[Any]]) -> None:
    for done in futures:
        if done.done() and done.exception() is not None:
            done.result()


def _deliver(settings: Settings, alerts: Sequence[Alert], run_id: str) -> dict[str, Any]:
    """Send the run's alerts to the configured sinks (JSONL always); never fails the run."""
    stamped = [replace(a, run_id=run_id) for a in alerts]
    with build_router(settings.alerts, settings.state_dir) as router:
        return router.route(stamped).to_dict()


def _partition_dict(p: Partition) -> dict[str, Any]:
    origins = [s.origin for s in p.rolling_origins()]
    return {"train": [p.train.first, p.train.last], "test": [p.test.first, p.test.last],
            "origins": origins, "steps": p.steps}


def evaluate_models(
    settings: Settings,
    catalog: Catalog,
    *,
    run_type: RunType | str,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str | ExecutorSpec = "local",
) -> RunResult:
    """Rolling-origin evaluation of each model on the calibration or validation partition.

    ``executor`` is parsed like every ``--executor`` and must be ``local``: this engine is the
    in-process thread scheduler (``ewspipe run`` and sweeps take Dask executors).
    """
    require_in_process(executor, "ewspipe evaluate")
    try:
        rt = RunType(run_type)
    except ValueError:
        raise InputError(
            f"option --run-type: {run_type!r} is not a run type; use calibration or validation"
        ) from None
    if rt is RunType.FORECASTING:
        raise InputError("option --run-type: evaluation runs on calibration or validation; use "
                         "`ewspipe forecast` for the forecasting run")
    return _run(settings, catalog, kind="evaluate", run_type=rt, names=names, level=level,
                snapshot_refs=snapshot_refs)


def forecast_models(
    settings: Settings,
    catalog: Catalog,
    *,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str | ExecutorSpec = "local",
) -> RunResult:
    """Forecast the 36 months after the last observed month for the last month's units.

    ``executor`` must be ``local``, as for :func:`evaluate_models`.
    """
    require_in_process(executor, "ewspipe forecast")
    return _run(settings, catalog, kind="forecast", run_type=RunType.FORECASTING, names=names,
                level=level, snapshot_refs=snapshot_refs)
