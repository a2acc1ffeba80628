"""The plausibility ceiling: one rule for every place that judges a forecast's size.

A forecast above ``[qa] max_forecast_factor`` times the largest count of its target ever
observed at its level is implausible: finite and non-negative is not enough when a model
extrapolates into the millions. The monthly run's QA (``flows.tasks``), evaluation and
forecast runs (``flows.modelrun``) and the staging gates (``release.gates_outputs``) all call
this module, so a forecast the monthly QA would refuse cannot pass evaluation or staging
unnoticed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import Panel

__all__ = ["Implausible", "check_forecast", "check_values", "combine", "largest_observed",
           "plausibility_ceiling"]

RULE = "[qa] max_forecast_factor x the largest count ever observed at this level"


def largest_observed(panel: Panel, target: str) -> float:
    """The largest count of ``target`` in the panel (0 for an empty or all-missing column)."""
    values = panel.frame[target].to_numpy(dtype=np.float64)
    return float(np.nanmax(values, initial=0.0)) if len(values) else 0.0


def plausibility_ceiling(largest: float, factor: float) -> float:
    """``factor`` times the largest observed count, at least ``factor`` (a level that never
    saw a death still allows a few)."""
    return float(factor) * max(float(largest), 1.0)


@dataclass(frozen=True)
class Implausible:
    """The largest forecast above the ceiling, where it is, and how many rows exceed it."""

    value: float
    ceiling: float
    unit_column: str
    unit: int
    month_id: int
    origin: int
    step: int
    rows_above: int

    def message(self) -> str:
        """The monthly QA's wording (tests and operators grep for it)."""
        return (f"implausible value {self.value:,.0f} ({self.unit_column} {self.unit}, month "
                f"{self.month_id}) above the ceiling {self.ceiling:,.0f} ({RULE})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_values(
    point: npt.NDArray[np.float64],
    *,
    ceiling: float,
    unit_column: str,
    units: npt.NDArray[Any],
    months: npt.NDArray[Any],
    origins: npt.NDArray[Any],
    steps: npt.NDArray[Any],
) -> Implausible | None:
    """The worst point above ``ceiling`` (NaN ignored, +inf counts), or None when none is."""
    point = np.asarray(point, dtype=np.float64)
    if len(point) == 0:
        return None
    top = float(np.nanmax(point, initial=0.0))
    if not top > ceiling:
        return None
    at = int(np.nanargmax(point))
    with np.errstate(invalid="ignore"):
        above = int(np.count_nonzero(point > ceiling))
    return Implausible(value=top, ceiling=float(ceiling), unit_column=unit_column,
                       unit=int(units[at]), month_id=int(months[at]), origin=int(origins[at]),
                       step=int(steps[at]), rows_above=above)


def check_forecast(forecast: Forecast, ceiling: float) -> Implausible | None:
    """:func:`check_values` on a forecast's points."""
    frame = forecast.frame
    return check_values(
        forecast.point, ceiling=ceiling, unit_column=forecast.unit_column,
        units=frame[forecast.unit_column].to_numpy(), months=frame["month_id"].to_numpy(),
        origins=frame["origin"].to_numpy(), steps=frame["step"].to_numpy())


def combine(first: Implausible | None, later: Implausible | None) -> Implausible | None:
    """The finding of two consecutive parts of one forecast (checked chunk by chunk): the
    worst row (the earlier on a tie, as :func:`check_values` on the whole) and the rows
    above the ceiling of both."""
    if first is None or later is None:
        return first or later
    worst = later if later.value > first.value else first
    return replace(worst, rows_above=first.rows_above + later.rows_above)
