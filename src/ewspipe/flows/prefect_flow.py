"""Optional Prefect integration: the monthly run as a Prefect flow, one Prefect task per node.

The graph is :func:`ewspipe.flows.monthly.build_monthly_graph`'s and every node runs its own
task function (:mod:`ewspipe.flows.tasks`) with the same keys and the same task-result cache
as ``ewspipe run``, so a Prefect run and a CLI run of the same month reuse each other's work.
Prefect only schedules: upstream outputs reach a node as Prefect futures, so independent
nodes (``train:*``, ``forecast:*``) run concurrently on the flow's task runner.

Prefect is an extra (``pip install 'ewspipe[prefect]'``) and is imported only inside this
module's functions; the rest of ewspipe never imports it. ``monthly_flow`` (the deployment's
entrypoint, ``ewspipe.flows.prefect_flow:monthly_flow``) is created on first access.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from ewspipe.catalog import Catalog
from ewspipe.extras import MissingExtra, install_hint, require
from ewspipe.flows import tasks
from ewspipe.flows.graph import Task
from ewspipe.flows.monthly import base_key, close_interrupted, prepare_monthly, run_outcome
from ewspipe.flows.runner import EnvironmentLock, TaskCache
from ewspipe.provenance import code_version, timestamp
from ewspipe.settings import Settings, load_settings
from ewspipe.store.statedb import open_state_db

__all__ = ["FLOW_NAME", "PrefectMissing", "build_prefect_flow", "deploy_monthly",
           "require_prefect", "run_node"]

FLOW_NAME = "ewspipe-monthly"
INSTALL_HINT = install_hint("prefect")
PrefectMissing = MissingExtra  # Prefect is not installed (exit 2, with the install hint)


def require_prefect() -> Any:
    """The ``prefect`` module, or :class:`PrefectMissing` naming the extra to install."""
    return require("prefect", "prefect", what="the Prefect flow (ewspipe prefect)")


def run_node(node: Task, ctx: tasks.TaskContext, base: str,
             upstream: dict[str, Any]) -> dict[str, Any]:
    """One graph node: reuse its cached result or run its task function and cache it.

    Returns ``{"output", "status" ("ran" | "reused"), "seconds", "key"}``.
    """
    cache = TaskCache(ctx.layout.tasks, ctx.state)
    key = node.key(base, upstream)
    hit = cache.get(key) if node.cache else None
    if hit is not None:
        return {"output": hit["output"], "status": "reused",
                "seconds": float(hit.get("seconds", 0.0)), "key": key}
    t0 = time.perf_counter()
    output = node.func(ctx, key=key, **node.arguments(upstream))
    seconds = time.perf_counter() - t0
    if node.cache:
        cache.put(key, {"task": node.name, "key": key, "output": output, "seconds": seconds,
                        "finished_at": timestamp()})
    return {"output": output, "status": "ran", "seconds": seconds, "key": key}


def _node_task(ctx: tasks.TaskContext, base: str, node: Task,
               upstream: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Prefect task body: unwrap the upstream results, run the node."""
    return run_node(node, ctx, base, {name: r["output"] for name, r in upstream.items()})


def _run_flow(settings: Settings, environment: str | None,
              catalog: Catalog | None) -> dict[str, Any]:
    prefect = require_prefect()
    from prefect.cache_policies import NO_CACHE
    from prefect.utilities.annotations import quote

    run_settings = settings.run
    # the same refusals as `ewspipe run`: environment, release, workspace == release
    plan = prepare_monthly(settings, environment=environment, catalog=catalog)
    env, graph = plan.environment, plan.graph
    layout = settings.layout.env(env)
    state = layout.root
    ctx = tasks.TaskContext(settings=settings, environment=env, state=state)
    base = base_key(settings, env)
    with EnvironmentLock(layout.lock, timeout=run_settings.lock_timeout_seconds,
                         environment=env):
        db = open_state_db(run_settings.state_url, state)
        run_id = f"{timestamp()}_{env}_{uuid.uuid4().hex[:6]}"
        started = time.time()
        close_interrupted(db, env, shared=bool(run_settings.state_url))
        record = {"run_id": run_id, "environment": env, "executor": "prefect",
                  "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  "code": code_version().to_dict(), "release": plan.release,
                  "host": socket.gethostname(), "pid": os.getpid()}
        db.record_run({**record, "status": "running"})
        try:
            futures: dict[str, Any] = {}
            for node in graph:
                task = prefect.task(_node_task, name=node.name, task_run_name=node.name,
                                    cache_policy=NO_CACHE, persist_result=False)
                # quote(): context and node pass as they are; only the upstream futures resolve
                futures[node.name] = task.submit(
                    quote(ctx), base, quote(node), {u: futures[u] for u in node.upstream})
            results = {name: f.result() for name, f in futures.items()}
        except BaseException as exc:
            db.record_run({**record, "status": "failed", "error": str(exc),
                           "finished_at": timestamp()})
            raise
        summary = {
            **record,
            "status": run_outcome(plan, {n: r["output"] for n, r in results.items()}),
            "seconds": round(time.time() - started, 3),
            "tasks": [{"task": n, "status": r["status"], "seconds": round(r["seconds"], 3),
                       "key": r["key"]} for n, r in results.items()],
            "outputs": {n: r["output"] for n, r in results.items()},
        }
        db.record_run({**{k: v for k, v in summary.items() if k != "outputs"},
                       "finished_at": timestamp()})
    return summary


def build_prefect_flow() -> Any:
    """The Prefect flow ``ewspipe-monthly(config, state_dir, environment)``; its return value
    is the run summary (status, each task ran or reused, outputs)."""
    prefect = require_prefect()

    def monthly(config: str | None = None, state_dir: str | None = None,
                environment: str | None = None) -> dict[str, Any]:
        settings = load_settings(Path(config) if config else None,
                                 state_dir=Path(state_dir) if state_dir else None)
        return _run_flow(settings, environment, None)

    monthly.__module__ = __name__
    monthly.__name__ = monthly.__qualname__ = "monthly_flow"  # the deployment's entrypoint
    return prefect.flow(monthly, name=FLOW_NAME, log_prints=True, validate_parameters=True)


def deploy_monthly(*, name: str, cron: str, work_pool: str | None,
                   parameters: dict[str, Any]) -> str:
    """Create or update the deployment ``ewspipe-monthly/<name>`` on the Prefect server the
    active profile points at (``PREFECT_API_URL``); returns the deployment id."""
    require_prefect()
    from prefect.deployments.runner import EntrypointType

    flow = build_prefect_flow()
    deployment = flow.to_deployment(
        name=name, cron=cron, parameters=parameters,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description="ewspipe monthly run (snapshot -> drift -> train -> forecast -> "
                    "ensembles -> qa -> store -> publish -> report -> alerts)",
        tags=["ewspipe"],
    )
    deployment_id = deployment.apply(work_pool_name=work_pool)
    return str(deployment_id)


_FLOW: Any = None


def __getattr__(name: str) -> Any:
    """``monthly_flow``: the flow object, created (and Prefect imported) on first access."""
    global _FLOW
    if name == "monthly_flow":
        if _FLOW is None:
            _FLOW = build_prefect_flow()
        return _FLOW
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
