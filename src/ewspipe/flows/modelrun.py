"""Evaluation and forecast runs of named models, with artifacts, predictions and metrics.

Evaluation follows the rolling-origin protocol: each model is fitted once on the partition's
training window (months <= train end) and predicts steps 1..36 from each of the 13 origins
using only data up to that origin (DOMAIN.md section 2; the peers do the same). A forecast
run fits on everything up to the last observed month L and predicts L+1..L+36 for the units
present in L. Fitted models are stored as artifacts keyed by their inputs and reused when
nothing changed; the artifact cache (``settings.artifact_dir``) is the monthly run's too.

Both runs are graphs on the one runner (:mod:`ewspipe.flows.runner`): per model a
``fit:<model>`` task (design, then fit or reuse) and a ``predict:<model>`` task (predict every
origin, write the forecast named by the task key below ``<state>/work/forecasts``, score it),
cached in ``<state>/tasks``; an interrupted run resumes from its finished models, on any
executor. On Dask with several workers a big prediction is split into ``predict:<model>[i/n]``
tasks that ``predict:<model>`` joins (:mod:`ewspipe.flows.predict_parts`). The driver then
runs the ensembles in memory and commits the run folder
(``predictions/<model>.parquet``, ``metrics/<model>.json``, ``run.json``) as one rename.

Every model's and ensemble's forecast is held against the monthly QA's plausibility ceiling
(``[qa] max_forecast_factor`` x the largest count of its target observed at its level,
:mod:`ewspipe.evaluation.plausibility`): an offender is recorded in the run record
(``implausible``, and ``plausibility`` on its model entry) and raises an ERROR alert through
the ``[alerts]`` sinks. The run itself completes and is stored: the staging performance gate
fails a candidate with an offender.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.catalog import Catalog, ModelSpec
from ewspipe.errors import InputError, IntegrityError, SpecError, StoreError
from ewspipe.evaluation.plausibility import (
    RULE,
    Implausible,
    check_forecast,
    combine,
    largest_observed,
    plausibility_ceiling,
)
from ewspipe.evaluation.streamed import iter_chunks, score_streamed
from ewspipe.features.build import build_design
from ewspipe.features.design import Design
from ewspipe.flows import predict_parts
from ewspipe.flows.ensemble_run import RunPlan, plan_run, run_ensembles
from ewspipe.flows.executors import ExecutorSpec, make_executor, parse_executor
from ewspipe.flows.graph import TRACE, Graph, Task, digest
from ewspipe.flows.naming import alert_unit
from ewspipe.flows.output_drift import after_forecast_run
from ewspipe.flows.runner import (
    EnvironmentLock,
    Progress,
    TaskCache,
    TaskRecord,
    remove_stale_temps_below,
    require_writable,
    run_graph,
)
from ewspipe.geography import UnitNames, unit_names
from ewspipe.memory import process_budget, resident_bytes
from ewspipe.models import registry
from ewspipe.models.base import BaseForecaster
from ewspipe.models.chunking import (
    Block,
    plan_chunks,
    planned_rows,
    predict_chunks,
    rows_per_chunk,
)
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.panel.snapshot import DATA_FILE, Manifest, SnapshotStore
from ewspipe.partitions import Partition, RunType
from ewspipe.progress import current as current_reporter
from ewspipe.provenance import code_fingerprint, code_version
from ewspipe.settings import Settings
from ewspipe.store.artifacts import ArtifactStore
from ewspipe.store.predictions import (
    forecast_writer,
    iter_forecast,
    read_forecast,
    read_forecast_metadata,
)
from ewspipe.store.runs import RunStore, RunWriter
from ewspipe.store.tracking import prefetch_tracking, track_run

__all__ = [
    "POINT_METRICS",
    "PREFETCH_MAX_BYTES",
    "SAMPLE_METRICS",
    "ModelResult",
    "ModelRunContext",
    "RunResult",
    "build_model_graph",
    "check_coverage",
    "design_bytes",
    "evaluate_models",
    "evaluate_window",
    "fit_model",
    "fit_or_reuse",
    "fitted_artifact",
    "forecast_metadata",
    "forecast_models",
    "json_ready",
    "load_snapshot",
    "parse_run_type",
    "partition_for",
    "partition_of",
    "plausibility_alerts",
    "predict_model",
    "predict_origins",
    "require_snapshot_data",
    "score_chunks",
    "spare_panels",
    "task_budget",
    "write_predictions",
]

Output = dict[str, Any]

POINT_METRICS = ("mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar")
SAMPLE_METRICS = ("crps", "twcrps", "mis", "coverage", "coverage_50", "coverage_90",
                  "pit_coverage_50", "pit_coverage_90", "brier")


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
    tasks: list[TaskRecord] = field(default_factory=list)  # ran or reused (the task cache)

    def to_dict(self) -> dict[str, Any]:
        return {**self.record, "path": self.path, "models": [m.to_dict() for m in self.models],
                "tasks": [t.to_dict() for t in self.tasks]}


# --------------------------------------------------------------------------- selection


def _snapshots_by_level(
    store: SnapshotStore, specs: Sequence[ModelSpec], refs: Sequence[str] | None
) -> dict[str, Manifest]:
    chosen: dict[str, Manifest] = {}
    for ref in refs or ():
        manifest = store.get(ref)
        if manifest.level in chosen:
            raise InputError(f"two snapshots given for level {manifest.level}; give one "
                             "per level")
        chosen[manifest.level] = manifest
    for spec in specs:
        if spec.level not in chosen:
            try:
                chosen[spec.level] = store.latest(spec.level)
            except InputError as exc:
                raise InputError(
                    f"model {spec.name!r} is a {spec.level} model but {exc}; or leave it out "
                    "of the run (choose the level or the models)"
                ) from None
    for manifest in chosen.values():
        require_snapshot_data(store, manifest)
    return chosen


def model_design(
    spec: ModelSpec, panel: Panel, manifest: Manifest, *, train_last: int | None = None,
    predict_from: int | None = None,
) -> Design:
    """The design ``spec``'s model reads when trained up to ``train_last``: from the first
    month it reads on (``BaseForecaster.first_design_month``); all rows without train_last.
    With ``predict_from`` (an origin), only what predicting from it reads
    (``first_predict_month``), for a model already fitted: no training rows are checked."""
    first = None
    model = registry.create(spec.algorithm, spec.hyperparameters_dict())
    if predict_from is not None:
        first, train_last = model.first_predict_month(predict_from), None
    elif train_last is not None:
        first = model.first_design_month(train_last)
    try:
        return build_design(panel, spec.target, list(spec.features), first_month=first,
                            train_last=train_last)
    except SpecError as exc:
        raise SpecError(
            f"model {spec.name!r} cannot run on snapshot {manifest.id}: {exc}"
        ) from exc


def design_bytes(spec: ModelSpec, panel: Panel, *, train_last: int) -> int:
    """The bytes of the feature matrix :func:`model_design` builds for ``spec`` (an upper
    bound: a feature written twice is one column), without building it."""
    first = registry.create(spec.algorithm, spec.hyperparameters_dict()) \
        .first_design_month(train_last)
    months = panel.frame[TIME_COLUMN]
    start = 0 if first is None else int(months.searchsorted(first))
    return (len(months) - start) * len(spec.features) * 8  # float64


def check_coverage(name: str, partition: Partition, *, first_month: int, last_month: int,
                   data: str, fix: str) -> None:
    """Refuse data (``data`` names it, months ``first_month..last_month``) that does not cover
    the training window and the origins of model ``name``'s partition; ``fix`` says how."""
    last_origin = partition.rolling_origins()[-1].origin
    if last_month < last_origin or first_month > partition.train.last:
        raise InputError(
            f"{data} covers months {first_month}..{last_month}, but the "
            f"{partition.run_type.value} partition of model {name!r} trains up to "
            f"{partition.train.last} and forecasts from origins up to {last_origin}; {fix}"
        )


