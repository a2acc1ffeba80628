"""Hyperparameter sweeps on the backtest windows (or calibration): Optuna, resumable, tracked
in MLflow.

``ewspipe models sweep NAME`` searches the ``[sweep.space]`` of a model file
(:mod:`ewspipe.catalog.sweep`) and scores every trial with the protocol of
``ewspipe evaluate``: the design is built once, then per trial
``registry.create(algorithm, params)`` -> ``fit(train_last)`` -> predictions from the 13
rolling origins -> ``join_actuals`` / ``evaluate`` against the panel's actuals.

* **Before validation only.** Trials are scored on the backtest windows by default
  (``on="backtest"``: the mean over the ``[partitions.backtest]`` windows of the objective,
  one fit per window, so the winner is not tuned to one window) or on the calibration
  partition alone (``on="calibration"``); the result records which (``on``) and keys its
  scores by it (``best["backtest"]`` or ``best["calibration"]``). The validation partition
  is the held-out estimate of future accuracy: tuning on it is leakage, so a sweep asked to
  run there is refused. The best trial is *reported* on validation once, next to its
  objective (and so is the model as currently defined), never selected on it.
* **Deterministic.** Trials are proposed in batches of ``batch_size`` and the sampler is
  seeded per trial number (``seed``, trial number), so the same seed, space, batch size and
  budget give the same trials on any executor, interrupted or not.
* **Resumable.** The study lives in ``<state_dir>/sweeps/<model>.db`` (Optuna's SQLite
  storage), one study per (model config, sweep settings, data snapshot, partition). A rerun
  continues it: completed trials are kept, trials that were running when the process died are
  evaluated again with their stored parameters, and new trials are proposed up to the budget.
  Raising ``--trials`` extends a finished sweep.
* **One engine.** Each batch of trials (and the reference evaluations) is a
  :class:`~ewspipe.flows.graph.Graph` of :func:`trial_task` tasks run by
  :func:`ewspipe.flows.runner.run_graph`: a task's key covers its parameters, the model's
  config hash, the snapshot, the partitions, the metric and the code fingerprint, and its
  result is kept in the runner's :class:`~ewspipe.flows.runner.TaskCache` under
  ``<state_dir>/sweeps/tasks``. An evaluation with a known key is reused, not recomputed (after
  an interruption, after ``--fresh``, in another study of the same model). The Optuna
  ask/tell loop stays in the driver; each result is told as its task finishes.
* **Executors.** ``local`` evaluates a batch in this process (``workers`` threads, default 1:
  the stepshifter already fits its steps in parallel); ``dask`` starts a local Dask cluster;
  a scheduler address (``tcp://HOST:PORT``, ``tls://HOST:PORT``, parsed by the one parser in
  :mod:`ewspipe.executor_spec`) uses a running Dask scheduler, through
  :mod:`ewspipe.flows.executors` as for the monthly run. The design is shipped to the workers
  once. Dask is imported only for the Dask executors.
* **Tracked.** One MLflow parent run per study (experiment ``ewspipe-sweep``; the same parent
  is reused when the sweep is resumed) with the search space and the best trial, and one child
  run per trial. Tracking problems become a warning in the result; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ewspipe.catalog import Catalog, ModelSpec
from ewspipe.catalog.loader import display_path
from ewspipe.catalog.rewrite import write_result
from ewspipe.catalog.spec import canonical_json
from ewspipe.catalog.sweep import (
    SweepSpec,
    apply_values,
    untuned,
)
from ewspipe.errors import EwspipeError, InputError, SpecError
from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.features.design import Design
from ewspipe.flows.executors import (
    DaskExecutor,
    Executor,
    ExecutorSpec,
    Handle,
    make_executor,
    parse_executor,
)
from ewspipe.flows.graph import Graph, Task, digest
from ewspipe.flows.modelrun import (
    POINT_METRICS,
    SAMPLE_METRICS,
    _actuals,
    _check_coverage,
    _partition_dict,
    _snapshots_by_level,
    model_design,
    predict_origins,
)
from ewspipe.flows.runner import TaskCache, TaskRecord, run_graph
from ewspipe.models import registry
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.partitions import Partition, RunType
from ewspipe.provenance import code_fingerprint, code_version
from ewspipe.settings import Settings
from ewspipe.store.tracking import (
    INSTALL_HINT,
    _display_uri,
    _experiment,
    _keep_template,
    _key,
    _prepare_sqlite,
    _quiet_loggers,
    _short,
    _sqlite_file,
    _value,
    artifact_location,
    experiment_name,
    tracking_uri,
)

if TYPE_CHECKING:
    import optuna

__all__ = [
    "SWEEP_EXPERIMENT",
    "SweepResult",
    "TrialContext",
    "TrialOutcome",
    "TrialTask",
    "evaluate_params",
    "run_sweep",
    "study_storage",
    "sweep_task_dir",
    "trial_task",
]

_log = logging.getLogger(__name__)

SWEEP_EXPERIMENT = experiment_name("sweep")
_TOP = 5
_SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mssql")
#: what a sweep may select on (``--on``): every backtest window, or calibration alone
SWEEP_ON = ("backtest", "calibration")
_BACKTEST = "backtest"
_LEAKAGE = (
    "sweeps tune on the backtest windows or the calibration partition only: the validation "
    "partition's test window is the held-out estimate of how the model will do on new months, "
    "and tuning on it (or on the forecasting run) leaks that window into the model's "
    "hyperparameters. Run the sweep with --run-type calibration (the default) and choose the "
    "objective with --on backtest (the default) or --on calibration; its result reports the "
    "best trial's validation score next to the objective, as a check for overfitting"
)


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its parameters; shipped to each worker once."""

    algorithm: str
    design: Design
    actuals: pd.DataFrame
    partitions: Mapping[str, Partition]  # run type value -> partition
    metric: str
    scheme: str
    windows: Mapping[str, Partition] = field(default_factory=dict)  # backtest: label -> it


