"""Monitoring tasks of the monthly run: output drift against the previous monthly run.

Kept apart from :mod:`ewspipe.flows.tasks` (the run's core) and wired in
:func:`ewspipe.flows.monthly.build_monthly_graph`. Same contract as every task: ``func(ctx, *,
key, **inputs) -> small JSON-ready dict``; files below the environment's state folder are
named by the task key and written temp-then-rename; nothing read from the clock goes into an
output, so a re-run of the same month reuses the task and delivers nothing twice.

Output drift compares each model's and ensemble's forecast stored by this run with the same
model's forecast in the environment's prediction store whose origin (last observed month) is
the latest one before this run's (the newest partition if several runs share it): the
previous monthly run of this environment. The measures and bounds are those of ``ewspipe
forecast`` runs (:mod:`ewspipe.flows.output_drift`, ``[qa.output_drift]``). A first run has
nothing to compare and says so; that is not an error. Alerts name units from the snapshot
the forecast was made on ("Ukraine (UKR, 117)"; :mod:`ewspipe.flows.naming`).
"""

from __future__ import annotations

from typing import Any

from ewspipe.alerts.records import Alert
from ewspipe.atomic import write_json
from ewspipe.flows.output_drift import ModelOutputDrift, compare_forecasts
from ewspipe.flows.tasks import TaskContext
from ewspipe.geography import unit_names
from ewspipe.store.prediction_store import PredictionStore

__all__ = ["check_output_drift", "previous_partition"]

Output = dict[str, Any]


def previous_partition(store: PredictionStore, level: str, model: str, origin: int,
                       ) -> tuple[str, int] | None:
    """(run, origin) of ``model``'s stored forecast with the latest origin before ``origin``;
    among runs sharing that origin, the newest written. None when there is none."""
    best: tuple[tuple[int, int], str, int] | None = None
    for position, run in enumerate(store.runs(level, model)):  # oldest written first
        origins = store.origins(level, run, model)
        if len(origins) != 1 or origins[0] >= origin:
            continue
        rank = (origins[0], position)
        if best is None or rank > best[0]:
            best = (rank, run, origins[0])
    return None if best is None else (best[1], best[2])


def _alert_dict(alert: Alert, environment: str) -> dict[str, Any]:
    data = alert.to_dict()
    data.pop("time", None)  # stamped at delivery (route_alerts), so the output is stable
    data.pop("run_id", None)  # route_alerts sets the run's; the store run stays in details
    data["environment"] = environment
    return data


def check_output_drift(ctx: TaskContext, *, key: str, stored: Output) -> Output:
    """Output drift of every forecast this run stored vs the previous monthly run's (module
    doc). Alerts are returned for ``route_alerts``; the full report is
    ``qa/output_drift/<key>.json`` below the environment's state folder."""
    store = ctx.predictions
    bounds = ctx.settings.qa.output_drift
    models: list[ModelOutputDrift] = []
    for part in stored["partitions"]:
        level, run, name = part["level"], part["run"], part["model"]
        origins = store.origins(level, run, name)
        d = ModelOutputDrift(name, level, part["kind"], part["status"],
                             origins[0] if len(origins) == 1 else None)
        models.append(d)
        if d.origin is None:
            d.skipped = f"the stored forecast has {len(origins)} origins, not one"
            continue
        prev = previous_partition(store, level, name, d.origin)
        if prev is None:
            d.skipped = (f"no earlier forecast of {name} in the {ctx.environment} prediction "
                         "store (first monthly run of it)")
            continue
        d.previous_run, d.previous_origin = prev
        snapshot = store.metadata(level, run, name).get("snapshot")
        compare_forecasts(d, store.read(level, run, name, samples=False),
                          store.read(level, d.previous_run, name, samples=False),
                          run_id=run, bounds=bounds,
                          names=unit_names(ctx.settings, level,
                                           snapshot=str(snapshot) if snapshot else None))
    compared = [d for d in models if d.change is not None and d.skipped is None]
    alerts = [a for d in models for a in d.alerts]
    note = None
    if not compared:
        note = (f"nothing to compare: no model of this run has an earlier forecast in the "
                f"{ctx.environment} prediction store (first monthly run)"
                if all(d.previous_run is None for d in models)
                else "nothing to compare: no shared target month with the previous forecasts")
    doc = {
        "environment": ctx.environment, "runs": stored["runs"],
        "bounds": bounds.model_dump(mode="json"),
        "previous_runs": sorted({d.previous_run for d in compared if d.previous_run}),
        "models": [d.to_dict() for d in models],
        "alerts": [_alert_dict(a, ctx.environment) for a in alerts],
        "note": note,
    }
    path = ctx.layout.output_drift_reports / f"{key[:16]}.json"
    rel = ctx.layout.relative(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc, default=str)
    return {**doc, "compared": len(compared), "skipped": len(models) - len(compared),
            "report": rel}
