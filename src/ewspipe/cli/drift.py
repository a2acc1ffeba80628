"""`ewspipe drift ...`: input drift check, self-test and back-test of a snapshot.

Exit codes: ``check`` exits 1 when an alarm reaches ``[drift] fail_level`` (severity =
int(1 + value / threshold); default 3, i.e. a value more than twice its threshold), 0
otherwise, alarms below the fail level included; ``selftest`` exits 1 when a detector misses
its perturbation or fires on the clean data; ``backtest`` reports and exits 0. Bad options,
unknown snapshots and too-short histories exit 2.
"""

from __future__ import annotations

from typing import Any

import typer

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.cli.choices import LevelName, RunTypeName
from ewspipe.cli.output import JSON_OPTION, NO_ALERTS_OPTION, emit
from ewspipe.drift.backtest import backtest, markdown_table
from ewspipe.drift.check import DriftConfig
from ewspipe.drift.selftest import require_pass, run_selftest
from ewspipe.flows.ingest import check_snapshot
from ewspipe.panel.schema import Level, Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.settings import Settings

__all__ = ["app", "drift_lines"]

app = typer.Typer(help="Input drift: check a snapshot, self-test the detectors, back-test them.",
                  no_args_is_help=True,
                  rich_markup_mode=None)

SNAPSHOT_OPTION = typer.Option(
    None, "--snapshot", help="Snapshot id or unique prefix (default: the latest of --level)."
)
LEVEL_OPTION = typer.Option("cm", "--level", help="Level of the latest snapshot: cm or pgm.")
RUN_TYPE_OPTION = typer.Option(
    "forecasting", "--run-type", help="Thresholds of calibration, validation or forecasting."
)
MONTH_OPTION = typer.Option(
    None, "--month", help="Last test month (month_id; default: the snapshot's last month)."
)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.2e}"


def drift_lines(summary: dict[str, Any], *, indent: str = "  ") -> list[str]:
    """Human lines for a drift summary (as stored in manifests and import output)."""
    if "skipped" in summary:
        return [f"{indent}Drift: not checked ({summary['skipped']})"]
    test = summary.get("test_label") or summary.get("test")
    std = summary.get("standard_label") or summary.get("standard")
    head = f"{indent}Drift ({summary['run_type']} thresholds; test {test} vs standard {std}): "
    if not summary["alarms"]:
        return [head + "quiet"]
    verdict = "FAIL" if summary["failed"] else "below the fail level"
    lines = [head + f"{summary['alarms']} alarms, max severity {summary['max_severity']}, "
             f"{verdict} (fail level {summary['fail_level']})"]
    counts = ", ".join(f"{k} {v}" for k, v in summary["by_detector"].items())
    lines.append(f"{indent}  by detector: {counts}")
    for a in summary["top"]:
        lines.append(
            f"{indent}  [{a['level']:<8}] sev {a['severity']:<4} {a['detector']:<19} "
            f"{a['feature']:<8} {a['offender']:<22} value {_fmt(a['value'])} > "
            f"{_fmt(a['threshold'])}"
        )
    if summary["alarms"] > len(summary["top"]):
        lines.append(f"{indent}  ... {summary['alarms'] - len(summary['top'])} more "
                     "(ewspipe drift check --json)")
    return lines


def _load(ctx: typer.Context, snapshot: str | None, level: str) -> tuple[Manifest, Panel]:
    settings: Settings = ctx.obj
    store = SnapshotStore(settings.snapshot_dir)
    manifest = (store.get(snapshot) if snapshot is not None
                else store.latest(Level.parse(level)))
    return manifest, store.load(manifest.id)


