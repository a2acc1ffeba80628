"""Output drift: how much a new forecast differs from the previous one of the same model.

Both forecasts are compared on the (target month, unit) rows they both cover: with monthly
runs the new forecast (origin L) and the previous one (origin L - 1) share 35 target months.
Measured (no thresholds here; :mod:`ewspipe.flows.output_drift` applies ``[qa.output_drift]``):

* the **total** predicted deaths of each on the shared rows, and their ratio new / old;
* the **per-unit jump** ``|log1p(new) - log1p(old)|`` of every shared row; per unit its
  largest jump and the month where it happens;
* the **share of non-zero predictions** (point >= ``nonzero_threshold``) of each, on the
  shared rows.

Point predictions only; raw counts (negatives, which post-processing removes, count as 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ewspipe.models.forecast import Forecast

__all__ = ["OutputChange", "UnitJump", "measure_change"]


@dataclass(frozen=True)
class UnitJump:
    unit: int
    month_id: int
    old: float
    new: float
    jump: float

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "month_id": self.month_id, "old": self.old, "new": self.new,
                "jump": self.jump}


@dataclass(frozen=True)
class OutputChange:
    """New vs old forecast on their shared rows; ``jumps`` holds every unit, largest first."""

    unit_column: str
    rows: int
    months: tuple[int, ...]
    units_shared: int
    units_added: int
    units_dropped: int
    total_new: float
    total_old: float
    nonzero_share_new: float | None
    nonzero_share_old: float | None
    jumps: tuple[UnitJump, ...]

    @property
    def total_ratio(self) -> float | None:
        """new / old total; None when both are 0, inf when only the old one is."""
        if self.total_old > 0:
            return self.total_new / self.total_old
        return None if self.total_new == 0 else float("inf")

    @property
    def nonzero_share_change(self) -> float | None:
        if self.nonzero_share_new is None or self.nonzero_share_old is None:
            return None
        return self.nonzero_share_new - self.nonzero_share_old

    @property
    def max_jump(self) -> float | None:
        return self.jumps[0].jump if self.jumps else None

    def to_dict(self, *, top: int = 10) -> dict[str, Any]:
        ratio = self.total_ratio
        return {
            "unit_column": self.unit_column, "rows": self.rows,
            "months": {"count": len(self.months),
                       "first": self.months[0] if self.months else None,
                       "last": self.months[-1] if self.months else None},
            "units_shared": self.units_shared, "units_added": self.units_added,
            "units_dropped": self.units_dropped,
            "total_new": self.total_new, "total_old": self.total_old,
            "total_ratio": None if ratio is None or not np.isfinite(ratio) else ratio,
            "total_ratio_infinite": ratio is not None and not np.isfinite(ratio),
            "nonzero_share_new": self.nonzero_share_new,
            "nonzero_share_old": self.nonzero_share_old,
            "nonzero_share_change": self.nonzero_share_change,
            "max_jump": self.max_jump,
            "top_jumps": [j.to_dict() for j in self.jumps[:top]],
        }


def _points(forecast: Forecast) -> pd.DataFrame:
    frame = forecast.frame
    return pd.DataFrame({
        "month_id": frame["month_id"].to_numpy(np.int64),
        "unit": frame[forecast.unit_column].to_numpy(np.int64),
        "value": np.clip(np.asarray(forecast.point, np.float64), 0.0, None),
    })


def measure_change(
    new: Forecast, old: Forecast, *, nonzero_threshold: float = 0.5
) -> OutputChange:
    """Compare ``new`` with ``old`` on the (month_id, unit) rows both predict."""
    a, b = _points(new), _points(old)
    units_new, units_old = set(a["unit"].unique()), set(b["unit"].unique())
    both = a.merge(b, on=["month_id", "unit"], how="inner", suffixes=("_new", "_old"),
                   validate="one_to_one")
    both = both.sort_values(["unit", "month_id"], kind="stable").reset_index(drop=True)
    vn, vo = both["value_new"].to_numpy(), both["value_old"].to_numpy()
    jumps: tuple[UnitJump, ...] = ()
    if len(both):
        jump = np.abs(np.log1p(vn) - np.log1p(vo))
        both["jump"] = jump
        idx = both.groupby("unit", sort=True)["jump"].idxmax().to_numpy()
        top = both.loc[idx].sort_values(["jump", "unit"], ascending=[False, True],
                                        kind="stable")
        jumps = tuple(UnitJump(int(r.unit), int(r.month_id), float(r.value_old),
                               float(r.value_new), float(r.jump))
                      for r in top.itertuples(index=False))
    n = len(both)
    return OutputChange(
        unit_column=new.unit_column, rows=n,
        months=tuple(int(m) for m in np.unique(both["month_id"].to_numpy())),
        units_shared=len(units_new & units_old), units_added=len(units_new - units_old),
        units_dropped=len(units_old - units_new),
        total_new=float(vn.sum()), total_old=float(vo.sum()),
        nonzero_share_new=float(np.mean(vn >= nonzero_threshold)) if n else None,
        nonzero_share_old=float(np.mean(vo >= nonzero_threshold)) if n else None,
        jumps=jumps,
    )