@dataclass(frozen=True)
class TrialTask:
    """One evaluation: ``params`` on the partition ``partition`` (a run type value)."""

    key: str  # "trial:17", "current:calibration", ...
    params: Mapping[str, Any]
    partition: str  # or "backtest": every window of ``TrialContext.windows``, averaged


@dataclass(frozen=True)
class TrialOutcome:
    """The score of one task, or why it has none."""

    key: str
    score: float | None
    pooled: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    n_scored: int = 0
    n_unscored: int = 0
    error: str | None = None
    windows: dict[str, float | None] = field(default_factory=dict)  # backtest: each window's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metrics_for(n_samples: int, metric: str) -> list[str]:
    names = list(POINT_METRICS) + (list(SAMPLE_METRICS) if n_samples > 1 else [])
    return names if metric in names else [*names, metric]


def _score_on(context: TrialContext, params: Mapping[str, Any], partition: Partition,
              seconds: dict[str, float]) -> tuple[float | None, Any, str | None]:
    """Fit, predict and score ``params`` on one partition: (objective, Evaluation, why the
    objective has no value); adds the seconds spent to ``seconds``."""
    t0 = time.perf_counter()
    model = registry.create(context.algorithm, dict(params))
    model.fit(context.design, train_last=partition.train.last)
    t1 = time.perf_counter()
    forecast = predict_origins(model, context.design, partition)
    t2 = time.perf_counter()
    scored = join_actuals(forecast, context.actuals)
    if context.metric not in POINT_METRICS and forecast.n_samples <= 1:
        raise SpecError(f"metric {context.metric!r} scores samples, but these parameters "
                        "give a point forecast (n_samples = 1)")
    ev = evaluate(scored, _metrics_for(forecast.n_samples, context.metric))
    for name, took in (("fit", t1 - t0), ("predict", t2 - t1),
                       ("evaluate", time.perf_counter() - t2)):
        seconds[name] = seconds.get(name, 0.0) + took
    value = ev.pooled.get(context.metric) if context.scheme == "pooled" else \
        ev.means[context.scheme].get(context.metric)
    if value is None or not np.isfinite(value):
        why = "; ".join(n for n in ev.notes if n.startswith(context.metric)) or "undefined"
        return None, ev, f"{context.metric} ({context.scheme}) has no value: {why}"
    return float(value), ev, None


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None) / len(values))


def evaluate_params(context: TrialContext, task: TrialTask) -> TrialOutcome:
    """Fit ``task.params`` on the partition's training window, predict from its rolling
    origins and score against the actuals: the protocol of ``ewspipe evaluate``. On
    ``"backtest"``, the same on every window; the score is the mean of the windows' (pooled
    metrics too), each window's is in ``windows``.

    Never raises for a bad trial (an error becomes ``TrialOutcome.error``), so one failing
    combination does not end the sweep; a KeyboardInterrupt still does.
    """
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        if task.partition == _BACKTEST:
            parts = dict(context.windows)
        else:
            parts = {task.partition: context.partitions[task.partition]}
        scores: dict[str, float | None] = {}
        pooled_each: list[dict[str, Any]] = []
        n_scored = n_unscored = 0
        for label, partition in parts.items():
            value, ev, why = _score_on(context, task.params, partition, seconds)
            pooled_each.append(dict(ev.pooled))
            n_scored, n_unscored = n_scored + ev.n_scored, n_unscored + ev.n_unscored
            if why is not None:
                where = f" on window {label}" if task.partition == _BACKTEST else ""
                return TrialOutcome(task.key, None, pooled_each[-1], seconds, n_scored,
                                    n_unscored, error=why + where, windows=scores)
            scores[label] = value
        pooled = pooled_each[0] if len(pooled_each) == 1 else {
            k: _mean([p.get(k) for p in pooled_each]) for k in pooled_each[0]}
        return TrialOutcome(task.key, _mean(list(scores.values())), pooled, seconds,
                            n_scored, n_unscored,
                            windows=scores if task.partition == _BACKTEST else {})
    except Exception as exc:
        seconds.setdefault("total", time.perf_counter() - t0)
        return TrialOutcome(task.key, None, seconds=seconds,
                            error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:2000]}")


# --------------------------------------------------------------------------- the graph


def trial_task(context: TrialContext, *, key: str, trial: str, params: Mapping[str, Any],
               partition: str) -> dict[str, Any]:
    """A graph task: one evaluation as a JSON-ready :class:`TrialOutcome` document, so a
    result read back from the task cache equals one computed now."""
    outcome = evaluate_params(context, TrialTask(trial, params, partition))
    return json.loads(json.dumps(outcome.to_dict(), default=float))


