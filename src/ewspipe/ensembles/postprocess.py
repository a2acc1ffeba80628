"""Post-processing of a forecast: finiteness check and non-negativity (DOMAIN.md section 4).

A NaN or infinite prediction is an error naming the model, the months and the units: it is
never silently turned into 0. A negative prediction is set to 0, and an alert says how many
values were corrected and by how much at most.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from ewspipe.alerts import Alert, Severity
from ewspipe.errors import CheckFailed
from ewspipe.models.forecast import Forecast

__all__ = ["SOURCE", "Negatives", "check_finite", "clip_negative", "clip_negatives", "postprocess"]

SOURCE = "non_negativity"
_SHOW = 3
_BLOCK = 8192  # rows per block: a block of 100 draws stays in the CPU cache


def _where(forecast: Forecast, rows: npt.NDArray[np.intp]) -> str:
    frame = forecast.frame
    month = frame["month_id"].to_numpy()
    unit = frame[forecast.unit_column].to_numpy()
    origin = frame["origin"].to_numpy()
    shown = [f"month {int(month[r])}, {forecast.unit_column} {int(unit[r])} (origin "
             f"{int(origin[r])})" for r in rows[:_SHOW]]
    more = f" and {len(rows) - _SHOW:,} more rows" if len(rows) > _SHOW else ""
    return "; ".join(shown) + more


def _finite_rows(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Rows whose draws are all finite; in row blocks so no (rows x S) mask is allocated."""
    out = np.empty(samples.shape[0], dtype=bool)
    for lo in range(0, samples.shape[0], _BLOCK):
        out[lo:lo + _BLOCK] = np.isfinite(samples[lo:lo + _BLOCK]).all(axis=1)
    return out


def check_finite(forecast: Forecast, *, model: str) -> None:
    """Raise CheckFailed if any point or sample value is NaN or infinite.

    The message names the model, how many values are affected, and the first rows (month and
    unit). Nothing is repaired.
    """
    bad_point = ~np.isfinite(forecast.point)
    bad_rows = bad_point | ~_finite_rows(forecast.samples)
    if not bad_rows.any():
        return
    rows = np.flatnonzero(bad_rows)
    n_point = int(bad_point.sum())
    n_sample = int((~np.isfinite(forecast.samples[rows])).sum())
    raise CheckFailed(
        f"model {model!r} predicted NaN or infinite values ({n_point:,} point values, "
        f"{n_sample:,} sample values in {len(rows):,} rows) at {_where(forecast, rows)}; "
        "predictions must be finite counts: fix the model or its features (a NaN feature or "
        "an overflow in an inverse transform is the usual cause), they are not set to 0"
    )


@dataclass(frozen=True)
class Negatives:
    """What :func:`clip_negatives` set to 0 in one forecast or chunk.

    Chunks of one forecast are :meth:`merge`-d in row order, so a streamed forecast raises the
    same single alert (same counts, same worst row) as the whole forecast would.
    """

    point_values: int
    sample_values: int
    rows: int
    largest: float
    where: str
    month_id: int
    unit: int

    def merge(self, later: Negatives | None) -> Negatives:
        """Counts added; the worst row is the earlier one on a tie (as ``argmin`` picks)."""
        if later is None:
            return self
        worst = later if later.largest > self.largest else self
        return replace(worst, point_values=self.point_values + later.point_values,
                       sample_values=self.sample_values + later.sample_values,
                       rows=self.rows + later.rows)

    def alert(self, *, model: str) -> Alert:
        return Alert(
            source=SOURCE,
            severity=Severity.WARNING,
            message=(
                f"model {model!r}: {self.point_values:,} point values and "
                f"{self.sample_values:,} sample values were below 0 and set to 0 (in "
                f"{self.rows:,} rows); largest correction {self.largest:.6g} at {self.where}"
            ),
            offender=model,
            value=self.largest,
            threshold=0.0,
            details={
                "model": model,
                "point_values": self.point_values,
                "sample_values": self.sample_values,
                "rows": self.rows,
                "largest_correction": self.largest,
                "month_id": self.month_id,
                "unit": self.unit,
            },
        )


def clip_negatives(forecast: Forecast) -> tuple[Forecast, Negatives | None]:
    """Set negative point and sample values to 0.

    Works in row blocks (one pass when nothing is negative, two otherwise), so no
    (rows x S) temporary is allocated besides the corrected copy.

    Returns:
        The corrected forecast (the input itself when nothing is negative; otherwise with a
        fresh samples array) and what was corrected, or None.
    """
    samples = forecast.samples
    n = samples.shape[0]
    sample_min = np.empty(n, dtype=np.float64)
    for lo in range(0, n, _BLOCK):
        sample_min[lo:lo + _BLOCK] = samples[lo:lo + _BLOCK].min(axis=1, initial=np.inf)
    row_min = np.minimum(forecast.point, sample_min)
    if n == 0 or row_min.min() >= 0:
        return forecast, None
    fixed_samples = np.empty_like(samples, dtype=np.float64)
    n_sample = 0
    for lo in range(0, n, _BLOCK):
        block = samples[lo:lo + _BLOCK]
        np.maximum(block, 0.0, out=fixed_samples[lo:lo + _BLOCK])
        if sample_min[lo:lo + _BLOCK].min() < 0:
            n_sample += int(np.count_nonzero(block < 0))
    worst = int(np.argmin(row_min))
    frame = forecast.frame
    fixed = Forecast(frame=frame, point=np.maximum(forecast.point, 0.0), samples=fixed_samples,
                     unit_column=forecast.unit_column)
    return fixed, Negatives(
        point_values=int(np.count_nonzero(forecast.point < 0)),
        sample_values=n_sample,
        rows=int(np.count_nonzero(row_min < 0)),
        largest=float(-row_min[worst]),
        where=_where(forecast, np.array([worst])),
        month_id=int(frame["month_id"].iloc[worst]),
        unit=int(frame[forecast.unit_column].iloc[worst]),
    )


def clip_negative(forecast: Forecast, *, model: str) -> tuple[Forecast, Alert | None]:
    """:func:`clip_negatives` with its WARNING alert (how many values were set to 0 and the
    largest correction), or None when nothing was negative."""
    fixed, negatives = clip_negatives(forecast)
    return fixed, None if negatives is None else negatives.alert(model=model)


def postprocess(forecast: Forecast, *, model: str) -> tuple[Forecast, list[Alert]]:
    """``check_finite`` then ``clip_negative``: the forecast and the alerts raised."""
    check_finite(forecast, model=model)
    fixed, alert = clip_negative(forecast, model=model)
    return fixed, [alert] if alert is not None else []