def _check_coverage(spec: ModelSpec, manifest: Manifest, partition: Partition) -> None:
    check_coverage(spec.name, partition, first_month=manifest.first_month,
                   last_month=manifest.last_month, data=f"snapshot {manifest.id}",
                   fix="import data that covers them or choose another run type")


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


def fit_predict(spec: ModelSpec, panel: Panel, manifest: Manifest, partition: Partition
                ) -> Forecast:
    """Fit on the partition's training window and predict every origin, in memory (nothing
    stored, no cache): the one path of ``ewspipe.backtest`` and ``models stack``."""
    design = model_design(spec, panel, manifest, train_last=partition.train.last)
    model = registry.create(spec.algorithm, spec.hyperparameters_dict())
    model.fit(design, train_last=partition.train.last)  # type: ignore[attr-defined]  # subclasses
    return predict_origins(model, design, partition)


def predict_origins(
    model: BaseForecaster, design: Design, partition: Partition, *, label: str = ""
) -> Forecast:
    """Steps 1..36 from every origin of ``partition``; with a ``label``, each origin done is
    reported to :func:`ewspipe.progress.current` (minutes per model on the pgm grid)."""
    steps = list(range(1, partition.steps + 1))
    origins = partition.rolling_origins()
    report = current_reporter()
    parts = []
    for i, seq in enumerate(origins, start=1):
        parts.append(model.predict(design, origin=seq.origin, steps=steps))
        if label:
            report.step(label, i, len(origins), f"origin {seq.origin}")
    return Forecast.concat(parts)


def _score(forecast: Forecast, panel: Panel, target: str) -> dict[str, Any]:
    """The run's metrics of one forecast against the panel's actuals (JSON-ready)."""
    return score_chunks(iter_chunks(forecast), panel, target)


def score_chunks(chunks: Iterable[Forecast], panel: Panel, target: str) -> dict[str, Any]:
    """The run's metrics of a forecast given chunk by chunk (whole rows in (origin, step,
    unit) order), JSON-ready: one pass, the draws never all in memory, and the very numbers
    of scoring the whole forecast at once."""
    rest = iter(chunks)
    first = next(rest, None)
    if first is None:
        raise InputError("forecast has no rows: nothing to score")
    names_ = POINT_METRICS + (SAMPLE_METRICS if first.n_samples > 1 else ())
    return score_streamed(chain([first], rest), _actuals(panel, target), names_).to_dict()


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


def plausibility_alerts(results: Sequence[ModelResult], *, run_id: str, run_type: str,
                        names: Mapping[str, UnitNames] | None = None,
                        ) -> tuple[list[dict[str, Any]], list[Alert]]:
    """The run's implausible forecasts (one entry per model or ensemble, its worst row) and
    one ERROR alert for each, naming the unit with ``names`` (per level) when given."""
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
            message=(f"{r.kind} {r.model} ({run_type}): "
                     f"{_implausible_text(item, (names or {}).get(r.level))}"),
            details={k: item[k] for k in ("unit_column", "unit", "month_id", "origin", "step",
                                          "rows_above", "level", "status")}))
    return found, alerts


