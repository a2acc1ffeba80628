"""`ewspipe evaluate` and `ewspipe forecast`: run named models, store and print results."""

from __future__ import annotations

import typer

from ewspipe.catalog import Catalog, load_catalog
from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.errors import InputError
from ewspipe.flows.modelrun import RunResult, evaluate_models, forecast_models
from ewspipe.settings import Settings

__all__ = ["evaluate_app", "forecast"]

evaluate_app = typer.Typer(
    help="Rolling-origin evaluation of models (13 origins x 36 steps) and run comparisons.",
    invoke_without_command=True,
)

MODEL_OPTION = typer.Option(None, "--model", help="Model name (repeatable; default: all "
                            "non-deprecated models).")
LEVEL_OPTION = typer.Option(None, "--level", help="Only models of this level (cm or pgm).")
SNAPSHOT_OPTION = typer.Option(None, "--snapshot", help="Snapshot id per level (repeatable; "
                               "default: the latest of each level).")


def _catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def _lines(result: RunResult, headline: str) -> str:
    lines = [f"{headline} run {result.run_id} ({result.run_type})", f"  stored in {result.path}"]
    for m in result.models:
        how = "reused" if m.reused else "trained"
        line = (f"  {m.model:<20} {m.level:<4} {m.status:<9} {how:<8} rows {m.rows:>9,}  "
                f"fit {m.timings['fit']:.1f}s predict {m.timings['predict']:.1f}s")
        if m.metrics is not None:
            pooled = m.metrics["pooled"]
            line += (f"  MSLE {_fmt(pooled.get('msle'))}  MSE {_fmt(pooled.get('mse'))}"
                     + (f"  CRPS {_fmt(pooled['crps'])}" if "crps" in pooled else ""))
        lines.append(line)
    unscored = {m.model: m.metrics["n_unscored"] for m in result.models
                if m.metrics and m.metrics["n_unscored"]}
    if unscored:
        first = next(iter(unscored))
        months = next(m.metrics["unscored_months"] for m in result.models if m.model == first)
        lines.append(f"  note: {unscored[first]:,} predicted rows per model had no actuals "
                     f"(months {months[0]}..{months[-1]}); they are reported, not scored")
    return "\n".join(lines)


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    run_type: str | None = typer.Option(None, "--run-type", help="calibration or validation."),
    model: list[str] | None = MODEL_OPTION,
    level: str | None = LEVEL_OPTION,
    snapshot: list[str] | None = SNAPSHOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Rolling-origin evaluation (13 origins x 36 steps) of models on a partition.

    `ewspipe evaluate --run-type calibration` evaluates; `ewspipe evaluate compare A B`
    compares two stored runs.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    if run_type is None:
        raise InputError("option --run-type is required: calibration or validation "
                         "(or use a sub-command such as `ewspipe evaluate compare`)")
    result = evaluate_models(settings, _catalog(settings), run_type=run_type, names=model,
                             level=level, snapshot_refs=snapshot)
    emit(result.to_dict(), as_json, lambda: _lines(result, "evaluation"))


def forecast(
    ctx: typer.Context,
    model: list[str] | None = MODEL_OPTION,
    level: str | None = LEVEL_OPTION,
    snapshot: list[str] | None = SNAPSHOT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Forecast the 36 months after the last observed month."""
    settings: Settings = ctx.obj
    result = forecast_models(settings, _catalog(settings), names=model, level=level,
                             snapshot_refs=snapshot)
    emit(result.to_dict(), as_json, lambda: _lines(result, "forecast"))
