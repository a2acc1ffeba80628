"""Post-processing: NaN/inf are errors naming model, month and unit; negatives -> 0 + alert."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ewspipe.alerts import Severity
from ewspipe.ensembles.postprocess import check_finite, clip_negative, postprocess
from ewspipe.errors import CheckFailed
from ewspipe.models.forecast import Forecast


def _forecast(point, samples=None) -> Forecast:
    frame = pd.DataFrame({"origin": [500] * 4, "step": [1, 1, 2, 2],
                          "month_id": [501, 501, 502, 502], "country_id": [7, 9, 7, 9]})
    point = np.asarray(point, dtype=np.float64)
    draws = point[:, None] if samples is None else np.asarray(samples, dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=draws, unit_column="country_id")


def test_clean_forecast_passes_unchanged() -> None:
    fc = _forecast([0.0, 1.5, 2.0, 3.0])
    out, alerts = postprocess(fc, model="amber_tree")
    assert out is fc and alerts == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_point_is_an_error_naming_model_month_unit(bad: float) -> None:
    fc = _forecast([0.0, 1.0, bad, 3.0])
    with pytest.raises(CheckFailed) as exc:
        check_finite(fc, model="amber_tree")
    msg = str(exc.value)
    assert "model 'amber_tree' predicted NaN or infinite values" in msg
    assert "month 502, country_id 7 (origin 500)" in msg
    assert "not set to 0" in msg


def test_nan_in_a_sample_is_an_error_too() -> None:
    samples = np.ones((4, 3))
    samples[3, 1] = np.nan
    with pytest.raises(CheckFailed, match=r"1 sample values in 1 rows.*month 502, country_id 9"):
        postprocess(_forecast([1, 1, 1, 1], samples), model="amber_cloud")


def test_negatives_set_to_zero_with_an_alert() -> None:
    samples = np.array([[1.0, -0.5], [2.0, 2.0], [-3.0, 1.0], [0.0, 0.0]])
    fc = _forecast([0.25, -0.1, -1.0, 0.0], samples)
    out, alert = clip_negative(fc, model="steady_chorus")
    assert alert is not None
    np.testing.assert_array_equal(out.point, [0.25, 0.0, 0.0, 0.0])
    assert (out.samples >= 0).all() and out.samples[2, 1] == 1.0
    assert alert.source == "non_negativity" and alert.severity is Severity.WARNING
    assert "2 point values and 2 sample values were below 0 and set to 0" in alert.message
    assert "largest correction 3 at month 502, country_id 7" in alert.message
    assert alert.value == 3.0 and alert.details["rows"] == 3
    assert fc.point[1] == -0.1, "the input is not modified"
