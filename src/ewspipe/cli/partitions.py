"""`ewspipe partitions`: show the configured partitions and rolling origins."""

from __future__ import annotations

import typer

from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.errors import InputError, SettingsError
from ewspipe.panel.months import current_month_id, month_label
from ewspipe.partitions import RunType
from ewspipe.settings import Settings

__all__ = ["partitions"]


def partitions(
    ctx: typer.Context,
    last_observed: int | None = typer.Option(
        None, "--last-observed", help="Last observed month_id; adds the forecasting partition."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show train/test windows and rolling origins of every run type (backtest: one line per
    [partitions.backtest] window, after the others)."""
    settings: Settings = ctx.obj
    scheme = settings.partition_scheme()
    run_types = [RunType.CALIBRATION, RunType.VALIDATION]
    if last_observed is not None:
        newest = current_month_id()
        if not scheme.forecasting_train_first <= last_observed <= newest:
            raise InputError(
                f"option --last-observed: {last_observed} is not a month the data can end in; "
                f"use a month_id from [partitions.forecasting] train_first "
                f"({scheme.forecasting_train_first}) to this month ({newest}, "
                f"{month_label(newest)})")
        run_types.append(RunType.FORECASTING)
    parts = [scheme.partition(rt, last_observed=last_observed) for rt in run_types]
    notes = []
    try:
        parts += scheme.backtest()
    except SettingsError as exc:  # default windows that do not fit these partitions
        notes.append(f"no backtest windows: {exc}")
    data = {
        "steps": scheme.steps,
        "sequences": scheme.sequences,
        "partitions": [
            {
                "run_type": p.run_type.value,
                "train": [p.train.first, p.train.last],
                "test": [p.test.first, p.test.last],
                "origins": [s.origin for s in p.rolling_origins()],
                **({"window": p.window} if p.window else {}),
            }
            for p in parts
        ],
        **({"notes": notes} if notes else {}),
    }

    def human() -> str:
        lines = [f"steps 1..{scheme.steps}, {scheme.sequences} rolling origins"]
        for p in parts:
            origins = p.rolling_origins()
            name = p.run_type.value if p.window is None else f"backtest {p.window}"
            lines.append(
                f"{name:<22} train {p.train.first}..{p.train.last} "
                f"({month_label(p.train.first)}..{month_label(p.train.last)})  "
                f"test {p.test.first}..{p.test.last} "
                f"({month_label(p.test.first)}..{month_label(p.test.last)})  "
                f"origins {origins[0].origin}..{origins[-1].origin}"
            )
        return "\n".join([*lines, *(f"note: {n}" for n in notes)])

    emit(data, as_json, human)
