"""`ewspipe run`: the monthly run (snapshot -> ... -> alerts) on an executor."""

from __future__ import annotations

import typer

from ewspipe.cli.choices import ENVIRONMENTS
from ewspipe.cli.output import (
    JSON_OPTION,
    NO_ALERTS_OPTION,
    QUIET_OPTION,
    emit,
    progress_on_stderr,
)
from ewspipe.cli.run_summary import alerts_words, drift_words, run_summary
from ewspipe.flows.monthly import MonthlyRun
from ewspipe.settings import Settings
from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.workspace import Workspace

__all__ = ["run"]


def _lines(result: MonthlyRun, rec: MonthlyRunRecord, settings: Settings) -> str:
    lines = [
        f"Monthly run {result.run_id} ({result.environment}, {result.executor}): "
        f"{result.status}, {result.seconds:.1f}s",
        f"  tasks: {len(result.ran)} ran, {len(result.reused)} reused",
        f"  models: {len(result.models['trained'])} trained, "
        f"{len(result.models['reused'])} reused",
    ]
    for t in result.tasks:
        lines.append(f"    {t.task:<32} {t.status:<7} {t.seconds:8.2f}s")
    for lvl, snap in sorted((rec.snapshots or {}).items()):
        lines.append(f"  {lvl}: snapshot {snap.id} (last month {snap.last_month}), "
                     + drift_words(rec.drift.get(lvl, {}), settings))
    qa = rec.qa
    assert qa is not None  # a finished run's record always has its QA
    lines.append("  QA: " + ("passed" if qa.passed else "FAILED: " + "; ".join(
        f"{c['model']}: {', '.join(c['problems'])}" for c in qa.failed)))
    od = rec.output_drift or {}
    lines.append("  output drift: " + (od.get("note") or (
        f"{od.get('compared', 0)} forecasts vs {', '.join(od.get('previous_runs') or [])}, "
        f"{od.get('alerts', 0)} alerts")) + f" (report {od.get('report')})")
    alerts = rec.alerts or {}
    outs = rec.outputs
    delivered = (alerts.get("delivery") or {}).get("delivered") is not False
    lines.append(f"  alerts: {alerts_words(alerts)} "
                 + (f"(log {outs.alerts_log})" if delivered else "(not delivered: --no-alerts)"))
    runs = ", ".join(f"{level} {run}" for level, run in sorted((outs.runs or {}).items()))
    lines.append(f"  predictions: {outs.predictions}" + (f" (runs: {runs})" if runs else ""))
    lines.append(f"  report: {outs.report}")
    if result.release:
        rel = result.release
        lines.append(f"  release: {rel['tag']} ({rel['commit'][:12]})" + (
            f", engine override: {rel['engine_override']['reason']}"
            if rel.get("engine_override") else ""))
    if result.status == "not_published":
        reasons = outs.not_published_reasons or [outs.not_published]
        lines.append("  NOT PUBLISHED (exit 1):")
        lines += [f"    - {r}" for r in reasons]
    for p in outs.published or []:
        lines.append(f"  published {p['level']}/{p['target']}: {p['primary']} of run {p['run']}"
                     f" (was {p['previous_run']})")
    return "\n".join(lines + run_summary(rec, settings))


def run(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help=f"Environment: {ENVIRONMENTS}; "
                                   "default [run] environment; only [run] publish_environments "
                                   "publish."),
    executor: str | None = typer.Option(None, "--executor", help="local (in-process), dask "
                                        "(local cluster, one worker per core) or an existing "
                                        "Dask scheduler: tcp://HOST:PORT, tls://HOST:PORT "
                                        "(also ucx, ws, wss). Default: [run] executor."),
    lock_timeout: float | None = typer.Option(None, "--lock-timeout", help="Seconds to wait "
                                              "when another run holds the environment "
                                              "(default [run] lock_timeout_seconds)."),
    quiet: bool = QUIET_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    allow_engine_change: str | None = typer.Option(
        None, "--allow-engine-change", metavar="REASON",
        help="Production only: run although the installed ewspipe differs from the engine "
             "the release validated; the reason is recorded on the run and every pointer."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The monthly run: snapshot, drift, train, forecast, ensembles, QA, store, publish,
    report, alerts. Re-running reuses every unchanged task; a killed run resumes.

    Exit codes: 0 done (production: published); 1 QA failed, a production run that
    published nothing (status not_published, reasons listed, alert sent), a workspace that is
    not exactly a clean production release, or the environment is locked by another run;
    2 bad option or input.
    """
    workspace = Workspace(ctx.obj)
    environment = workspace.env(env)  # an unknown name: "option --env: ..."
    with progress_on_stderr(quiet) as reporter:
        result = environment.run_monthly(
            executor=executor, lock_timeout=lock_timeout, progress=reporter.task,
            allow_engine_change=allow_engine_change, alerts=not no_alerts)
    record = result.record()
    emit(record.to_dict(), as_json, lambda: _lines(result, record, workspace.settings))
    if result.status != "ok":
        raise typer.Exit(1)