def _implausible_text(item: dict[str, Any], names: UnitNames | None = None) -> str:
    who = alert_unit(names, item["unit"]) or f"{item['unit_column']} {item['unit']}"
    return (f"forecast {item['value']:,.0f} for {who}, month "
            f"{item['month_id']} (origin {item['origin']}, step {item['step']}) is above the "
            f"plausibility ceiling {item['ceiling']:,.0f} ({RULE}); {item['rows_above']:,} "
            "row(s) above it")


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class ModelRunContext:
    """What the tasks of an evaluation or forecast run read: the settings (snapshots in
    ``settings.snapshot_dir``, artifacts in ``settings.artifact_dir``, shared with the monthly
    run), the state folder their files go below and the run's model definitions.
    ``in_process``: fitted models and designs are handed from the fit task to the predict
    task in memory (else the predict task loads the artifact and rebuilds the design)."""

    settings: Settings
    specs: dict[str, ModelSpec]
    in_process: bool = True
    # (model, snapshot id) in fitting order: in-process, a fit builds the next one's design
    # meanwhile (a cached next fit leaves it unused; the run drops it at the end)
    order: tuple[tuple[str, str], ...] = ()
    # models whose forecasts the ensembles aggregate: in-process, handed over in memory
    keep: frozenset[str] = frozenset()
    # a backtest run's window (``Partition.window``); None for the other run types
    window: str | None = None

    @property
    def state(self) -> Path:
        return self.settings.state_dir

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifact_dir,
                             allow_pickle=self.settings.models.allow_pickle)

    def spec(self, model: str, config_hash: str) -> ModelSpec:
        spec = self.specs.get(model)
        if spec is None or spec.config_hash != config_hash:  # pragma: no cover - a bug
            raise InputError(f"model {model!r}: not the definition the run was planned with")
        return spec


def require_snapshot_data(store: SnapshotStore, manifest: Manifest) -> None:
    """A snapshot whose data file was deleted by hand is refused, naming it and the fix
    (before anything runs on it, rather than a traceback wherever it is first read)."""
    folder = store.root / manifest.id
    if not (folder / DATA_FILE).is_file():
        raise IntegrityError(
            f"snapshot {manifest.id}: its data file {folder / DATA_FILE} is missing; "
            f"re-import the {manifest.level} data (`ewspipe data import panel FILE --level "
            f"{manifest.level}`), or delete the folder {folder} so that runs use the "
            "previous snapshot")


@functools.lru_cache(maxsize=4)
def load_snapshot(snapshot_dir: str, snapshot_id: str) -> tuple[Manifest, Panel]:
    """A snapshot and its panel, once per process (tasks on one worker share it)."""
    store = SnapshotStore(Path(snapshot_dir))
    manifest = store.get(snapshot_id)
    require_snapshot_data(store, manifest)
    return manifest, store.load(snapshot_id)


def task_budget(settings: Settings) -> int:
    """The memory budget of a task running here: ``[run] memory_budget``, or the limit of
    the Dask worker it runs on when lower (:func:`ewspipe.memory.process_budget`)."""
    return process_budget(settings.run.memory_budget_bytes)


def _past_half(budget: int) -> bool:
    return resident_bytes() > budget // 2


def spare_panels(budget: int) -> bool:
    """Drop the cached panels (:func:`load_snapshot`) once a design is built, when the
    process holds more than half of its memory ``budget``: fitting and predicting read only
    the design, and a later task reloads a panel in about a second (the global pgm panel,
    1.3 GB). Tasks that still hold a panel keep theirs. Returns whether it dropped them."""
    if not _past_half(budget):
        return False
    load_snapshot.cache_clear()
    return True


# fit task key -> (design, fitted model), from fit_model to predict_model in one process
_HANDOFF: dict[str, tuple[Design, BaseForecaster]] = {}
_HANDOFF_LOCK = threading.Lock()
# (model, config hash, snapshot id, train end) -> the design being built ahead of its fit
_PREFETCHED: dict[tuple[str, str, str, int], Future[tuple[Design, float]]] = {}
# predict task key -> its forecast, for the ensembles (in-process; else read from its file)
_KEPT: dict[str, Forecast] = {}
_DESIGNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ewspipe-design")
#: A design larger than this is not built ahead, during the previous model's fit: on the
#: Africa + Middle East grid (~0.4 GB for copper_mesh) building ahead saves its seconds; on the
#: global grid (~2.1 GB, and ~4 GB at the peak of building it) it would hold two at once.
PREFETCH_MAX_BYTES = 1 << 30


def _timed_design(spec: ModelSpec, panel: Panel, manifest: Manifest,
                  train_last: int) -> tuple[Design, float]:
    t0 = time.perf_counter()
    design = model_design(spec, panel, manifest, train_last=train_last)
    return design, time.perf_counter() - t0


def _prefetch_next(ctx: ModelRunContext, model: str, run_type: str) -> None:
    """Start building the design of the model fitted after ``model`` (in-process only)."""
    names = [m for m, _ in ctx.order]
    if not ctx.in_process or model not in names or names.index(model) + 1 >= len(names):
        return
    if _past_half(task_budget(ctx.settings)):
        return  # the panels were just dropped (spare_panels): a design ahead reloads them
    nxt, sid = ctx.order[names.index(model) + 1]
    spec = ctx.specs[nxt]
    manifest, panel = load_snapshot(str(ctx.settings.snapshot_dir), sid)
    train_last = partition_of(ctx, run_type, manifest.last_month).train.last
    if design_bytes(spec, panel, train_last=train_last) > PREFETCH_MAX_BYTES:
        return  # two such designs at once (this fit's, the next one's) would double the peak
    key = (nxt, spec.config_hash, sid, train_last)
    with _HANDOFF_LOCK:
        if key not in _PREFETCHED:
            _PREFETCHED[key] = _DESIGNER.submit(_timed_design, spec, panel, manifest,
                                                train_last)


def _design(ctx: ModelRunContext, spec: ModelSpec, panel: Panel, manifest: Manifest,
            train_last: int) -> tuple[Design, float]:
    """The design built ahead for this fit, else built now; and the seconds it took."""
    with _HANDOFF_LOCK:
        ahead = _PREFETCHED.pop((spec.name, spec.config_hash, manifest.id, train_last), None)
    if ahead is not None:
        return ahead.result()
    return _timed_design(spec, panel, manifest, train_last)


def _drop_prefetched() -> None:
    with _HANDOFF_LOCK:
        _HANDOFF.clear()
        _KEPT.clear()
        ahead = list(_PREFETCHED.values())
        _PREFETCHED.clear()
    for future in ahead:
        future.cancel()
    wait_futures(ahead)  # nothing still builds once the run is over (a failure is not ours)


