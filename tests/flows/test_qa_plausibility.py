"""The monthly run's QA refuses implausible forecasts: finite and non-negative is not enough
when a log-target model extrapolates into the millions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ewspipe.flows.tasks import _qa_one
from ewspipe.models.forecast import Forecast

SNAP = {"last_month": 520, "units_last_month": 3}


def _forecast(point: np.ndarray) -> Forecast:
    units, steps = np.array([4, 7, 9]), np.arange(1, 37)
    frame = pd.DataFrame({
        "origin": 520, "step": np.repeat(steps, len(units)),
        "month_id": 520 + np.repeat(steps, len(units)), "country_id": np.tile(units, len(steps)),
    })
    return Forecast(frame=frame, point=point, samples=point[:, None], unit_column="country_id")


def test_plausible_forecast_passes():
    fc = _forecast(np.full(108, 50.0))
    assert _qa_one(fc, {"kind": "model"}, SNAP, 36, ceiling=1000.0) == []


def test_exploding_forecast_is_named_with_unit_and_month():
    point = np.full(108, 50.0)
    point[3 * 4 + 1] = 1.99e8  # step 5, country 7
    problems = _qa_one(_forecast(point), {"kind": "model"}, SNAP, 36, ceiling=1000.0)
    assert len(problems) == 1
    assert "implausible value 199,000,000 (country_id 7, month 525)" in problems[0]
    assert "max_forecast_factor" in problems[0]
