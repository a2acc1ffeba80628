"""`ewspipe online-eval`: score stored forecasts against the actuals that have arrived since.

Exit codes: 0 when no alert fired, 1 when a deployed model or ensemble alerted (worse than a
baseline, or above its historical band; ``[qa.online]``), 2 for bad options, unknown
snapshots or environments, or when nothing is stored to evaluate. ``--env ENV`` evaluates the
monthly runs of ENV (its prediction store); without it the ``ewspipe forecast`` runs, or the
monthly runs of ``[run] environment`` when no forecast run is stored.
"""

from __future__ import annotations

from typing import Any

import typer

from ewspipe.cli.choices import ENVIRONMENTS
from ewspipe.cli.output import (
    JSON_OPTION,
    NO_ALERTS_OPTION,
    QUIET_OPTION,
    emit,
    progress_on_stderr,
)
from ewspipe.flows.online import OnlineEvalResult, online_eval
from ewspipe.settings import Settings

__all__ = ["online_eval_command"]


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _lines(result: OnlineEvalResult) -> str:
    rule = result.settings
    metric = rule["metric"]
    source = result.source
    lines = ["Online evaluation of " + (
        f"the monthly runs of {source['environment']}" if source.get("kind") == "monthly_runs"
        else "the forecast runs") + f" ({source.get('path')})"]
    for lvl, m in sorted(result.actuals.items()):
        lines.append(f"  actuals {lvl}: snapshot {m.id}, observed through {m.last_month}")
    lines.append(f"  {'model':<20} {'status':<9} {'origins':>11} {'scored':>9} {'pending':>9} "
                 f"{'missing':>8} {metric.upper():>8} {'window':>8}")
    for m in result.models:
        origins = (f"{m.runs[0].origin}..{m.runs[-1].origin}" if m.runs else "-")
        pooled = m.evaluation.pooled.get(metric) if m.evaluation else None
        window = m.assessment.score if m.assessment else None
        lines.append(f"  {m.model:<20} {m.status:<9} {origins:>11} {m.n_scored:>9,} "
                     f"{m.pending.rows:>9,} {m.missing:>8,} {_f(pooled):>8} {_f(window):>8}")
    for m in result.models:
        a = m.assessment
        if a is None:
            continue
        verdict = []
        if a.worse_than_baseline:
            verdict.append("WORSE than a baseline")
        if a.beyond_band:
            verdict.append("ABOVE its band")
        band = (f"band <= {_f(a.band.upper)}" if a.band.measured
                else f"band not measured ({a.band.reason})")
        best = next((b for b in a.baselines if b.baseline == a.best_baseline), None)
        lines.append(
            f"  {m.model}: {metric} {_f(a.score)} over {a.window[0]}..{a.window[-1]} vs best "
            f"baseline {a.best_baseline or 'none'} {_f(best.baseline_score if best else None)}"
            f"; {band}: {', '.join(verdict) or 'ok'}")
    for c in result.comparisons:
        lines.append(
            f"  {c['deployed']} vs shadow {c['shadow']}: {metric} {_f(c['deployed_score'])} vs "
            f"{_f(c['shadow_score'])} on {c['rows']:,} shared rows; last "
            f"{len(c['window']['months'])} months {_f(c['window']['deployed_score'])} vs "
            f"{_f(c['window']['shadow_score'])}")
    lines.append(f"  alerts: {len(result.alerts)}"
                 + "".join(f"\n    {a.severity.value} {a.message}" for a in result.alerts))
    lines.extend(f"  note: {n}" for n in result.notes)
    if result.directory:
        lines.append(f"  stored in {result.directory}")
    return "\n".join(lines)


def online_eval_command(
    ctx: typer.Context,
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", metavar="<id>",
        help="Actuals: snapshot id per level (repeatable; default: the "
        "newest of each level)."),
    env: str | None = typer.Option(
        None, "--env", help="Evaluate the monthly runs (ewspipe run) of this environment "
        "(default: the ewspipe forecast runs, or when there are none the monthly runs of "
        "[run] environment). Environment: " + ENVIRONMENTS + "."),
    no_alerts: bool = NO_ALERTS_OPTION,
    steps: bool = typer.Option(True, "--steps/--no-steps", help="Include per-lead-time "
                               "scores in the JSON output."),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Score every stored forecast whose target months now have actuals; exit 1 on alerts.

    Scores by model, lead time (step) and target month with the evaluation metrics; compares
    deployed and shadow models on shared rows; alerts when a deployed model or ensemble does
    worse than a baseline or than its own band over the last window_months (qa.online
    settings). Results go to <state_dir>/online/ (monthly runs: <state_dir>/<env>/online/).
    """
    settings: Settings = ctx.obj
    with progress_on_stderr(quiet):
        result = online_eval(settings, snapshot=snapshot, deliver=not no_alerts,
                             environment=env)
    emit(result.to_dict(steps=steps), as_json, lambda: _lines(result))
    if result.alerts:
        raise typer.Exit(1)