@app.command("check")
def check(
    ctx: typer.Context,
    snapshot: str | None = SNAPSHOT_OPTION,
    level: LevelName = LEVEL_OPTION,
    run_type: RunTypeName = RUN_TYPE_OPTION,
    month: int | None = MONTH_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the detectors on a snapshot's last month vs the 30 before; exit 1 on failure.

    The check fails when an alarm reaches [drift] fail_level (default 3: a value more than
    twice its threshold); alarms are also recorded as alerts unless --no-alerts.
    """
    settings: Settings = ctx.obj
    report, delivery = check_snapshot(settings, snapshot, run_type=run_type, level=level,
                                      month=month, alerts=not no_alerts)
    data = {**report.to_dict(), "delivery": delivery.to_dict() if delivery else None}

    def human() -> str:
        w = report.windows
        u = report.units
        lines = [
            f"Drift check: snapshot {report.snapshot} ({report.level}), run type "
            f"{report.run_type}",
            f"  test {w['test_label']} vs standard {w['standard_label']} "
            f"({w['standard_months']} months), {w['units']:,} units, features "
            f"{', '.join(w['features'])}",
            f"  units in the test month {u['test_last_month']:,} (before: "
            f"{u['standard_last_month']:,}); dropped {u['dropped_count']}, added "
            f"{u['added_count']}",
            *drift_lines(report.summary(top=20)),
        ]
        if report.not_measured:
            lines.append("  not measurable: " + "; ".join(
                f"{k} ({', '.join(v)})" for k, v in report.not_measured.items()))
        lines.append(f"Verdict: {'FAIL' if report.failed else 'PASS'}")
        return "\n".join(lines)

    emit(data, as_json, human)
    if report.failed:
        raise typer.Exit(1)


@app.command("selftest")
def selftest(
    ctx: typer.Context,
    snapshot: str | None = SNAPSHOT_OPTION,
    level: LevelName = LEVEL_OPTION,
    run_type: RunTypeName = RUN_TYPE_OPTION,
    month: int | None = MONTH_OPTION,
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random perturbations."),
    no_alerts: bool = typer.Option(False, "--no-alerts", help="Do not route a failure as a "
                                   "CRITICAL alert."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Perturb a clean snapshot once per detector; exit 1 naming any detector that fails.

    A detector fails when it misses its perturbation or fires on the clean data. A failure is
    also recorded as a CRITICAL drift.selftest alert (as in the monthly run) unless --no-alerts.
    """
    settings: Settings = ctx.obj
    manifest, panel = _load(ctx, snapshot, level)
    config = DriftConfig.from_settings(settings.drift, run_type, manifest.level)
    result = run_selftest(panel, config, end=month, snapshot=manifest.id, seed=seed)
    failures = result.failures()
    if failures and not no_alerts:  # a detector that cannot see a break is an incident
        with build_router(settings.alerts, settings.state_dir) as router:
            router.route([Alert(source="drift.selftest", severity=Severity.CRITICAL,
                                offender=str(manifest.level),
                                message=f"drift self-test failed on {manifest.id}: "
                                + "; ".join(failures))])
    require_pass(result)

    def human() -> str:
        lines = [f"Drift self-test: snapshot {manifest.id} ({manifest.level}), test month "
                 f"{result.month}, run type {run_type}: clean data quiet"]
        for c in result.cases:
            top = c.top or {}
            if not c.applicable:
                lines.append(f"  [n/a] {c.detector:<18} too few positive values in the windows "
                             "to test it (min_positives)")
                continue
            lines.append(
                f"  [ok] {c.detector:<19} fired on {c.perturbation:<20} "
                f"{c.alarms:>6} alarms, max severity {c.max_severity} "
                f"(e.g. {top.get('feature')} {top.get('offender')})"
            )
        tested = sum(c.applicable for c in result.cases)
        skipped = len(result.cases) - tested
        lines.append(f"PASS: all {tested} testable detectors fire on their perturbation"
                     + (f" ({skipped} not applicable to this data)" if skipped else ""))
        return "\n".join(lines)

    emit(result.to_dict(), as_json, human)


@app.command("backtest")
def backtest_cmd(
    ctx: typer.Context,
    snapshot: str = typer.Option(..., "--snapshot", help="Snapshot id or unique prefix."),
    run_type: RunTypeName = RUN_TYPE_OPTION,
    first: int | None = typer.Option(None, "--from", help="First test month (month_id)."),
    last: int | None = typer.Option(None, "--to", help="Last test month (month_id)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the detectors on every month against the months before it; report how often.

    Prints the share of months each detector fires on, by alert level, as a Markdown table,
    and the months it fires on.
    """
    settings: Settings = ctx.obj
    manifest, panel = _load(ctx, snapshot, "cm")
    config = DriftConfig.from_settings(settings.drift, run_type, manifest.level)
    result = backtest(panel, config, first=first, last=last, snapshot=manifest.id).to_dict()

    def human() -> str:
        lines = [f"Drift back-test: snapshot {manifest.id} ({manifest.level})", "",
                 markdown_table(result), ""]
        for name, d in result["detectors"].items():
            if not d["fired"]:
                continue
            shown = d["fired"][:40]
            months = ", ".join(f"{f['month']}({f['severity']})" for f in shown)
            more = f", ... {len(d['fired']) - len(shown)} more" if len(d["fired"]) > 40 else ""
            lines.append(f"- {name} fired on month(severity): {months}{more}")
        return "\n".join(lines)

    emit(result, as_json, human)