class _LocalExecutor:
    """In this process, for the one runner: ``workers`` threads, or (one worker) each task
    run in the driver's thread when the runner waits for it. Running in ``wait`` rather than
    ``submit`` keeps one trial at a time, each recorded before the next starts: an interrupt
    loses only the trial it hit."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = None if workers <= 1 else ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ewspipe-sweep")

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0) -> Handle:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        return _Deferred(fn, args)

    def wait(self, handles: Sequence[Handle]) -> list[Handle]:
        if self._pool is not None:
            done, _ = wait(handles, return_when=FIRST_COMPLETED)  # type: ignore[arg-type]
            return [h for h in handles if h in done]
        first = next(h for h in handles if isinstance(h, _Deferred))
        first.run()
        return [first]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Deferred:
    """A call run when the executor waits for it; its value, or the exception to re-raise."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._call: tuple[Callable[..., Any], tuple[Any, ...]] | None = (fn, args)
        self._value: Any = None
        self._error: Exception | None = None

    def run(self) -> None:
        assert self._call is not None
        fn, args = self._call
        try:
            self._value = fn(*args)
        except Exception as exc:  # re-raised by result(), like a future
            self._error = exc
        self._call = None

    def done(self) -> bool:
        return self._call is None

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class _Engine:
    """The runner's side of a sweep: executor, task cache, base key and the shipped context."""

    name: str
    workers: int | None
    executor: Executor
    cache: TaskCache
    base_key: str
    context: Any = None  # the TrialContext, or its Dask future (shipped to workers once)

    def start(self, context: TrialContext) -> None:
        client = getattr(self.executor, "client", None)
        self.context = context if client is None else client.scatter(context, broadcast=True)

    def run(self, tasks: Sequence[TrialTask],
            record: Callable[[TrialOutcome, bool], None]) -> None:
        """Evaluate ``tasks`` as one graph; ``record(outcome, reused)`` as each finishes."""
        if not tasks:
            return
        graph = Graph([Task(t.key, trial_task, params={
            "trial": t.key, "params": dict(t.params), "partition": t.partition})
            for t in tasks])

        def progress(status: str, rec: TaskRecord, _done: int, _total: int) -> None:
            if status in ("ran", "reused"):
                record(TrialOutcome(**rec.output), status == "reused")

        run_graph(graph, self.context, base_key=self.base_key, executor=self.executor,
                  cache=self.cache, progress=progress)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.executor.close()


def _engine(spec: ExecutorSpec, workers: int | None, batch_size: int, cache: TaskCache,
            base_key: str) -> _Engine:
    if spec.kind == "local":
        n = workers or 1
        return _Engine("local", n, _LocalExecutor(n), cache, base_key)
    if spec.kind == "dask":
        n = workers or max(1, min(batch_size, 4, os.cpu_count() or 1))
        return _Engine("dask", n, DaskExecutor(None, workers=n), cache, base_key)
    executor = make_executor(spec)
    client = getattr(executor, "client", None)
    n = workers or (sum(w.get("nthreads", 1) for w in
                        client.scheduler_info()["workers"].values()) if client else None)
    return _Engine(str(spec), n, executor, cache, base_key)


# --------------------------------------------------------------------------- tracking


