"""The monthly run: one task graph from snapshot to alerts, on any executor, resumable.

``snapshot -> drift:<level> -> train:<model> -> forecast:<model> -> ensembles (aggregation,
post-processing, reconciliation) -> qa -> store -> output_drift -> publish (production only) ->
report -> alerts``. Models: every deployed, shadow and baseline model plus every member of a
non-deprecated ensemble; only deployed ones are published, baselines are there for online
evaluation (:mod:`ewspipe.flows.online`) to compare with. Output drift compares the stored
forecasts with the previous monthly run's of the environment
(:mod:`ewspipe.flows.monitoring_tasks`). Task keys chain the snapshot sha256, the config
hash of each model and ensemble, the settings that shape results and the code fingerprint,
so re-running a month with the same code and data recomputes nothing and returns the same
outputs (see :mod:`ewspipe.flows.runner` for the cache and the lock). State: ``<state_dir>/<env>/``;
snapshots stay shared in ``<state_dir>/snapshots``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.atomic import process_alive
from ewspipe.catalog import Catalog, load_catalog
from ewspipe.catalog.rules import Status
from ewspipe.catalog.spec import ModelSpec
from ewspipe.errors import InputError
from ewspipe.flows import monitoring_tasks, tasks
from ewspipe.flows.ensemble_run import plan_run
from ewspipe.flows.executors import ExecutorSpec, make_executor, parse_executor
from ewspipe.flows.graph import TRACE, Graph, Task, digest, settings_sections
from ewspipe.flows.publish_policy import publishes
from ewspipe.flows.release_guard import check_release, verify_workspace
from ewspipe.flows.runner import (
    EnvironmentLock,
    TaskCache,
    TaskRecord,
    remove_stale_temps_below,
    require_writable,
    run_graph,
)
from ewspipe.layout import StateFolder
from ewspipe.provenance import code_fingerprint, code_version, timestamp
from ewspipe.settings import Settings
from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.store.statedb import StateDB, open_state_db
from ewspipe.store.tracking_monthly import track_monthly_run

__all__ = ["MonthlyPlan", "MonthlyRun", "base_key", "build_monthly_graph", "prepare_monthly",
           "run_monthly", "run_outcome"]

Progress = Callable[[str, TaskRecord, int, int], None]

def base_key(settings: Settings, environment: str) -> str:
    """The code fingerprint and environment. Settings are not in it: each task declares the
    sections it reads (``Task.reads``), so ``[api] port`` changes no key (``settings`` stays
    in the signature for callers)."""
    return digest({"code": code_fingerprint(), "environment": environment})


_TREE_LEARNERS = ("lightgbm", "xgboost", "random_forest", "extra_trees", "hist_gradient_boosting")


def training_cost(spec: ModelSpec) -> float:
    """A rough relative training time, only to order the fan-out (costliest first): learners
    fitted per step times their size (trees / 100 for tree ensembles, 0.5 for linear ones),
    36 steps each; baselines cost nothing."""
    hyper = spec.hyperparameters_dict()
    pairs = [(hyper.get("learner"), hyper.get("learner_params") or {}),
             (hyper.get("classifier"), hyper.get("classifier_params") or {}),
             (hyper.get("regressor"), hyper.get("regressor_params") or {})]
    cost = 0.0
    for name, params in pairs:
        if not isinstance(name, str):
            continue
        cost += (float(params.get("n_estimators", 100)) / 100.0 if name in _TREE_LEARNERS
                 else 0.5)
    steps = hyper.get("steps", 36)
    return cost * float(steps if isinstance(steps, int) else 36)


def build_monthly_graph(catalog: Catalog, *, publish: bool,
                        release: dict[str, Any] | None = None, alerts: bool = True) -> Graph:
    """The monthly run's tasks for this catalog (``publish``: add the publish task, which
    publishes only under ``release``, the run's verified release record; ``alerts=False``:
    the alerts task counts the alerts but delivers none)."""
    plan = plan_run(catalog, None)
    models = [s for s in plan.models
              if s.status in (Status.DEPLOYED, Status.SHADOW) or s.name in plan.needed]
    if not models:
        raise InputError("the monthly run has nothing to run: no deployed or shadow model and "
                         "no ensemble; set status = \"deployed\" in a model file")
    # baselines are forecast (QA'd, stored, never published) so that online evaluation has
    # something to compare the deployed models with, month after month
    chosen = {s.name for s in models}
    models += [s for s in plan.models if s.status == Status.BASELINE and s.name not in chosen]
    levels = sorted({s.level.value for s in models} | {e.level.value for e in plan.ensembles})
    graph: list[Task] = [
        Task("snapshot", tasks.select_snapshots, params={"levels": levels}, cache=False),
    ]
    graph += [Task(f"drift:{lvl}", tasks.check_drift, {"snapshots": "snapshot"},
                   {"level": lvl}, reads=("drift",)) for lvl in levels]
    for spec in models:
        params = {"model": spec.name, "config_hash": spec.config_hash}
        graph.append(Task(f"train:{spec.name}", tasks.train_model, {"snapshots": "snapshot"},
                          params, cost=training_cost(spec), reads=("partitions",),
                          check=tasks.artifact_present))
    for spec in models:
        params = {"model": spec.name, "config_hash": spec.config_hash}
        graph.append(Task(f"forecast:{spec.name}", tasks.forecast_model,
                          {"snapshots": "snapshot", "trained": f"train:{spec.name}"}, params,
                          reads=("partitions",)))
    all_fc = tuple(f"forecast:{s.name}" for s in models)
    needed = tuple(f"forecast:{m}" for m in sorted(plan.needed))
    drift = tuple(f"drift:{lvl}" for lvl in levels)
    graph.append(Task("ensembles", tasks.build_ensembles,
                      {"snapshots": "snapshot", "forecasts": needed},
                      {"names": [e.name for e in plan.ensembles],
                       "config": {e.name: e.config_hash for e in plan.ensembles}},
                      reads=("reconciliation", "partitions")))
    graph.append(Task("qa", tasks.qa_checks, {"snapshots": "snapshot", "forecasts": all_fc,
                                              "ensembles": "ensembles"},
                      reads=("partitions", "qa")))
    graph.append(Task("store", tasks.store_predictions,
                      {"snapshots": "snapshot", "forecasts": all_fc, "ensembles": "ensembles",
                       "qa": "qa"}, check=tasks.stored_intact))
    graph.append(Task("output_drift", monitoring_tasks.check_output_drift, {"stored": "store"},
                      reads=("qa",)))
    report_inputs: dict[str, Any] = {
        "snapshots": "snapshot", "drift": drift, "forecasts": all_fc,
        "ensembles": "ensembles", "qa": "qa", "stored": "store"}
    alert_inputs: dict[str, Any] = {"drift": (*drift, "output_drift"),
                                    "ensembles": "ensembles", "qa": "qa", "report": "report"}
    if publish:
        # never cached: whether to publish depends on now (freshness, the release), not only
        # on inputs; ``release`` is what the run was verified against before it started
        # after output drift: a run whose monitoring failed (e.g. an unreadable earlier
        # forecast) ends failed, and a failed run must not have moved the pointer
        graph.append(Task("publish", tasks.publish, {"snapshots": "snapshot", "stored": "store",
                                                     "qa": "qa", "drift": drift,
                                                     "output_drift": "output_drift"},
                          {"release": release}, cache=False))
        report_inputs["published"] = "publish"
        alert_inputs["published"] = "publish"
    graph.append(Task("report", tasks.write_report, report_inputs))
    # route_alerts delivers the "alerts" of every output in its drift input: output drift
    # (drift of the forecasts) travels with the input drift, once per run like the others
    # the parameter only when not delivering: the delivering task keeps its cache key
    graph.append(Task("alerts", tasks.route_alerts, alert_inputs,
                      {} if alerts else {"deliver": False}))
    return Graph(graph)


@dataclass
class MonthlyRun:
    """What a monthly run did: every task (ran or reused, seconds), its outputs and where
    they are."""

    run_id: str
    environment: str
    executor: str
    state: Path
    status: str  # "ok" | "qa_failed" | "not_published" (a publishing run that did not)
    started_at: str
    seconds: float
    tasks: list[TaskRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    release: dict[str, Any] | None = None  # the release a publishing run ran under
    tracking: dict[str, Any] | None = None  # where MLflow recorded it (store.tracking_monthly)

    @property
    def ran(self) -> list[str]:
        return [t.task for t in self.tasks if t.status == "ran"]

    @property
    def reused(self) -> list[str]:
        return [t.task for t in self.tasks if t.status == "reused"]

    def record(self) -> MonthlyRunRecord:
        """The typed record every reader uses (stored, printed by ``--json``, served)."""
        return MonthlyRunRecord.from_dict(self._doc())

    @property
    def models(self) -> dict[str, list[str]]:
        """Models ``trained`` in this run and ``reused`` (their task cached, or their
        artifact found in the shared cache, e.g. fitted by ``ewspipe forecast``)."""
        found: dict[str, list[str]] = {"trained": [], "reused": []}
        for t in self.tasks:
            if t.task.startswith("train:") and t.status in ("ran", "reused"):
                trained = t.status == "ran" and not (t.output or {}).get(TRACE, {}).get("reused")
                found["trained" if trained else "reused"].append(t.task.split(":", 1)[1])
        return {k: sorted(v) for k, v in found.items()}

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def _doc(self) -> dict[str, Any]:
        out = self.outputs
        stored = out.get("store") or {}
        report = out.get("report") or {}
        home = StateFolder(self.state)
        return {
            "run_id": self.run_id, "environment": self.environment, "executor": self.executor,
            "status": self.status, "release": self.release, "started_at": self.started_at,
            "seconds": round(self.seconds, 3), "state": str(self.state),
            "ran": self.ran, "reused": self.reused, "models": self.models,
            "tasks": [t.to_dict() for t in self.tasks],
            "snapshots": out.get("snapshot"),
            "drift": {k.split(":", 1)[1]: {f: v for f, v in d.items() if f != "alerts"}
                      for k, d in out.items() if k.startswith("drift:")},
            "qa": {"passed": (out.get("qa") or {}).get("passed"),
                   "failed": [c for c in (out.get("qa") or {}).get("checks", [])
                              if not c["passed"]]},
            "output_drift": _output_drift_summary(out.get("output_drift"), self.state),
            "alerts": out.get("alerts"),
            "outputs": {
                "predictions": str(home.resolve(stored.get("root", "predictions"))),
                "runs": stored.get("runs"),
                "partitions": stored.get("partitions"),
                "report": str(home.resolve(report["path"])) if report else None,
                "published": (out.get("publish") or {}).get("published"),
                "not_published": (out.get("publish") or {}).get("skipped"),
                "not_published_reasons": (out.get("publish") or {}).get("reasons") or [],
                "alerts_log": str(home.alerts_log),
            },
            "tracking": self.tracking,
        }


def close_interrupted(db: StateDB, environment: str, *, shared: bool) -> list[str]:
    """Mark ``interrupted`` the runs of ``environment`` still ``running`` whose process is
    gone (killed, crashed, the machine restarted): called under the environment's lock, so no
    run of this state folder is alive. A record of another host (a shared PostgreSQL state)
    is left alone; one without host and pid (older versions) only in a local state."""
    host = socket.gethostname()
    closed: list[str] = []
    for record in db.running(environment):
        if record.get("host") is None or record.get("pid") is None:
            gone = not shared
        else:
            gone = record["host"] == host and not process_alive(int(record["pid"]))
        if gone:
            db.record_run({**record, "status": "interrupted", "finished_at": timestamp(),
                           "error": "the run's process ended before the run finished "
                                    "(killed or crashed); found by a later run"})
            closed.append(str(record["run_id"]))
    return closed


def _output_drift_summary(doc: dict[str, Any] | None, state: Path) -> dict[str, Any] | None:
    """The output-drift task's result without its alert records (they are in ``alerts``)."""
    if doc is None:
        return None
    return {
        "compared": doc["compared"], "skipped": doc["skipped"],
        "previous_runs": doc["previous_runs"], "alerts": len(doc["alerts"]),
        "note": doc["note"], "report": str(StateFolder(state).resolve(doc["report"])),
        "models": [{k: m[k] for k in ("model", "level", "status", "origin", "previous_run",
                                      "previous_origin", "config_changed", "alerts",
                                      "skipped")}
                   | {"total_ratio": (m["change"] or {}).get("total_ratio"),
                      "max_jump": (m["change"] or {}).get("max_jump")}
                   for m in doc["models"]],
    }


