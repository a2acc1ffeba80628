"""`ewspipe qa ...`: output drift of a forecast run and the freshness guards of publishing.

Exit codes: ``output-drift`` exits 1 when an alert fired, ``guards`` exits 1 when a guard
failed (the message says what to refresh); both exit 2 on bad options or unknown runs and
snapshots.
"""

from __future__ import annotations

import typer

from ewspipe.cli.output import JSON_OPTION, NO_ALERTS_OPTION, emit
from ewspipe.errors import InputError
from ewspipe.flows.guards import GuardReport, freshness_report, run_freshness_report
from ewspipe.flows.output_drift import OutputDriftReport, check_output_drift
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Quality assurance: output drift of forecasts, freshness guards.",
                  no_args_is_help=True,
                  rich_markup_mode=None)


def _drift_lines(report: OutputDriftReport) -> str:
    lines = [f"Output drift of forecast run {report.run_id}"]
    for m in report.models:
        if m.change is None or m.skipped:
            lines.append(f"  {m.model:<20} skipped: {m.skipped}")
            continue
        c = m.change
        ratio = c.total_ratio
        share = c.nonzero_share_change
        lines.append(
            f"  {m.model:<20} vs origin {m.previous_origin}: total x"
            f"{'inf' if ratio == float('inf') else 'n/a' if ratio is None else f'{ratio:.3f}'}"
            f", non-zero share {'n/a' if share is None else f'{share:+.3f}'}, max unit jump "
            f"{'n/a' if c.max_jump is None else f'{c.max_jump:.3f}'}; {len(m.alerts)} alerts"
            + ("; configuration changed" if m.config_changed else ""))
    lines += [f"  {a.severity.value} {a.message}" for a in report.alerts]
    if report.path:
        lines.append(f"  report: {report.path}")
    return "\n".join(lines)


@app.command("output-drift")
def output_drift(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Forecast run id (or a unique part of it)."),
    no_alerts: bool = NO_ALERTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare a forecast run with the previous month's forecasts; exit 1 on alerts.

    Total predicted deaths, per-unit jumps and the share of non-zero predictions on the
    target months both forecasts cover, against the qa.output_drift bounds in ewspipe.toml.
    """
    settings: Settings = ctx.obj
    report = check_output_drift(settings, run_id, deliver=not no_alerts)
    emit(report.to_dict(), as_json, lambda: _drift_lines(report))
    if report.alerts:
        raise typer.Exit(1)


def _guard_lines(report: GuardReport) -> str:
    lines = ["Freshness guards"]
    for c in report.checks:
        lines.append(f"  [{'ok  ' if c.passed else 'FAIL'}] {c.guard:<13} {c.detail}")
        if c.fix:
            lines.append(f"         fix: {c.fix}")
    lines.append(f"Verdict: {'PASS' if report.passed else 'FAIL (do not publish)'}")
    return "\n".join(lines)


@app.command("guards")
def guards(
    ctx: typer.Context,
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", metavar="<id>",
        help="Snapshot id per level (repeatable; default: the newest of "
        "each level)."),
    run: str | None = typer.Option(None, "--run", help="A forecast run: check its snapshots "
                                   "and its models' artifacts."),
    expected_last_month: int | None = typer.Option(
        None, "--expected-last-month", min=1, help="Expected last observed month (month_id; "
        "default from the qa settings)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The freshness guards publishing runs: snapshot age, last month, artifacts; exit 1 on
    failure, naming what to refresh."""
    settings: Settings = ctx.obj
    if run is not None and snapshot:
        raise InputError("options --run and --snapshot exclude each other: a run's snapshots "
                         "are the ones it used")
    if run is not None:
        report = run_freshness_report(settings, run, expected_last_month=expected_last_month)
    else:
        store = SnapshotStore(settings.snapshot_dir)
        manifests = [store.get(ref) for ref in snapshot or []]
        levels = [m.level for m in manifests]
        if len(set(levels)) != len(levels):
            raise InputError("option --snapshot: give at most one snapshot per level")
        if not manifests:
            manifests = [store.latest(lvl) for lvl in sorted({m.level for m in store.list()})]
        if not manifests:
            raise InputError(f"no snapshot in {settings.snapshot_dir}; import data first "
                             "(`ewspipe data import panel FILE --level cm`)")
        report = freshness_report(settings, snapshot_manifest=manifests,
                                  expected_last_month=expected_last_month)
    emit(report.to_dict(), as_json, lambda: _guard_lines(report))
    if not report.passed:
        typer.echo(f"error: {report.message()}", err=True)
        raise typer.Exit(1)