class _Tracker:
    """MLflow logging of one sweep: a parent run per study, a child run per trial.

    Every call is guarded: the first error turns tracking off for the rest of the sweep with
    a warning, and the sweep itself goes on (its trials are in the study either way; a later
    run of the same sweep logs whatever is missing).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status = "disabled"
        self.message = "tracking is off ([tracking] enabled = false)"
        self.uri: str | None = None
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent: str | None = None
        self.logged: set[int] = set()
        self.children: dict[int, str] = {}
        self.started = time.perf_counter()

    @property
    def active(self) -> bool:
        return self.client is not None and self.parent is not None

    def _fail(self, what: str, exc: BaseException) -> None:
        self.status = "failed"
        self.message = (f"MLflow tracking of the sweep failed while {what} "
                        f"({_display_uri(_short(exc))}); the sweep goes on and its trials are "
                        f"kept in the study. Tracking store: {self.uri}")
        _log.warning(self.message)
        if self.client is not None and self.parent is not None:
            with contextlib.suppress(Exception), _quiet_loggers():
                self.client.set_terminated(self.parent, "FAILED")
        self.client = None

    def start(self, study: str, uid: str, tags: Mapping[str, str], params: Mapping[str, Any],
              space: Mapping[str, Any]) -> None:
        if not self.settings.tracking.enabled:
            return
        uri = tracking_uri(self.settings)
        self.uri = _display_uri(uri)
        try:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow.tracking import MlflowClient

            if uri.startswith(_SQL_SCHEMES):
                import importlib.util

                for module in ("sqlalchemy", "alembic"):
                    if importlib.util.find_spec(module) is None:
                        raise ImportError(f"No module named '{module}'")
        except ImportError as exc:
            self.status = "unavailable"
            self.message = (f"MLflow tracking unavailable ({_short(exc, 120)}); the sweep is "
                            f"stored in its study but not tracked. Install it: {INSTALL_HINT}")
            _log.warning(self.message)
            return
        try:
            with _quiet_loggers():
                store = _sqlite_file(uri)
                fresh = _prepare_sqlite(store) if store is not None else False
                client = MlflowClient(tracking_uri=uri)
                if store is not None and fresh:
                    client.search_experiments(max_results=1)
                    _keep_template(store)
                self.experiment_id = _experiment(client, SWEEP_EXPERIMENT,
                                                 artifact_location(self.settings), "calibration")
                found = client.search_runs(
                    [self.experiment_id], max_results=1,
                    filter_string=f"tags.`ewspipe.sweep_uid` = '{uid}' and "
                                  "tags.`ewspipe.role` = 'sweep'")
                if found:
                    self.parent = found[0].info.run_id
                    client.update_run(self.parent, status="RUNNING")
                    for tag, value in tags.items():
                        client.set_tag(self.parent, tag, value)
                    children = client.search_runs(
                        [self.experiment_id], max_results=5000,
                        filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}'")
                    for child in children:
                        number = child.data.tags.get("ewspipe.trial")
                        if number is not None and child.info.status in ("FINISHED", "FAILED"):
                            self.logged.add(int(number))
                else:
                    self.parent = client.create_run(
                        self.experiment_id, run_name=study,
                        tags={**tags, "ewspipe.role": "sweep", "ewspipe.sweep_study": study,
                              "ewspipe.sweep_uid": uid},
                    ).info.run_id
                    self._params(client, self.parent, params)
                    client.log_text(self.parent, json.dumps(space, indent=2) + "\n",
                                    "space.json")
                self.client = client
                self.status = "logged"
                self.message = (f"logged to MLflow experiment {SWEEP_EXPERIMENT} as run "
                                f"{self.parent}")
        except Exception as exc:
            self._fail("starting the parent run", exc)

    @staticmethod
    def _params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(_key(k), _value(v)) for k, v in params.items() if v is not None]
        for lo in range(0, len(items), 100):
            client.log_batch(run_id, params=items[lo:lo + 100])

    def trial(self, study: str, model: str, trial: optuna.trial.FrozenTrial,
              outcome: TrialOutcome | None) -> None:
        if not self.active or trial.number in self.logged:
            return
        try:
            from mlflow.entities import Metric

            with _quiet_loggers():
                client = self.client
                ok = trial.state.name == "COMPLETE"
                run_id = client.create_run(self.experiment_id, run_name=f"trial-{trial.number:03d}",
                                           tags={"mlflow.parentRunId": self.parent,
                                                 "ewspipe.role": "trial",
                                                 "ewspipe.sweep_study": study,
                                                 "ewspipe.model": model,
                                                 "ewspipe.trial": str(trial.number),
                                                 "ewspipe.trial_state": trial.state.name,
                                                 }).info.run_id
                self._params(client, run_id, dict(trial.params))
                attrs = trial.user_attrs
                now = int(time.time() * 1000)
                metrics = [Metric("score", float(trial.value), now, 0)] if ok and \
                    trial.value is not None else []
                metrics += [Metric(f"pooled/{_key(k)}", float(v), now, 0)
                            for k, v in (attrs.get("pooled") or {}).items() if v is not None]
                metrics += [Metric(f"seconds/{_key(k)}", float(v), now, 0)
                            for k, v in (attrs.get("seconds") or {}).items()]
                if metrics:
                    client.log_batch(run_id, metrics=metrics)
                if attrs.get("error"):
                    client.set_tag(run_id, "ewspipe.error", _value(attrs["error"]))
                client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
                self.logged.add(trial.number)
                self.children[trial.number] = run_id
        except Exception as exc:
            self._fail(f"logging trial {trial.number}", exc)

    def finish(self, status: str, metrics: Mapping[str, float | None],
               tags: Mapping[str, str], best: Mapping[str, Any] | None) -> None:
        if not self.active:
            return
        try:
            from mlflow.entities import Metric

            with _quiet_loggers():
                now = int(time.time() * 1000)
                items = [Metric(_key(k), float(v), now, 0) for k, v in metrics.items()
                         if v is not None]
                if items:
                    self.client.log_batch(self.parent, metrics=items)
                for tag, value in tags.items():
                    self.client.set_tag(self.parent, _key(tag), _value(value))
                if best is not None:
                    self.client.log_text(self.parent, json.dumps(best, indent=2, default=str)
                                         + "\n", "best.json")
                self.client.set_terminated(self.parent, status)
        except Exception as exc:
            self._fail("finishing the parent run", exc)

    def tag(self, tags: Mapping[str, str]) -> None:
        """Tags on the parent run after it finished (e.g. what --apply wrote)."""
        if not self.active:
            return
        try:
            with _quiet_loggers():
                for tag, value in tags.items():
                    self.client.set_tag(self.parent, _key(tag), _value(value))
        except Exception as exc:
            self._fail("tagging the parent run", exc)

    def to_dict(self) -> dict[str, Any]:
        warning = self.status in ("unavailable", "failed")
        return {"status": self.status, "uri": self.uri,
                "experiment": SWEEP_EXPERIMENT if self.parent else None,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent,
                "trial_runs": len(self.children), "message": self.message,
                "seconds": round(time.perf_counter() - self.started, 3), "warning": warning}


# --------------------------------------------------------------------------- the study


@dataclass
class SweepResult:
    """What a sweep did and found; ``to_dict`` is the CLI's JSON document."""

    model: str
    study: str
    storage: str
    snapshot: str
    metric: str
    scheme: str
    direction: str
    budget: int
    executor: str
    workers: int | None
    counts: dict[str, int]
    best: dict[str, Any] | None
    references: dict[str, dict[str, Any]]
    top: list[dict[str, Any]]
    notes: list[str]
    tracking: dict[str, Any]
    seconds: float
    settings: dict[str, Any]
    tasks: dict[str, int] = field(default_factory=dict)  # graph tasks "ran" / "reused"
    applied: dict[str, Any] | None = None
    #: what trials were selected on: "backtest" (the mean over the windows) or "calibration";
    #: ``best`` and ``references`` hold that score under this key
    on: str = _BACKTEST

    @property
    def improved(self) -> bool | None:
        """Whether the best trial beats the model as currently defined on the objective."""
        if self.best is None:
            return None
        current = self.references.get("current", {}).get(self.on)
        if current is None:
            return None
        return _better(self.best[self.on], current, self.direction)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["improved"] = self.improved
        data["run_type"] = self.on
        return data


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def study_storage(settings: Settings, model: str) -> Path:
    """The SQLite file holding every study of ``model``: ``<state_dir>/sweeps/<model>.db``."""
    return settings.layout.sweep_db(model)


