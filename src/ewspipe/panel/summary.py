"""A short numeric portrait of a panel: what an analyst checks first after an import."""

from __future__ import annotations

from typing import Any

import numpy as np

from ewspipe.panel.months import month_label
from ewspipe.panel.schema import TIME_COLUMN, Panel

__all__ = ["summarise"]


def summarise(panel: Panel) -> dict[str, Any]:
    frame = panel.frame
    last = panel.last_month
    last_rows = frame[TIME_COLUMN].to_numpy() == last
    counts: dict[str, dict[str, Any]] = {}
    units = frame[panel.unit_column].to_numpy()
    for col in panel.spec.count_columns:
        values = frame[col].to_numpy()
        nonzero = values > 0
        active_units = np.unique(units[nonzero]).size
        counts[col] = {
            "total": int(values.sum()),
            "zero_share": float(1.0 - nonzero.mean()),
            "max": int(values.max()),
            "units_ever_nonzero": int(active_units),
            "last_month_total": int(values[last_rows].sum()),
        }
    return {
        "level": panel.level.value,
        "unit_column": panel.unit_column,
        "rows": len(frame),
        "units": int(np.unique(units).size),
        "first_month": panel.first_month,
        "last_month": last,
        "span": f"{month_label(panel.first_month)}..{month_label(last)}",
        "units_last_month": int(last_rows.sum()),
        "counts": counts,
    }