def partition_of(ctx: ModelRunContext, run_type: str, last_month: int) -> Partition:
    rt = RunType(run_type)
    return partition_for(ctx.settings, rt, last_month=last_month, window=ctx.window)


def partition_for(settings: Settings, run_type: RunType, *, last_month: int,
                  window: str | None = None) -> Partition:
    """The partition of a run type; a backtest's is that of its window (by label)."""
    scheme = settings.partition_scheme()
    if run_type is RunType.BACKTEST:
        found = [p for p in scheme.backtest() if p.window == window]
        if not found:  # pragma: no cover - a bug, or settings changed mid-run
            raise InputError(f"no backtest window {window!r} in [partitions.backtest]")
        return found[0]
    return scheme.partition(
        run_type, last_observed=last_month if run_type is RunType.FORECASTING else None)


def _artifact_run_type(settings: Settings, part: Partition) -> RunType:
    """The run type a fitted model is stored under: a backtest window trained exactly like
    calibration (the last default window) shares calibration's fitted models, both ways."""
    if part.run_type is RunType.BACKTEST:
        calibration = settings.partition_scheme().partition(RunType.CALIBRATION)
        if calibration.train == part.train:
            return RunType.CALIBRATION
    return part.run_type


def _check_partition(partition: Partition, expected: dict[str, Any], model: str) -> None:
    if _partition_dict(partition) != expected:  # pragma: no cover - settings changed mid-run
        raise InputError(f"model {model!r}: the partition changed while the run was going")


def fit_model(ctx: ModelRunContext, *, key: str, model: str, config_hash: str,
              snapshot: dict[str, Any], run_type: str, partition: dict[str, Any]) -> Output:
    """Build the model's design and fit it, or reuse its stored artifact (same key as the
    monthly run's ``train`` task: a model fitted by one is reused by the other)."""
    spec = ctx.spec(model, config_hash)
    manifest, panel = load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = partition_of(ctx, run_type, manifest.last_month)
    _check_partition(part, partition, model)
    design, built = _design(ctx, spec, panel, manifest, part.train.last)
    del panel
    spare_panels(task_budget(ctx.settings))
    _prefetch_next(ctx, model, run_type)
    # MLflow's import and store warm up while the learners fit (no-op after the first
    # model); not earlier: the import holds the GIL and would stall building the design
    prefetch_tracking(ctx.settings)
    artifacts = ctx.artifacts
    fitted_as = _artifact_run_type(ctx.settings, part)
    t1 = time.perf_counter()
    fitted, directory, reused = fit_or_reuse(
        spec, design, run_type=fitted_as, train_last=part.train.last, snapshot=manifest,
        artifacts=artifacts)
    t2 = time.perf_counter()
    akey = artifacts.key(spec.name, fitted_as.value, spec.config_hash, manifest.sha256,
                         part.train.last)
    if ctx.in_process:
        with _HANDOFF_LOCK:
            _HANDOFF[akey.digest] = (design, fitted)
    # the artifact's folder carries its training time: a trace, so that the predict task's
    # key is the same on every executor and machine (the digest names the artifact)
    trace: Output = {"reused": reused, "features": built, "fit": t2 - t1,
                     "artifact": directory}
    where = _below(ctx.state, artifacts.root / directory)
    if where is not None:  # a deleted artifact makes the cached task stale
        trace["path"] = where
    return {"model": model, "run_type": run_type, "artifact_key": akey.digest,
            "artifact_run_type": fitted_as.value, TRACE: trace}


def check_fitted(ctx: ModelRunContext, output: Output) -> bool:
    """Before a cached fit is reused: its artifact is still stored (False: fit again, the
    key says what) and its files still match their sha256 (IntegrityError naming it
    otherwise, as loading it would: a tampered artifact is refused, never refitted over)."""
    spec = ctx.specs.get(output.get("model")) if isinstance(output, dict) else None
    # the run type the artifact is stored under (records before the backtest: the task's)
    run_type = output.get("artifact_run_type", output.get("run_type")) \
        if isinstance(output, dict) else None
    digest = output.get("artifact_key") if isinstance(output, dict) else None
    if spec is None or not isinstance(run_type, str) or not isinstance(digest, str):
        return False
    found = ctx.artifacts.find_digest(spec.name, run_type, digest)
    if found is None:
        return False
    ctx.artifacts.verify(found)
    return True


