"""Forecast: predictions in raw counts for (origin, step, unit), optionally as samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import InputError

__all__ = ["Forecast"]

INDEX_COLUMNS = ("origin", "step", "month_id")


@dataclass(frozen=True, eq=False)
class Forecast:
    """``frame`` has columns origin, step, month_id and the unit column, one row per
    prediction, sorted by (origin, step, unit). ``point`` (n,) and ``samples`` (n, S) are raw
    counts (never logs); a point model has S = 1 and ``samples[:, 0] == point``.
    """

    frame: pd.DataFrame
    point: npt.NDArray[np.float64]
    samples: npt.NDArray[np.float64]
    unit_column: str

    def __post_init__(self) -> None:
        for name in ("point", "samples"):
            if not isinstance(getattr(self, name), np.ndarray):
                raise InputError(f"Forecast {name}: a {type(getattr(self, name)).__name__}; "
                                 "pass a numpy array (np.asarray(...))", parameter=name)
        if not isinstance(self.frame, pd.DataFrame):
            raise InputError(f"Forecast frame: a {type(self.frame).__name__}; pass a pandas "
                             "DataFrame", parameter="frame")
        n = len(self.frame)
        if self.point.shape != (n,) or self.samples.ndim != 2 or self.samples.shape[0] != n:
            raise InputError(
                f"Forecast shapes disagree: {n} rows, point {self.point.shape}, "
                f"samples {self.samples.shape}; point is (rows,), samples (rows, draws)",
                parameter="samples" if self.point.shape == (n,) else "point")
        expected = [*INDEX_COLUMNS, self.unit_column]
        if list(self.frame.columns) != expected:
            raise InputError(f"Forecast frame columns must be {expected}, got "
                             f"{list(self.frame.columns)}", parameter="frame")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @staticmethod
    def concat(parts: list[Forecast]) -> Forecast:
        if not parts:
            raise InputError("Forecast.concat: nothing to concatenate; pass at least one "
                             "forecast", parameter="parts")
        widths = {p.n_samples for p in parts}
        if len(widths) != 1:
            raise InputError(f"Forecast.concat: the forecasts have different sample counts "
                             f"{sorted(widths)}; concatenate forecasts with as many draws",
                             parameter="parts")
        return Forecast(
            frame=pd.concat([p.frame for p in parts], ignore_index=True),
            point=np.concatenate([p.point for p in parts]),
            samples=np.concatenate([p.samples for p in parts]),
            unit_column=parts[0].unit_column,
        )