def sweep_task_dir(settings: Settings) -> Path:
    """The runner's task cache of sweeps (one record per evaluated trial, keyed by its
    parameters, the model config, snapshot, partitions and code): ``<state_dir>/sweeps/tasks``."""
    return settings.layout.sweep_tasks


@contextlib.contextmanager
def _locked(path: Path, model: str) -> Iterator[None]:
    """One sweep per model at a time: a second one would take over the first's trials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another sweep of model {model!r} is running (lock {display_path(path)}); "
                "wait for it to finish, or stop it: a rerun then continues its study"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _optuna() -> Any:
    from ewspipe.extras import require

    optuna = require("optuna", "optuna", what="ewspipe models sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distributions(optuna: Any, sweep: SweepSpec) -> dict[str, Any]:
    dist = optuna.distributions
    out: dict[str, Any] = {}
    for key, dim in sweep.space.items():
        if dim.kind == "choices":
            out[key] = dist.CategoricalDistribution(list(dim.choices or ()))
        elif dim.kind == "int":
            low, high = dim.bounds
            out[key] = dist.IntDistribution(int(low), int(high), log=dim.log,
                                            step=int(dim.step or 1))
        else:
            low, high = dim.bounds
            out[key] = dist.FloatDistribution(low, high, log=dim.log,
                                              step=None if dim.step is None else float(dim.step))
    return out


def _trial_seed(seed: int, number: int) -> int:
    """A sampler seed per trial, so proposals do not depend on the process's history."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _sampler(optuna: Any, sweep: SweepSpec, number: int) -> Any:
    seed = _trial_seed(sweep.seed, number)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kwargs: dict[str, Any] = {"seed": seed}
    if sweep.startup_trials is not None:
        kwargs["n_startup_trials"] = sweep.startup_trials
    return optuna.samplers.TPESampler(**kwargs)