def _below(root: Path, path: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def predict_model(ctx: ModelRunContext, *, key: str, fitted: Output, model: str,
                  config_hash: str, snapshot: dict[str, Any], run_type: str,
                  partition: dict[str, Any], ceiling: float) -> Output:
    """Predict every origin with the fitted model, write the forecast (a file named by the
    task key), hold it against the plausibility ``ceiling`` and, outside forecasting runs,
    score it."""
    spec = ctx.spec(model, config_hash)
    manifest, panel = load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = partition_of(ctx, run_type, manifest.last_month)
    with _HANDOFF_LOCK:
        handed = _HANDOFF.pop(fitted["artifact_key"], None)
    if handed is not None:
        design, fitted_model = handed
    else:  # another process fitted it, or the fit was reused from the task cache
        fitted_model = fitted_artifact(ctx, spec, fitted, manifest, part)
        design = model_design(spec, panel, manifest, train_last=part.train.last)
    t2 = time.perf_counter()
    rel = f"work/forecasts/{model}/{key[:16]}.parquet"
    path = ctx.settings.layout.resolve(rel)
    forecast, rows, n_samples, implausible = write_predictions(
        fitted_model, design, part, path, budget=task_budget(ctx.settings),
        label=f"predict {model}", ceiling=ceiling,
        metadata=forecast_metadata(spec, fitted, manifest, run_type))
    del design, fitted_model
    t3 = time.perf_counter()
    metrics = None
    if part.run_type is not RunType.FORECASTING:
        # a forecast of several chunks is scored as it was written: row group by row
        # group, so its draws are never all in memory (a 13-origin pgm evaluation at S = 1,000)
        chunks = iter_chunks(forecast) if forecast is not None else iter_forecast(path)
        metrics = json_ready(score_chunks(chunks, panel, spec.target))
    t4 = time.perf_counter()
    if ctx.in_process and model in ctx.keep and forecast is not None:
        with _HANDOFF_LOCK:
            _KEPT[key] = forecast
    return {"model": model, "path": rel, "rows": rows, "n_samples": n_samples,
            "metrics": metrics,
            "plausibility": None if implausible is None else implausible.to_dict(),
            TRACE: {"predict": t3 - t2, "evaluate": t4 - t3}}


# --------------------------------------------------------------------------- split
# a big prediction on several Dask workers (ewspipe.flows.predict_parts plans the parts)


def _part_blocks(value: Sequence[Sequence[Any]]) -> list[Block]:
    return [(int(o), tuple(int(s) for s in steps)) for o, steps in value]


def predict_part(ctx: ModelRunContext, *, key: str, fitted: Output, model: str,
                 config_hash: str, snapshot: dict[str, Any], run_type: str,
                 partition: dict[str, Any], blocks: list[list[Any]]) -> Output:
    """Predict one part's (origin, steps) ``blocks`` with the fitted model into a file of its
    own (named by the task key), in chunks within the memory budget."""
    t0 = time.perf_counter()
    spec = ctx.spec(model, config_hash)
    manifest, panel = load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = partition_of(ctx, run_type, manifest.last_month)
    fitted_model = fitted_artifact(ctx, spec, fitted, manifest, part)
    wanted = _part_blocks(blocks)
    design = model_design(spec, panel, manifest, predict_from=wanted[0][0])
    budget = task_budget(ctx.settings)
    del panel
    spare_panels(budget)
    rel = f"work/forecasts/{model}/parts/{key[:16]}.parquet"
    _, rows, n_samples, _ = write_predictions(
        fitted_model, design, part, ctx.settings.layout.resolve(rel), budget=budget,
        blocks=wanted, metadata=forecast_metadata(spec, fitted, manifest, run_type),
        compression="lz4")  # read once, by the join
    return {"model": model, "part": rel, "rows": rows, "n_samples": n_samples,
            "blocks": blocks, TRACE: {"predict": time.perf_counter() - t0}}


def join_parts(ctx: ModelRunContext, *, key: str, fitted: Output,
               parts: Mapping[str, Output], order: list[str], model: str, config_hash: str,
               snapshot: dict[str, Any], run_type: str, partition: dict[str, Any],
               ceiling: float) -> Output:
    """The parts, in order, as the model's one forecast file (named by the task key), held
    against the plausibility ``ceiling`` and, outside forecasting runs, scored: the output of
    an unsplit ``predict_model``. The part files are removed once it is in place."""
    t0 = time.perf_counter()
    spec = ctx.spec(model, config_hash)
    manifest, panel = load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = partition_of(ctx, run_type, manifest.last_month)
    ordered = [parts[name] for name in order]
    layout = ctx.settings.layout
    rows = sum(int(p["rows"]) for p in ordered)
    rel = f"work/forecasts/{model}/{key[:16]}.parquet"
    found: list[Implausible | None] = [None]

    # three chunks alive at once (read ahead, scored, written behind), within the budget
    batch = rows_per_chunk(max(int(p["n_samples"]) for p in ordered),
                           task_budget(ctx.settings), reserved=resident_bytes(),
                           alive=3)

    def chunks() -> Iterator[Forecast]:
        for p in ordered:
            path = layout.resolve(p["part"])
            yield from (iter_forecast(path, rows=batch) if _part_intact(path, int(p["rows"]))
                        else _predict_again(ctx, spec, fitted, manifest, part, p["blocks"]))

    with forecast_writer(layout.resolve(rel), rows=rows,
                         metadata=forecast_metadata(spec, fitted, manifest, run_type)) as out:
        def written() -> Iterator[Forecast]:
            for chunk in predict_parts.pipelined(chunks(), out.write):
                found[0] = combine(found[0], check_forecast(chunk, ceiling))
                yield chunk

        metrics = None
        if part.run_type is not RunType.FORECASTING:
            metrics = json_ready(score_chunks(written(), panel, spec.target))
        else:
            for _ in written():
                pass
        n_samples = int(out.n_samples or 1)
    for p in ordered:  # stored once: the joined file holds every part's rows
        layout.resolve(p["part"]).unlink(missing_ok=True)
    predict = sum(float(p.get(TRACE, {}).get("predict", 0.0)) for p in ordered)
    return {"model": model, "path": rel, "rows": rows, "n_samples": n_samples,
            "metrics": metrics,
            "plausibility": None if found[0] is None else found[0].to_dict(),
            TRACE: {"predict": predict, "evaluate": time.perf_counter() - t0,
                    "parts": len(ordered)}}


def _part_intact(path: Path, rows: int) -> bool:
    """Whether a part file can be joined: there, a readable forecast file of its ``rows``
    (a damaged one is predicted again, as a missing one is, instead of failing every run)."""
    try:
        read_forecast_metadata(path)
        with pq.ParquetFile(path) as parquet:
            return bool(parquet.metadata.num_rows == rows)
    except (OSError, StoreError, pa.ArrowException, ValueError):
        return False


def _predict_again(ctx: ModelRunContext, spec: ModelSpec, fitted: Output,
                   manifest: Manifest, part: Partition, blocks: list[list[Any]],
                   ) -> Iterator[Forecast]:
    """A part whose file is gone (removed by an earlier join whose own file was then lost):
    its rows again, from the fitted artifact."""
    fitted_model = fitted_artifact(ctx, spec, fitted, manifest, part)
    wanted = _part_blocks(blocks)
    _, panel = load_snapshot(str(ctx.settings.snapshot_dir), manifest.id)
    design = model_design(spec, panel, manifest, predict_from=wanted[0][0])
    budget = task_budget(ctx.settings) // 3  # three chunks alive in the join
    plan = plan_chunks(fitted_model, design, part, budget=budget, held=resident_bytes(),
                       blocks=wanted)
    yield from predict_chunks(fitted_model, design, part, budget=budget, chunks=plan)


def fitted_artifact(ctx: ModelRunContext, spec: ModelSpec, fitted: Output, manifest: Manifest,
                    part: Partition) -> BaseForecaster:
    """The model the ``fit:`` task output ``fitted`` names, loaded from the artifact store;
    StoreError when it is no longer there."""
    artifacts = ctx.artifacts
    found = artifacts.find(artifacts.key(
        spec.name, _artifact_run_type(ctx.settings, part).value, spec.config_hash,
        manifest.sha256, part.train.last))
    if found is None or found.digest != fitted["artifact_key"]:
        raise StoreError(f"model {spec.name!r}: its fitted artifact "
                         f"({fitted['artifact_key'][:16]}) is missing from "
                         f"{artifacts.root}; run again to refit it")
    return artifacts.load(found)


def forecast_metadata(spec: ModelSpec, fitted: Output, manifest: Manifest,
                      run_type: str) -> dict[str, Any]:
    """What an evaluation's or forecast's forecast file records about how it was made."""
    return {"model": spec.name, "run_type": run_type, "snapshot": manifest.id,
            "config_hash": spec.config_hash, "artifact": fitted[TRACE]["artifact"],
            "status": spec.status, "code_commit": code_version().commit,
            "target": spec.target}


def write_predictions(
    model: BaseForecaster, design: Design, partition: Partition, path: Path, *,
    budget: int, metadata: dict[str, Any], label: str = "", ceiling: float | None = None,
    blocks: Sequence[Block] | None = None, compression: str | None = None,
) -> tuple[Forecast | None, int, int, Implausible | None]:
    """Predict every origin of ``partition`` (``blocks``: only these (origin, steps) blocks,
    a part of it) in chunks that fit ``budget`` bytes
    (:func:`ewspipe.models.chunking.predict_chunks`), writing each to the forecast file
    ``path`` as it comes and checking its points against ``ceiling`` (when given);
    ``compression``: the file's, instead of the format's (:func:`forecast_writer`).

    Returns:
        (the forecast when it was one chunk, else None: read it back from ``path``, e.g.
        row group by row group with :func:`ewspipe.store.predictions.iter_forecast`), its
        rows, its samples per row and the plausibility finding.
    """
    plan = plan_chunks(model, design, partition, budget=budget, held=resident_bytes(),
                       blocks=blocks)
    rows = planned_rows(design, plan)
    implausible: Implausible | None = None
    whole: Forecast | None = None
    with forecast_writer(path, metadata=metadata, rows=rows, compression=compression) as out:
        for chunk in predict_chunks(model, design, partition, budget=budget, label=label,
                                    chunks=plan):
            out.write(chunk)
            if ceiling is not None:
                implausible = combine(implausible, check_forecast(chunk, ceiling))
            whole = chunk if len(plan) == 1 else None
    return whole, rows, int(out.n_samples or 1), implausible


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (what a task output holds)."""
    return json.loads(json.dumps(value, default=_json_ready))


def _json_ready(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def build_model_graph(specs: Sequence[ModelSpec], *, run_type: RunType,
                      snapshots: dict[str, Manifest], partitions: dict[str, Partition],
                      ceilings: dict[tuple[str, str], float],
                      parts: Mapping[str, int] | None = None) -> Graph:
    """``fit:<model>`` then ``predict:<model>`` for each model, in ``specs`` order (the
    runner keeps it among equal costs). Keys: model config hash, snapshot sha256, run type,
    partition, ceiling and (base key) the code; no other setting.

    ``parts``: models whose prediction is split (:mod:`ewspipe.flows.predict_parts`) into
    that many ``predict:<model>[i/n]`` tasks, which ``predict:<model>`` joins and scores."""
    tasks: list[Task] = []
    for spec in specs:
        m = snapshots[spec.level]
        params = {"model": spec.name, "config_hash": spec.config_hash,
                  "snapshot": {"id": m.id, "sha256": m.sha256}, "run_type": run_type.value,
                  "partition": _partition_dict(partitions[spec.level])}
        tasks.append(Task(f"fit:{spec.name}", fit_model, {}, params, lane="fit",
                          check=check_fitted))
        finish = {**params, "ceiling": ceilings[(str(spec.level), spec.target)]}
        n = (parts or {}).get(spec.name, 1)
        if n > 1:
            tasks += predict_parts.part_tasks(spec.name, partitions[spec.level], n, params,
                                              finish, predict=predict_part, join=join_parts)
            continue
        tasks.append(Task(f"predict:{spec.name}", predict_model, {"fitted": f"fit:{spec.name}"},
                          finish, cost=1.0, lane="finish"))
    return Graph(tasks)


def model_run_base_key() -> str:
    """The base key of evaluation and forecast tasks: the code (the settings they read are
    in their parameters)."""
    return digest({"graph": "modelrun", "code": code_fingerprint()})


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


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
    executor: ExecutorSpec,
    progress: Progress | None = None,
    deliver: bool = True,
    window: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    plan = plan_run(catalog, names, level)  # models incl. ensemble members, then ensembles
    specs = plan.models
    snapshots = SnapshotStore(settings.snapshot_dir)
    chosen = _snapshots_by_level(snapshots, specs, snapshot_refs)
    panels = {lvl: load_snapshot(str(settings.snapshot_dir), m.id)[1]
              for lvl, m in chosen.items()}
    partitions = {lvl: partition_for(settings, run_type, last_month=m.last_month, window=window)
                  for lvl, m in chosen.items()}
    if run_type is not RunType.FORECASTING:
        for spec in specs:  # every coverage problem before any work
            _check_coverage(spec, chosen[spec.level], partitions[spec.level])
    ceilings = _ceilings(settings, panels, {(str(sp.level), sp.target)
                                            for sp in [*specs, *plan.ensembles]})
    # models of the smaller panel (cm) first: the record lists them in plan order anyway
    order = sorted(specs, key=lambda sp: len(panels[sp.level].frame))
    graph = functools.partial(build_model_graph, order, run_type=run_type, snapshots=chosen,
                              partitions=partitions, ceilings=ceilings)
    ctx = ModelRunContext(settings, {s.name: s for s in specs},
                          in_process=not executor.uses_dask,
                          order=tuple((s.name, chosen[s.level].id) for s in order),
                          keep=frozenset(plan.needed), window=window)
    require_writable(settings.layout.tasks, settings.artifact_dir, settings.runs_dir)
    # one evaluate/forecast run at a time per state folder (the task cache would stay
    # consistent without it, but two runs would compute the same tasks twice)
    with EnvironmentLock(settings.layout.lock, timeout=settings.run.lock_timeout_seconds,
                         environment=settings.run.environment,
                         holder=f"the evaluate/forecast runs of {settings.state_dir}",
                         wait_hint="raise [run] lock_timeout_seconds to wait for it"):
        return _run_locked(settings, catalog, plan, kind=kind, run_type=run_type,
                           chosen=chosen, panels=panels, partitions=partitions,
                           ceilings=ceilings, graph=graph, executor=executor, ctx=ctx,
                           progress=progress, deliver=deliver, extra=extra)


def _run_locked(settings: Settings, catalog: Catalog, plan: RunPlan, *, kind: str,
                run_type: RunType, chosen: dict[str, Manifest], panels: dict[str, Panel],
                partitions: dict[str, Partition], ceilings: dict[tuple[str, str], float],
                graph: Callable[..., Graph], executor: ExecutorSpec, ctx: ModelRunContext,
                progress: Progress | None = None, deliver: bool = True,
                extra: Mapping[str, Any] | None = None) -> RunResult:
    specs = plan.models
    # under the lock: what a killed evaluate/forecast left half-written
    remove_stale_temps_below(settings.layout.tasks, settings.layout.work, settings.runs_dir,
                             settings.artifact_dir)
    ex = make_executor(executor, lanes=True, workers=settings.run.dask_workers or None,
                       memory_limit=settings.run.dask_memory_limit_bytes)
    runs = RunStore(settings.runs_dir)
    started = time.time()
    writer = runs.begin(kind, run_type.value)
    try:
        try:
            # a big prediction is split across the workers when there are several
            parts = predict_parts.split_counts(specs, panels, partitions, workers=ex.workers,
                                               min_draws=settings.run.split_draws)
            done = run_graph(graph(parts=parts), ctx, base_key=model_run_base_key(), executor=ex,
                             cache=TaskCache(settings.layout.tasks, settings.state_dir),
                             progress=progress)
            results, kept = _collect(settings, specs, plan.needed, chosen, done.outputs,
                                     {r.task: (r.status, r.key) for r in done.records},
                                     writer)
        finally:
            ex.close()
            _drop_prefetched()
        ensembles, alerts = run_ensembles(
            plan, kept, {r.model: r.reused for r in results}, settings=settings,
            catalog=catalog, run_type=run_type, snapshots=chosen, panels=panels, writer=writer,
            score=None if run_type is RunType.FORECASTING else _score,
            check=lambda fc, panel, target, lvl: _plausibility(
                fc, ceilings[(str(lvl), target)]),
        )
        results += [ModelResult(**e.fields()) for e in ensembles]
        flagged = {r.level for r in results if r.plausibility is not None} & set(chosen)
        cm_id = chosen["cm"].id if "cm" in chosen else None
        implausible, raised = plausibility_alerts(
            results, run_id=writer.run_id, run_type=run_type.value,
            names={lvl: unit_names(settings, lvl, snapshot=chosen[lvl].id, cm_snapshot=cm_id)
                   for lvl in flagged})
        alerts = [*alerts, *raised]
        code = code_version()
        record = {
            "run_id": writer.run_id, "kind": kind, "run_type": run_type.value,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 3),
            "executor": ex.name,
            "snapshots": {lvl: {"id": m.id, "sha256": m.sha256, "fetched_at": m.fetched_at}
                          for lvl, m in chosen.items()},
            "code": code.to_dict(),
            "partition": {lvl: _partition_dict(p) for lvl, p in partitions.items()},
            "models": [r.to_dict() for r in results],
            "plausibility": {"factor": settings.qa.max_forecast_factor, "rule": RULE,
                             "ceilings": {f"{lvl}/{target}": c
                                          for (lvl, target), c in sorted(ceilings.items())}},
            "implausible": implausible,
            "alerts": [a.to_dict() for a in alerts],
            **(extra or {}),
        }
        path = writer.commit(record)
    except BaseException:
        writer.abort()
        raise
    result = RunResult(writer.run_id, kind, run_type.value, str(path), results, record,
                       done.records)
    # MLflow mirror of the committed run; never raises, its outcome travels with the result
    configs = {s.name: {**s.semantic_dict(), "config_hash": s.config_hash}
               for s in [*specs, *plan.ensembles]}
    result.record["tracking"] = track_run(settings, result, configs=configs).to_dict()
    if kind == "forecast":  # vs the previous month's forecasts; never raises
        drift_alerts, result.record["output_drift"] = after_forecast_run(settings, writer.run_id)
        alerts = [*alerts, *drift_alerts]
    # the alerts stay in run.json either way; ``deliver=False`` (--no-alerts) sends none
    result.record["alert_delivery"] = (_deliver(settings, alerts, writer.run_id) if deliver
                                       else {"delivered": False, "reason": "not asked to "
                                             "deliver (--no-alerts)"})
    return result


def _collect(settings: Settings, specs: Sequence[ModelSpec], needed: set[str] | frozenset[str],
             chosen: dict[str, Manifest], outputs: dict[str, Any],
             status: dict[str, tuple[str, str]],
             writer: RunWriter) -> tuple[list[ModelResult], dict[str, Forecast]]:
    """Each model's forecast and metrics into the run folder, its result (plan order), and
    the forecasts the ensembles aggregate."""
    results: list[ModelResult] = []
    kept: dict[str, Forecast] = {}
    state = settings.layout
    for spec in specs:
        fit, pred = outputs[f"fit:{spec.name}"], outputs[f"predict:{spec.name}"]
        rel = f"predictions/{spec.name}.parquet"
        _link(state.resolve(pred["path"]), writer.path / rel)
        if pred["metrics"] is not None:
            writer.write_json(f"metrics/{spec.name}.json", pred["metrics"])
        if spec.name in needed:
            with _HANDOFF_LOCK:
                held = _KEPT.pop(status[f"predict:{spec.name}"][1], None)
            kept[spec.name] = held if held is not None else read_forecast(writer.path / rel)[0]
        trace = {**fit[TRACE], **pred[TRACE]}
        reused = bool(trace.pop("reused")) or status[f"fit:{spec.name}"][0] == "reused"
        artifact = str(trace.pop("artifact"))
        trace.pop("path", None)
        results.append(ModelResult(
            model=spec.name, level=spec.level, status=spec.status,
            snapshot=chosen[spec.level].id, artifact=artifact, reused=reused,
            predictions=rel, rows=pred["rows"], n_samples=pred["n_samples"],
            timings=trace, metrics=pred["metrics"], plausibility=pred["plausibility"]))
    return results, kept


def _plausibility(forecast: Forecast, ceiling: float) -> dict[str, Any] | None:
    found = check_forecast(forecast, ceiling)
    return None if found is None else found.to_dict()


def _deliver(settings: Settings, alerts: Sequence[Alert], run_id: str) -> dict[str, Any]:
    """Send the run's alerts to the configured sinks (JSONL always); never fails the run."""
    stamped = [replace(a, run_id=run_id) for a in alerts]
    with build_router(settings.alerts, settings.state_dir) as router:
        return router.route(stamped).to_dict()


def _partition_dict(p: Partition) -> dict[str, Any]:
    origins = [s.origin for s in p.rolling_origins()]
    return {"train": [p.train.first, p.train.last], "test": [p.test.first, p.test.last],
            "origins": origins, "steps": p.steps}


def parse_run_type(value: RunType | str, *, backtest: bool = False) -> RunType:
    """An evaluation's run type; ``backtest``: whether the caller runs the backtest windows
    (:func:`ewspipe.flows.backtest_run.evaluate_backtest`), else it is refused here."""
    try:
        rt = RunType(value)
    except ValueError:
        also = ", validation or backtest" if backtest else " or validation"
        raise InputError(
            f"run type {value!r} is not a run type; use calibration{also}"
        ) from None
    if rt is RunType.BACKTEST and not backtest:
        raise InputError("the backtest run type has one evaluation per window; run it with "
                         "`ewspipe evaluate --run-type backtest` (evaluate_backtest)")
    if rt is RunType.FORECASTING:
        raise InputError("evaluation runs on the calibration or validation partition, not on "
                         "forecasting; forecast with `ewspipe forecast` (forecast_models)")
    return rt


def evaluate_models(
    settings: Settings,
    catalog: Catalog,
    *,
    run_type: RunType | str,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str | ExecutorSpec = "local",
    progress: Progress | None = None,
    deliver: bool = True,
) -> RunResult:
    """Rolling-origin evaluation of each model on the calibration or validation partition.

    A graph on the one runner (:func:`ewspipe.flows.runner.run_graph`): ``fit:<model>`` and
    ``predict:<model>`` tasks keyed by config, snapshot, run type, partition and code, cached
    in ``<state>/tasks``, so an interrupted evaluation resumes from its finished models.
    ``executor``: ``local`` (fitting one model while the previous one is predicted and
    scored), ``dask`` or a Dask scheduler address (:func:`ewspipe.executor_spec.parse_executor`).
    ``deliver``: send the run's alerts to the ``[alerts]`` sinks (they are in ``run.json``
    either way).
    """
    spec = parse_executor(executor)
    rt = parse_run_type(run_type)
    return _run(settings, catalog, kind="evaluate", run_type=rt, names=names, level=level,
                snapshot_refs=snapshot_refs, executor=spec, progress=progress,
                deliver=deliver)


def evaluate_window(
    settings: Settings,
    catalog: Catalog,
    *,
    window: str,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str | ExecutorSpec = "local",
    progress: Progress | None = None,
    deliver: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """One backtest window's evaluation: :func:`evaluate_models` on that window's partition
    (``[partitions.backtest]``, by label), stored as a run of run type ``backtest`` whose
    record names the ``window`` (and carries ``extra``). The windows together are
    :func:`ewspipe.flows.backtest_run.evaluate_backtest`."""
    spec = parse_executor(executor)
    return _run(settings, catalog, kind="evaluate", run_type=RunType.BACKTEST, names=names,
                level=level, snapshot_refs=snapshot_refs, executor=spec, progress=progress,
                deliver=deliver, window=window, extra={"window": window, **(extra or {})})


def forecast_models(
    settings: Settings,
    catalog: Catalog,
    *,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str | ExecutorSpec = "local",
    progress: Progress | None = None,
    deliver: bool = True,
) -> RunResult:
    """Forecast the 36 months after the last observed month for the last month's units.

    Same engine, cache and executors as :func:`evaluate_models`; the fitted models are the
    monthly run's (one artifact cache), so a model ``ewspipe run`` trained is reused here.
    """
    spec = parse_executor(executor)
    return _run(settings, catalog, kind="forecast", run_type=RunType.FORECASTING, names=names,
                level=level, snapshot_refs=snapshot_refs, executor=spec, progress=progress,
                deliver=deliver)