@dataclass(frozen=True)
class MonthlyPlan:
    """What a monthly run will do, decided before anything runs: its environment, catalog,
    graph and, for a publishing environment, the verified release it runs under."""

    environment: str
    catalog: Catalog
    graph: Graph
    publish: bool
    release: dict[str, Any] | None


def prepare_monthly(settings: Settings, *, environment: str | None = None,
                    catalog: Catalog | None = None,
                    allow_engine_change: str | None = None,
                    alerts: bool = True) -> MonthlyPlan:
    """Validate the environment and, for a publishing one, refuse unless the workspace is a
    clean production release running exactly the release's models, settings and engine
    (:mod:`ewspipe.flows.release_guard`): before any training, not after. A publishing run
    always delivers its alerts (``alerts=False`` is refused there)."""
    run_settings = settings.run
    env = environment or run_settings.environment
    if env not in run_settings.environments:
        raise InputError(f"{env!r} is not an environment; use one of "
                         f"{', '.join(run_settings.environments)} (ewspipe.toml [run] "
                         "environments)", parameter="environment")
    publish = publishes(settings, env)  # refuses a publish_environments naming no environment
    if allow_engine_change is not None and not publish:
        raise InputError(f"environment {env!r} does not publish; an engine change is only "
                         "allowed for a production run", parameter="allow_engine_change")
    if allow_engine_change is not None and not allow_engine_change.strip():
        raise InputError("give the reason for the engine change (recorded on the run and on "
                         "every forecast it publishes)", parameter="allow_engine_change")
    if not alerts and publish:
        raise InputError(f"environment {env!r} publishes, and a publishing run always "
                         "delivers its alerts; run without --no-alerts, or in an environment "
                         "that does not publish", parameter="no_alerts")
    release = check_release(settings) if publish else None
    catalog = catalog or load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    verified = (verify_workspace(settings, release, catalog,
                                 allow_engine_change=allow_engine_change)
                if release is not None else None)
    graph = build_monthly_graph(catalog, publish=publish, release=verified, alerts=alerts)
    return MonthlyPlan(env, catalog, graph, publish, verified)