def _n_samples(spec: ModelSpec) -> int:
    merged = {**registry.default_params(spec.algorithm), **spec.hyperparameters_dict()}
    value = merged.get("n_samples", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _outcome_record(outcome: TrialOutcome) -> dict[str, Any]:
    return {"score": outcome.score, "pooled": outcome.pooled, "error": outcome.error,
            "seconds": {k: round(v, 3) for k, v in outcome.seconds.items()},
            "windows": outcome.windows}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Run:
    """The state of one sweep invocation (kept out of the public signature)."""

    spec: ModelSpec
    sweep: SweepSpec
    study: Any
    study_name: str
    executor: _Engine
    tracker: _Tracker
    distributions: dict[str, Any]
    metric: str
    scheme: str
    direction: str
    budget: int
    progress: Callable[[str], None]
    on: str = _BACKTEST
    counts: dict[str, int] = field(default_factory=lambda: {"evaluated": 0, "resumed": 0})
    tasks: dict[str, int] = field(default_factory=lambda: {"ran": 0, "reused": 0})

    def best_value(self) -> float | None:
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not done:
            return None
        values = [t.value for t in done]
        return min(values) if self.direction == "minimize" else max(values)


def _cached(run: _Run, tasks: Sequence[TrialTask]) -> dict[str, dict[str, Any]]:
    """Evaluate the tasks whose result the study does not hold yet; all results by key."""
    attrs = run.study.user_attrs
    todo = [t for t in tasks if f"result:{t.key}" not in attrs]

    def record(outcome: TrialOutcome, reused: bool) -> None:
        run.study.set_user_attr(f"result:{outcome.key}", _outcome_record(outcome))
        run.tasks["reused" if reused else "ran"] += 1
        shown = f"{outcome.score:.4f}" if outcome.score is not None else f"failed: {outcome.error}"
        run.progress(f"{outcome.key}: {run.metric} {shown}" + (" (reused)" if reused else ""))

    run.executor.run(todo, record)
    attrs = run.study.user_attrs
    return {t.key: attrs[f"result:{t.key}"] for t in tasks}


def _params_of(run: _Run, values: Mapping[str, Any]) -> dict[str, Any]:
    return apply_values(run.spec.hyperparameters, values)


def _ask_batch(optuna: Any, run: _Run) -> list[Any]:
    """Propose trials up to the end of the current batch (or the budget); return every trial
    that is still running (asked, not told), oldest first."""
    trials = run.study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state.name == "RUNNING"]
    size = run.sweep.batch_size
    first = running[0].number if running else len(trials)
    end = min(run.budget, (first // size + 1) * size)
    for number in range(len(trials), end):
        run.study.sampler = _sampler(optuna, run.sweep, number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = run.study.ask(fixed_distributions=run.distributions)
        if trial.number != number:  # someone else writes to the study: stop, do not guess
            raise EwspipeError(f"study {run.study_name} changed while proposing trial {number} "
                               f"(got {trial.number}); is another sweep of it running?")
    return sorted((t for t in run.study.get_trials(deepcopy=False)
                   if t.state.name == "RUNNING"), key=lambda t: t.number)


def _evaluate_batch(optuna: Any, run: _Run, trials: Sequence[Any], resumed: set[int]) -> None:
    tasks = [TrialTask(f"trial:{t.number:06d}", _params_of(run, t.params), run.on)
             for t in trials]
    by_key = {task.key: t for task, t in zip(tasks, trials, strict=True)}

    def record(outcome: TrialOutcome, reused: bool) -> None:
        frozen = by_key[outcome.key]
        handle = optuna.trial.Trial(run.study, frozen._trial_id)
        for name, value in (("pooled", outcome.pooled), ("error", outcome.error),
                            ("seconds", {k: round(v, 3) for k, v in outcome.seconds.items()}),
                            ("windows", outcome.windows)):
            handle.set_user_attr(name, value)
        if outcome.score is None:
            run.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
        else:
            run.study.tell(frozen.number, outcome.score)
        run.counts["evaluated"] += 1
        run.tasks["reused" if reused else "ran"] += 1
        if frozen.number in resumed:
            run.counts["resumed"] += 1
        told = run.study.get_trials(deepcopy=False)[frozen.number]
        run.tracker.trial(run.study_name, run.spec.name, told, outcome)
        best = run.best_value()
        shown = (f"{run.metric} {outcome.score:.4f}" if outcome.score is not None
                 else f"failed ({outcome.error})")
        took = sum(outcome.seconds.values())
        finished = sum(t.state.name in ("COMPLETE", "FAIL")
                       for t in run.study.get_trials(deepcopy=False))
        run.progress(f"trial #{frozen.number} ({finished}/{run.budget}): {shown}"
                     + (f"  best {best:.4f}" if best is not None else "")
                     + ("  (reused)" if reused else f"  ({took:.1f} s)"))

    run.executor.run(tasks, record)


def run_sweep(
    settings: Settings,
    catalog: Catalog,
    name: str,
    *,
    trials: int | None = None,
    executor: str | ExecutorSpec = "local",
    workers: int | None = None,
    run_type: RunType | str = RunType.CALIBRATION,
    snapshot_ref: str | Sequence[str] | None = None,
    fresh: bool = False,
    apply: bool = False,
    progress: Callable[[str], None] | None = None,
    on: str = _BACKTEST,
) -> SweepResult:
    """Run (or continue) the ``[sweep]`` of model ``name`` on the backtest windows (or on
    the calibration partition alone).

    Args:
        settings: workspace settings (state dir, partitions, tracking).
        catalog: the loaded model catalog.
        name: the model; its file must have a ``[sweep]`` table.
        trials: the budget (default: ``[sweep] trials``); trials already in the stored study
            count towards it.
        executor: ``local``, ``dask`` or a Dask scheduler address (``tcp://HOST:PORT``,
            ``tls://HOST:PORT``; see :func:`ewspipe.flows.executors.parse_executor`).
        workers: concurrent trials (local threads, default 1; local Dask worker processes,
            default the batch size up to 4 and the CPU count).
        run_type: must be calibration; anything else is refused (leakage).
        on: the objective: ``"backtest"`` (default; the mean over the ``[partitions.backtest]``
            windows, one fit per window) or ``"calibration"``.
        snapshot_ref: the data snapshot, or snapshot ids one per level as ``evaluate`` takes
            them (the model's level's is used); default: the latest of the model's level.
        fresh: discard this study's stored trials and start over.
        apply: write the best hyperparameters into the model file when they beat the
            current definition on the objective (``result.applied`` says what happened).
        progress: called with one line per finished evaluation.

    Raises:
        InputError: refused run type, bad executor, no data covering the partition, or
            another sweep of the model running; SpecError: no ``[sweep]`` table, an unknown
            or deprecated model; EwspipeError: every trial failed.
    """
    executor_spec = parse_executor(executor)  # first, as in every command taking --executor
    try:
        rt = RunType(run_type)
    except ValueError:
        raise InputError(f"option --run-type: {run_type!r} is not a run type; sweeps run on "
                         "calibration") from None
    if rt is not RunType.CALIBRATION:
        raise InputError(f"option --run-type: a sweep on {rt.value} is refused: {_LEAKAGE}")
    if on not in SWEEP_ON:
        raise InputError(f"option --on: {on!r} is not an objective; use backtest (the mean "
                         "over the [partitions.backtest] windows) or calibration")
    spec = catalog.require_runnable(name)
    if spec.sweep is None:
        raise SpecError(
            f"model {name!r} has no [sweep] table in {display_path(catalog.path(name))}; add one "
            "with a [sweep.space] of the hyperparameters to search (see docs/models.md, Sweeps)")
    sweep = spec.sweep
    budget = sweep.trials if trials is None else trials
    if budget < 1:
        raise InputError(f"option --trials: must be >= 1, got {budget}")
    if workers is not None and workers < 1:
        raise InputError(f"option --workers: must be >= 1, got {workers}")
    say = progress or (lambda _line: None)
    started = time.perf_counter()

    snapshots = SnapshotStore(settings.snapshot_dir)
    refs = [snapshot_ref] if isinstance(snapshot_ref, str) else list(snapshot_ref or [])
    manifest = _snapshots_by_level(snapshots, [spec], refs or None)[spec.level]
    scheme = settings.partition_scheme()
    calibration = scheme.partition(RunType.CALIBRATION)
    _check_coverage(spec, manifest, calibration)
    partitions = {RunType.CALIBRATION.value: calibration}
    windows = {}
    if on == _BACKTEST:
        windows = {str(p.window): p for p in scheme.backtest()}
        for window in windows.values():
            _check_coverage(spec, manifest, window)
    notes: list[str] = []
    validation = scheme.partition(RunType.VALIDATION)
    try:
        _check_coverage(spec, manifest, validation)
        partitions[RunType.VALIDATION.value] = validation
    except InputError as exc:
        notes.append(f"no validation score: {exc}")

    metric, direction = sweep.objective(_n_samples(spec))
    identity = {
        "model": spec.name, "config_hash": spec.config_hash, "search": sweep.search_dict(),
        "metric": metric, "snapshot": manifest.sha256,
        "partition": _partition_dict(calibration),
        # a calibration study keeps its identity (and its stored trials) from before --on
        **({"on": on, "windows": {k: _partition_dict(p) for k, p in windows.items()}}
           if on == _BACKTEST else {}),
    }
    fingerprint = hashlib.sha256(canonical_json(identity).encode("ascii")).hexdigest()
    study_name = f"{spec.name}-{fingerprint[:12]}"
    db = study_storage(settings, spec.name)
    optuna = _optuna()

    with _locked(db.with_suffix(".lock"), spec.name):
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve().as_posix()}")
        if fresh:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=study_name, storage=storage)
        study = optuna.create_study(storage=storage, study_name=study_name,
                                    direction=direction, load_if_exists=True)
        if "uid" not in study.user_attrs:  # a new study (also after --fresh)
            study.set_user_attr("identity", identity)
            study.set_user_attr("created_at", _now())
            study.set_user_attr("uid", uuid.uuid4().hex)
        before = {t.number for t in study.get_trials(deepcopy=False)
                  if t.state.name in ("COMPLETE", "FAIL")}
        say(f"study {study_name} in {display_path(db)}: {len(before)} of {budget} trials done")

        distributions = _distributions(optuna, sweep)
        code = code_version()
        tags = {"ewspipe.model": spec.name, "ewspipe.run_type": on,
                "ewspipe.snapshot": manifest.id, "ewspipe.config_hash": spec.config_hash,
                "ewspipe.code_commit": str(code.commit or "unknown"),
                "ewspipe.code_dirty": str(bool(code.dirty)).lower(),
                "ewspipe.budget": str(budget), "ewspipe.executor": str(executor_spec),
                "mlflow.source.name": "ewspipe"}
        space = {k: v.model_dump(exclude_none=True, exclude_defaults=True)
                 for k, v in sweep.space.items()}
        params = {"model": spec.name, "algorithm": spec.algorithm, "metric": metric,
                  "scheme": sweep.scheme, "direction": direction, "seed": sweep.seed,
                  "sampler": sweep.sampler, "batch_size": sweep.batch_size,
                  "startup_trials": sweep.startup_trials, "study": study_name,
                  "config_hash": spec.config_hash, "snapshot": manifest.id, "on": on,
                  **{f"space.{k}": d.describe() for k, d in sweep.space.items()}}
        tracker = _Tracker(settings)
        base_key = digest({  # what a trial's score depends on besides its parameters
            "model": spec.name, "algorithm": spec.algorithm, "config_hash": spec.config_hash,
            "snapshot": manifest.sha256, "metric": metric, "scheme": sweep.scheme,
            "partitions": {k: _partition_dict(p) for k, p in partitions.items()},
            **({"windows": {k: _partition_dict(p) for k, p in windows.items()}}
               if windows else {}),
            "code": code_fingerprint()})
        run_executor = _engine(executor_spec, workers, sweep.batch_size,
                               TaskCache(sweep_task_dir(settings), settings.state_dir), base_key)
        run = _Run(spec, sweep, study, study_name, run_executor, tracker, distributions,
                   metric, sweep.scheme, direction, budget, say, on)
        status = "FAILED"
        result: SweepResult | None = None
        try:
            panel = snapshots.load(manifest.id)
            context = TrialContext(spec.algorithm, model_design(spec, panel, manifest),
                                   _actuals(panel, spec.target), partitions, metric,
                                   sweep.scheme, windows)
            del panel
            run_executor.start(context)
            tracker.start(study_name, study.user_attrs["uid"], tags, params, space)
            for frozen in study.get_trials(deepcopy=False):  # catch up on earlier trials
                if frozen.state.name in ("COMPLETE", "FAIL"):
                    tracker.trial(study_name, spec.name, frozen, None)

            current = spec.hyperparameters_dict()
            plain = untuned(spec.hyperparameters, sweep.space)
            references = {"current": current} if plain == current else \
                {"current": current, "untuned": plain}
            ref_results = _cached(run, [TrialTask(f"{ref}:{on}", p, on)
                                        for ref, p in references.items()])

            while True:
                resumed = {t.number for t in study.get_trials(deepcopy=False)
                           if t.state.name == "RUNNING"}
                running = _ask_batch(optuna, run)
                if not running:
                    break
                _evaluate_batch(optuna, run, running, resumed)

            result = _summarise(run, study, references, ref_results, partitions, notes,
                                manifest.id, db, before)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            done = sum(t.state.name in ("COMPLETE", "FAIL")
                       for t in study.get_trials(deepcopy=False))
            _log.warning("sweep of %s interrupted after %d of %d trials; run it again to "
                         "continue study %s", spec.name, done, budget, study_name)
            raise
        finally:
            best = result.best if result is not None else None
            metrics: dict[str, float | None] = {}
            if result is not None and best is not None:
                metrics = {"best/score": best[on],
                           "best/validation_score": best.get("validation"),
                           "best/trial": float(best["trial"])}
                for ref, scores in result.references.items():
                    metrics[f"{ref}/score"] = scores.get(on)
                    metrics[f"{ref}/validation_score"] = scores.get("validation")
            tracker.finish(status, metrics, {} if best is None else {
                "ewspipe.best_trial": str(best["trial"]),
                **{f"ewspipe.best.{k}": json.dumps(v) for k, v in best["params"].items()}},
                best)
            run_executor.close()
            with contextlib.suppress(Exception):  # release the study file's connections
                storage.engine.dispose()

    assert result is not None
    result.seconds = round(time.perf_counter() - started, 3)
    result.tracking = tracker.to_dict()
    if tracker.to_dict()["warning"]:
        result.notes.append(f"tracking: {tracker.message}")
    if apply:
        result.applied = _apply(catalog, spec, result, tracker)
        tracker.tag({"ewspipe.applied": str(result.applied["applied"]).lower(),
                     **({"ewspipe.applied_config_hash": result.applied["config_hash"]}
                        if result.applied["applied"] else {})})
        result.tracking = tracker.to_dict()
    return result


def _validation(run: _Run, best_params: dict[str, Any], number: int,
                partitions: Mapping[str, Partition]) -> dict[str, dict[str, Any]]:
    if RunType.VALIDATION.value not in partitions:
        return {}
    tasks = [TrialTask(f"trial:{number:06d}:validation", best_params, "validation"),
             TrialTask("current:validation", run.spec.hyperparameters_dict(), "validation")]
    return _cached(run, tasks)


def _summarise(run: _Run, study: Any, references: Mapping[str, dict[str, Any]],
               ref_results: Mapping[str, dict[str, Any]], partitions: Mapping[str, Partition],
               notes: list[str], snapshot: str, db: Path, before: set[int]) -> SweepResult:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    failed = [t for t in trials if t.state.name == "FAIL"]
    if not complete:
        first = next((t.user_attrs.get("error") for t in failed if t.user_attrs.get("error")),
                     "no error recorded")
        raise EwspipeError(f"every one of the {len(failed)} trials of model {run.spec.name!r} "
                           f"failed; the first error: {first}. Fix the search space and run "
                           "the sweep again with --fresh")
    ordered = sorted(complete, key=lambda t: (t.value if run.direction == "minimize"
                                              else -t.value, t.number))
    best_trial = ordered[0]
    best_params = _params_of(run, best_trial.params)
    val = _validation(run, best_params, best_trial.number, partitions)
    best_val = val.get(f"trial:{best_trial.number:06d}:validation", {})
    refs: dict[str, dict[str, Any]] = {}
    for ref in references:
        record = ref_results[f"{ref}:{run.on}"]
        refs[ref] = {run.on: record["score"], "pooled": record["pooled"],
                     "error": record["error"], "hyperparameters": references[ref]}
        if run.on == _BACKTEST:
            refs[ref]["windows"] = record.get("windows") or {}
    if "current" in refs:
        current_val = val.get("current:validation", {})
        refs["current"]["validation"] = current_val.get("score")
        refs["current"]["validation_pooled"] = current_val.get("pooled")
    for ref, record in refs.items():
        if record["error"]:
            notes.append(f"reference {ref!r} could not be scored: {record['error']}")
    best = {
        "trial": best_trial.number, "params": dict(best_trial.params),
        "hyperparameters": best_params, run.on: best_trial.value,
        "validation": best_val.get("score"), "pooled": best_trial.user_attrs.get("pooled"),
        "validation_pooled": best_val.get("pooled"),
        **({"windows": best_trial.user_attrs.get("windows") or {}}
           if run.on == _BACKTEST else {}),
    }
    if best_val.get("error"):
        notes.append(f"best trial on validation: {best_val['error']}")
    top = [{"trial": t.number, "score": t.value, "params": dict(t.params)}
           for t in ordered[:_TOP]]
    counts = {
        "budget": run.budget, "complete": len(complete), "failed": len(failed),
        "evaluated": run.counts["evaluated"], "resumed": run.counts["resumed"],
        "kept": len(before),
    }
    if len(complete) + len(failed) > run.budget:
        notes.append(f"the study holds {len(complete) + len(failed)} trials, more than the "
                     f"budget {run.budget}; all of them count")
    sweep = run.sweep
    return SweepResult(
        model=run.spec.name, study=run.study_name, storage=display_path(db), snapshot=snapshot,
        metric=run.metric, scheme=run.scheme, direction=run.direction, budget=run.budget,
        executor=run.executor.name, workers=run.executor.workers, counts=counts, best=best,
        tasks=dict(run.tasks),
        references=refs, top=top, notes=notes, tracking={}, seconds=0.0, on=run.on,
        settings={"seed": sweep.seed, "sampler": sweep.sampler, "batch_size": sweep.batch_size,
                  "startup_trials": sweep.startup_trials,
                  "space": {k: d.describe() for k, d in sweep.space.items()}},
    )


def _apply(catalog: Catalog, spec: ModelSpec, result: SweepResult,
           tracker: _Tracker) -> dict[str, Any]:
    path = catalog.path(spec.name)
    best = result.best
    assert best is not None
    on = result.on
    current = result.references.get("current", {}).get(on)
    if current is not None and not _better(best[on], current, result.direction):
        return {"applied": False, "file": display_path(path), "reason": (
            f"the best trial's {on} {result.metric} {best[on]:.4f} does not "
            f"beat the current definition's {current:.4f}; the file is unchanged")}
    record: dict[str, Any] = {
        "study": result.study,
        "run_id": tracker.parent,
        "trial": best["trial"],
        "metric": result.metric,
        "scheme": result.scheme,
        "on": on,
        "score": round(float(best[on]), 6),
        "score_before": None if current is None else round(float(current), 6),
        "validation_score": None if best["validation"] is None
        else round(float(best["validation"]), 6),
        "validation_score_before": _round(result.references.get("current", {})
                                          .get("validation")),
        "trials": result.counts["complete"] + result.counts["failed"],
        "snapshot": result.snapshot,
        "applied_at": _now(),
    }
    new_hash = write_result(path, values=best["params"], result=record,
                            expected_config_hash=spec.config_hash)
    return {"applied": True, "file": display_path(path), "config_hash": new_hash,
            "previous_config_hash": spec.config_hash, "values": best["params"],
            "result": {k: v for k, v in record.items() if v is not None}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)

