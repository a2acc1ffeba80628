"""`ewspipe evaluate` and `ewspipe forecast`: run named models, store and print results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ewspipe.catalog import Catalog, load_catalog
from ewspipe.cli.choices import CompareBy, EvaluationRunType, LevelName
from ewspipe.cli.output import (
    JSON_OPTION,
    NO_ALERTS_OPTION,
    QUIET_OPTION,
    emit,
    progress_on_stderr,
    snapshot_words,
)
from ewspipe.errors import EwspipeError, InputError
from ewspipe.flows.backtest_run import BacktestRun, evaluate_backtest
from ewspipe.flows.compare import RunComparison, compare_runs, stored_run
from ewspipe.flows.executors import parse_executor
from ewspipe.flows.modelrun import (
    RunResult,
    evaluate_models,
    forecast_models,
    parse_run_type,
)
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.runs import RunStore
from ewspipe.store.tracking import track_report

__all__ = ["compare", "evaluate_app", "forecast"]

evaluate_app = typer.Typer(
    rich_markup_mode=None,
    help="Rolling-origin evaluation of models (13 origins x 36 steps) and run comparisons.",
    invoke_without_command=True,
)

MODEL_OPTION = typer.Option(None, "--model", metavar="<name>",
                            help="Model name (repeatable; default: all non-deprecated "
                            "models).")
LEVEL_OPTION = typer.Option(None, "--level", help="Only models of this level (cm or pgm).")
SNAPSHOT_OPTION = typer.Option(None, "--snapshot", metavar="<id>",
                               help="Snapshot id per level (repeatable; default: the "
                               "latest of each level).")
EXECUTOR_OPTION = typer.Option(
    "local", "--executor",
    help="local (in-process: the next model fits while the last is predicted and scored), "
    "dask (a local cluster, one worker per core) or an existing Dask scheduler: "
    "tcp://HOST:PORT, tls://HOST:PORT (also ucx, ws, wss).")


def _catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def _ensemble_lines(info: dict[str, Any]) -> list[str]:
    members = ", ".join(f"{m} {w:.2f}" for m, w in info["weights"].items())
    lines = [f"    {info['aggregation']} of {members}"
             + ("; samples pooled" if info["samples"] == "pool" else "")]
    rec = info.get("reconciliation")
    if rec:
        low, high = rec["factor_min"], rec["factor_max"]
        span = f"factor {low:.3g}..{high:.3g}" if low is not None else "no factor"
        outside = rec["countries_outside_grid"]
        lines.append(
            f"    reconciled with {rec['country_model']}: {rec['country_months']:,} "
            f"country-months of {rec['countries']} countries, {span}; alerts: "
            f"{rec['factor_alerts']:,} factor outside [{rec['min_factor']:g}, "
            f"{rec['max_factor']:g}], {rec['zero_sum_alerts']:,} zero cell sum"
            + (f"; {outside['countries']} cm countries own no cell (not reconciled)"
               if outside["countries"] else "")
        )
    return lines


_ALERT_LINES = 5


def _alert_lines(alerts: list[dict[str, Any]]) -> list[str]:
    if not alerts:
        return ["  alerts: none"]
    by_source: dict[str, int] = {}
    for a in alerts:
        by_source[a["source"]] = by_source.get(a["source"], 0) + 1
    counts = ", ".join(f"{n:,} {src}" for src, n in sorted(by_source.items()))
    lines = [f"  alerts: {len(alerts):,} ({counts}); all in run.json"]
    lines += [f"    {a['severity']} {a['source']}: {a['message']}" for a in alerts[:_ALERT_LINES]]
    if len(alerts) > _ALERT_LINES:
        lines.append(f"    ... and {len(alerts) - _ALERT_LINES:,} more")
    return lines


def _implausible_lines(found: list[dict[str, Any]]) -> list[str]:
    """Every forecast above the plausibility ceiling, in full: these are never folded away
    with the other alerts."""
    if not found:
        return []
    lines = [f"  IMPLAUSIBLE forecasts: {len(found)} model(s) above the plausibility ceiling "
             "([qa] max_forecast_factor x the largest count observed at the level); alerted"]
    lines += [f"    {f['model']} ({f['kind']}): {f['value']:,.0f} for {f['unit_column']} "
              f"{f['unit']}, month {f['month_id']} (origin {f['origin']}, step {f['step']}) "
              f"> ceiling {f['ceiling']:,.0f}; {f['rows_above']:,} row(s) above"
              for f in found]
    return lines


def _lines(result: RunResult, headline: str) -> str:
    lines = [f"{headline} run {result.run_id} ({result.run_type})", f"  stored in {result.path}"]
    if result.tasks:
        reused = sum(t.status == "reused" for t in result.tasks)
        lines.append(f"  tasks: {len(result.tasks) - reused} ran, {reused} reused (task cache)")
    for m in result.models:
        how = "ensemble" if m.kind == "ensemble" else "reused" if m.reused else "trained"
        line = (f"  {m.model:<20} {m.level:<4} {m.status:<9} {how:<8} rows {m.rows:>9,}  "
                f"fit {m.timings['fit']:.1f}s predict {m.timings['predict']:.1f}s")
        if m.metrics is not None:
            pooled = m.metrics["pooled"]
            line += (f"  MSLE {_fmt(pooled.get('msle'))}  MSE {_fmt(pooled.get('mse'))}"
                     + (f"  CRPS {_fmt(pooled['crps'])}" if "crps" in pooled else "")
                     + (f"  cov90 {_fmt(pooled['coverage_90'])}  PIT90 "
                        f"{_fmt(pooled.get('pit_coverage_90'))}" if "coverage_90" in pooled
                        else ""))
        lines.append(line)
        if m.ensemble is not None:
            lines += _ensemble_lines(m.ensemble)
    unscored = {m.model: m.metrics["n_unscored"] for m in result.models
                if m.metrics and m.metrics["n_unscored"]}
    if unscored:
        first = next(iter(unscored))
        months = next(m.metrics["unscored_months"] for m in result.models if m.model == first)
        lines.append(f"  note: {unscored[first]:,} predicted rows per model had no actuals "
                     f"(months {months[0]}..{months[-1]}); they are reported, not scored")
    lines += _implausible_lines(result.record.get("implausible") or [])
    lines += _alert_lines(result.record.get("alerts") or [])
    tracking = result.record.get("tracking") or {}
    if tracking.get("warning"):
        lines.append(f"  warning: {tracking['message']}")
    elif tracking.get("status") in ("logged", "already_logged"):
        lines.append(f"  tracked: MLflow experiment {tracking['experiment']}, run "
                     f"{tracking['parent_run_id']} ({tracking['uri']})")
    return "\n".join(lines)


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    run_type: EvaluationRunType | None = typer.Option(
        None, "--run-type", help="calibration, validation, or backtest (every "
        "[partitions.backtest] window, one stored run each; forecasts: `ewspipe forecast`)."),
    model: list[str] | None = MODEL_OPTION,
    level: LevelName | None = LEVEL_OPTION,
    snapshot: list[str] | None = SNAPSHOT_OPTION,
    report: bool = typer.Option(False, "--report", help="Also write an offline HTML report "
                                "into the run folder's report/ directory."),
    executor: str = EXECUTOR_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Rolling-origin evaluation (13 origins x 36 steps) of models on a partition.

    `ewspipe evaluate --run-type calibration` evaluates (add `--report` for an offline HTML
    report in the run folder); `ewspipe evaluate compare A B` compares two stored runs;
    `ewspipe evaluate report RUN` (re-)writes a stored run's report.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    if run_type is None:
        raise InputError("option --run-type is required: calibration, validation or backtest "
                         "(or use a sub-command such as `ewspipe evaluate compare`)")
    spec = parse_executor(executor)  # before the catalog: bad input first
    if run_type == "backtest":
        if report:
            raise InputError("option --report: a backtest stores one run per window; write a "
                             "window's report with `ewspipe evaluate report RUN`")
        with snapshot_words(), progress_on_stderr(quiet) as reporter:
            backtest = evaluate_backtest(settings, _catalog(settings), names=model, level=level,
                                         snapshot_refs=snapshot, executor=executor,
                                         progress=reporter.task, deliver=not no_alerts)
        emit(backtest.to_dict(), as_json, lambda: _backtest_lines(backtest))
        return
    try:
        rt = parse_run_type(run_type)
    except InputError as exc:  # the library speaks of run types, the CLI of its option
        raise InputError(f"option --run-type: {exc}") from None
    with snapshot_words(), progress_on_stderr(quiet) as reporter:
        result = evaluate_models(settings, _catalog(settings), run_type=rt, names=model,
                                 level=level, snapshot_refs=snapshot, executor=spec,
                                 progress=reporter.task, deliver=not no_alerts)
    if not report:
        emit(result.to_dict(), as_json, lambda: _lines(result, "evaluation"))
        return
    from ewspipe.flows.reporting import write_report  # matplotlib: imported only when asked

    doc = result.to_dict()
    try:
        doc["report"] = str(write_report(Path(result.path),
                                         snapshots=SnapshotStore(settings.snapshot_dir),
                                         settings=settings))
    except Exception as exc:  # the run is stored and stays valid: say so, exit non-zero
        code = exc.exit_code if isinstance(exc, EwspipeError) else 1
        doc["report"] = None
        doc["report_error"] = f"{type(exc).__name__}: {exc}"
        emit(doc, as_json, lambda: _lines(result, "evaluation"))
        typer.echo(f"error: the report failed ({exc}); the run is stored in {result.path}; "
                   f"retry with `ewspipe evaluate report {result.run_id}`", err=True)
        raise typer.Exit(code) from exc
    doc["report_tracking"] = track_report(settings, result.run_id, result.run_type,
                                          Path(doc["report"])).to_dict()
    emit(doc, as_json, lambda: _lines(result, "evaluation") + f"\n  report: {doc['report']}")


def _backtest_lines(run: BacktestRun) -> str:
    doc = run.to_dict()
    labels = list(doc["windows"])
    lines = [f"backtest {doc['backtest_id']}: {len(labels)} windows, pooled MSLE (rank)"]
    lines += [f"  {label}: run {w['run_id']} (train {w['train'][0]}..{w['train'][1]}, "
              f"test {w['test'][0]}..{w['test'][1]})" for label, w in doc["windows"].items()]
    lines.append(f"  {'model':<20} " + " ".join(f"{label:>14}" for label in labels)
                 + f" {'mean':>8} {'worst':>8} {'mean rank':>9} {'worst rank':>10}")
    for name, m in doc["models"].items():
        cells = [f"{_fmt(m['scores'][w])} ({m['ranks'][w] or '-'})" for w in labels]
        mean_rank = "n/a" if m["mean_rank"] is None else f"{m['mean_rank']:.2f}"
        lines.append(f"  {name:<20} " + " ".join(f"{c:>14}" for c in cells)
                     + f" {_fmt(m['mean']):>8} {_fmt(m['worst']):>8} {mean_rank:>9} "
                     f"{_fmt(m['worst_rank']):>10}")
    alerts = sum(w["alerts"] for w in doc["windows"].values())
    implausible = sum(len(w["implausible"]) for w in doc["windows"].values())
    if alerts:
        lines.append(f"  alerts: {alerts:,} over the windows ({implausible} implausible "
                     "forecast(s)); each window's are in its run.json")
    return "\n".join(lines)


@evaluate_app.command("report")
def report_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """(Re-)write the offline HTML report of a stored evaluation run."""
    from ewspipe.flows.reporting import write_report  # matplotlib: imported only when asked

    settings: Settings = ctx.obj
    runs = RunStore(settings.runs_dir)
    record = stored_run(runs, run_id, "argument RUN_ID")
    path = write_report(runs.path(record["run_id"]),
                        snapshots=SnapshotStore(settings.snapshot_dir), settings=settings)
    doc = {"run_id": record["run_id"], "report": str(path),
           "images": sorted(p.name for p in path.parent.glob("*.png")),
           "tracking": track_report(settings, record["run_id"], str(record["run_type"]),
                                    path).to_dict()}
    emit(doc, as_json, lambda: f"report of run {record['run_id']}: {path}")


def forecast(
    ctx: typer.Context,
    model: list[str] | None = MODEL_OPTION,
    level: LevelName | None = LEVEL_OPTION,
    snapshot: list[str] | None = SNAPSHOT_OPTION,
    executor: str = EXECUTOR_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Forecast the 36 months after the last observed month; its alerts (implausible
    forecasts, output drift) are delivered unless --no-alerts."""
    settings: Settings = ctx.obj
    spec = parse_executor(executor)  # before the catalog: bad input first
    with snapshot_words(), progress_on_stderr(quiet) as reporter:
        result = forecast_models(settings, _catalog(settings), names=model, level=level,
                                 snapshot_refs=snapshot, executor=spec, progress=reporter.task,
                                 deliver=not no_alerts)
    emit(result.to_dict(), as_json, lambda: _lines(result, "forecast"))


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def _compare_lines(result: RunComparison) -> str:
    lines = [f"comparison of {result.run_type} runs, metric {result.metric} (B - A; lower is "
             "better for losses)",
             f"  A {result.run_a}", f"  B {result.run_b}",
             f"  {'model':<20} {'value':<18} {'A':>10} {'B':>10} {'B - A':>10}"]
    for m in result.models:
        c = m.comparison
        for i, (what, v) in enumerate(c.values.items()):
            label = "pooled" if what == "pooled" else f"{what}-wise mean"
            lines.append(f"  {m.model if i == 0 else '':<20} {label:<18} {_fmt(v.a):>10} "
                         f"{_fmt(v.b):>10} {_signed(v.delta):>10}")
        if c.dm is not None:
            per = "target months" if c.by == "month" else "origins"
            lines.append(
                f"  {'':<20} Diebold-Mariano over {c.dm.n_periods} {per} (HAC lag "
                f"{c.dm.max_lag}, HLN): statistic {c.dm.statistic:.3f}, p {_p(c.dm.p_value)}, "
                f"mean difference {_signed(c.dm.mean_difference)} -> {c.dm.verdict}"
            )
        else:
            lines.append(f"  {'':<20} no Diebold-Mariano test: {c.dm_reason}")
        if m.config_hash_a != m.config_hash_b:
            lines.append(f"  {'':<20} note: the model's configuration differs between A and B")
        lines.extend(f"  {'':<20} note: {note}" for note in c.notes)
    if result.only_a:
        lines.append(f"  models only in A (not compared): {', '.join(result.only_a)}")
    if result.only_b:
        lines.append(f"  models only in B (not compared): {', '.join(result.only_b)}")
    return "\n".join(lines)


@evaluate_app.command("compare")
def compare(
    ctx: typer.Context,
    run_a: str = typer.Argument(..., help="Run A (the reference): a run id or a unique part."),
    run_b: str = typer.Argument(..., help="Run B (the candidate): a run id or a unique part."),
    metric: str = typer.Option("msle", "--metric", help="Metric to compare (default msle)."),
    by: CompareBy = typer.Option("month", "--by", help="Diebold-Mariano periods: month "
                                 "(target month, default) or origin."),
    max_lag: int | None = typer.Option(None, "--max-lag", min=0, help="HAC lag of the test "
                                       "(default floor(T^(1/3)) for T periods)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the verdict."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare two evaluation runs model by model: values, B - A, Diebold-Mariano test."""
    settings: Settings = ctx.obj
    result = compare_runs(settings, run_a, run_b, metric=metric, by=by, max_lag=max_lag,
                          alpha=alpha)
    emit(result.to_dict(), as_json, lambda: _compare_lines(result))