def run_outcome(plan: MonthlyPlan, outputs: dict[str, Any]) -> str:
    """``ok``; ``not_published`` for a publishing run that moved no pointer (whatever the
    reason: QA, guards, release); ``qa_failed`` for another run whose QA failed."""
    if plan.publish and not (outputs.get("publish") or {}).get("published"):
        return "not_published"
    return "ok" if (outputs.get("qa") or {}).get("passed") else "qa_failed"


def run_monthly(
    settings: Settings,
    *,
    environment: str | None = None,
    executor: str | ExecutorSpec | None = None,
    lock_timeout: float | None = None,
    progress: Progress | None = None,
    catalog: Catalog | None = None,
    allow_engine_change: str | None = None,
    alerts: bool = True,
) -> MonthlyRun:
    """Run (or resume, or reuse) this month's graph in ``environment``.

    Args:
        settings: workspace settings; ``[run]`` supplies the defaults of the other args.
        environment: development (default), staging or production; only
            ``[run] publish_environments`` publish.
        executor: ``local``, ``dask`` or a Dask scheduler address (``tcp://HOST:PORT``,
            ``tls://HOST:PORT``; :func:`ewspipe.flows.executors.parse_executor`); default
            ``[run] executor``.
        lock_timeout: seconds to wait for another run on the same environment.
        progress: called as ``progress(event, record, done, total)`` for each task event.
        allow_engine_change: the reason to run production with an engine other than the one
            the release validated (recorded on the run and on published pointers).
        alerts: deliver the run's alerts through ``[alerts]`` (``--no-alerts``: counted in
            the record, not delivered; refused for a publishing environment).

    Returns:
        The run; ``status`` is ``not_published`` when a publishing environment published
        nothing (the reasons are in ``record().outputs.not_published_reasons``).

    Raises:
        InputError: unknown environment or executor (exit 2).
        ReleaseGuardFailed: a publishing environment whose workspace is not a clean, completed
            production release, or differs from it (exit 1; see
            :mod:`ewspipe.flows.release_guard`).
        StateLocked: another run holds the environment (exit 1).
        EwspipeError: whatever a task raised; completed tasks stay cached for the next run.
    """
    run_settings = settings.run
    spec = parse_executor(run_settings.executor if executor is None else executor)
    timeout = run_settings.lock_timeout_seconds if lock_timeout is None else lock_timeout
    if not timeout >= 0:  # NaN too: a deadline of now + NaN is never reached
        raise InputError(f"lock timeout must be >= 0 seconds, got {timeout}",
                         parameter="lock_timeout")
    plan = prepare_monthly(settings, environment=environment, catalog=catalog,
                           allow_engine_change=allow_engine_change, alerts=alerts)
    env = plan.environment
    layout = settings.layout.env(env)
    state = layout.root
    ctx = tasks.TaskContext(settings=settings, environment=env, state=state)
    require_writable(state, layout.tasks, layout.artifacts)  # before any training
    with EnvironmentLock(layout.lock, timeout=timeout, environment=env):
        db = open_state_db(run_settings.state_url, state)
        run_id = f"{timestamp()}_{env}_{uuid.uuid4().hex[:6]}"
        started = time.time()
        started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        close_interrupted(db, env, shared=bool(run_settings.state_url))
        # what a killed run of this environment left half-written (its tasks rerun anyway)
        remove_stale_temps_below(state, layout.artifacts)
        base = {"run_id": run_id, "environment": env, "started_at": started_at,
                "executor": str(spec), "code": code_version().to_dict(), "release": plan.release,
                "host": socket.gethostname(), "pid": os.getpid()}
        db.record_run({**base, "status": "running"})
        ex = make_executor(spec, workers=run_settings.dask_workers or None,
                           memory_limit=run_settings.dask_memory_limit_bytes)
        try:
            done = run_graph(plan.graph, ctx, base_key=base_key(settings, env), executor=ex,
                             cache=TaskCache(layout.tasks, state), progress=progress,
                             sections=settings_sections(settings))
        except BaseException as exc:
            db.record_run({**base, "status": "failed", "error": str(exc),
                           "finished_at": timestamp()})
            raise
        finally:
            ex.close()
        result = MonthlyRun(
            run_id=run_id, environment=env, executor=ex.name, state=state,
            status=run_outcome(plan, done.outputs), started_at=started_at,
            seconds=time.time() - started, tasks=done.records, outputs=done.outputs,
            release=plan.release,
        )
        db.record_run({**base, **result.to_dict(), "finished_at": timestamp()})
    # MLflow record of the stored run ([tracking] enabled); never fatal, once per run id
    if settings.tracking.enabled:
        result.tracking = track_monthly_run(settings, {**base, **result.to_dict()}).to_dict()
    return result
