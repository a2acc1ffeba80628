"""Forecast: predictions in raw counts for (origin, step, unit), optionally as samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

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
        n = len(self.frame)
        if self.point.shape != (n,) or self.samples.ndim != 2 or self.samples.shape[0] != n:
            raise ValueError(
                f"Forecast shapes disagree: {n} rows, point {self.point.shape}, "
                f"samples {self.samples.shape}"
            )
        expected = [*INDEX_COLUMNS, self.unit_column]
        if list(self.frame.columns) != expected:
            raise ValueError(f"Forecast frame columns must be {expected}, got "
                             f"{list(self.frame.columns)}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @staticmethod
    def concat(parts: list[Forecast]) -> Forecast:
        if not parts:
            raise ValueError("nothing to concatenate")
        widths = {p.n_samples for p in parts}
        if len(widths) != 1:
            raise ValueError(f"forecasts have different sample counts {sorted(widths)}")
        return Forecast(
            frame=pd.concat([p.frame for p in parts], ignore_index=True),
            point=np.concatenate([p.point for p in parts]),
            samples=np.concatenate([p.samples for p in parts]),
            unit_column=parts[0].unit_column,
        )
