"""Diebold-Mariano test with HAC variance and HLN correction, and compare_forecasts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ewspipe.errors import InputError
from ewspipe.evaluation import Scored, evaluate
from ewspipe.evaluation.compare import (
    compare_forecasts,
    default_lag,
    diebold_mariano,
    hac_variance,
    row_losses,
)

RNG = np.random.default_rng(20240701)


def _rows(n_periods: int = 48, per_period: int = 40) -> np.ndarray:
    return np.repeat(np.arange(445, 445 + n_periods), per_period)


def test_equal_forecasts_give_zero_statistic_and_p_one():
    t = _rows()
    loss = RNG.gamma(1.0, 1.0, len(t))
    dm = diebold_mariano(loss, loss.copy(), t)
    assert dm.statistic == 0.0 and dm.p_value == 1.0 and dm.variance == 0.0
    assert dm.mean_difference == 0.0
    assert dm.verdict == "no significant difference"


def test_clearly_better_forecast_is_significant_in_both_directions():
    t = _rows()
    loss_a = RNG.gamma(2.0, 1.0, len(t))
    loss_b = 0.6 * loss_a + RNG.normal(0, 0.05, len(t))  # B has 40% lower loss
    dm = diebold_mariano(loss_a, loss_b, t)
    assert dm.p_value < 1e-6 and dm.statistic < 0 and dm.mean_difference < 0
    assert dm.verdict == "B better"
    flipped = diebold_mariano(loss_b, loss_a, t)
    assert flipped.verdict == "A better" and flipped.statistic == pytest.approx(-dm.statistic)


def test_noise_only_is_not_significant():
    t = _rows()
    loss_a = RNG.gamma(2.0, 1.0, len(t))
    loss_b = loss_a + RNG.normal(0, 0.01, len(t))
    dm = diebold_mariano(loss_a, loss_b, t)
    assert dm.p_value > 0.05 and dm.verdict == "no significant difference"


def test_matches_a_hand_computation():
    # two rows per period; per-period mean differences d = [1, -1, 2, 0, 3, 1]
    d = np.array([1.0, -1.0, 2.0, 0.0, 3.0, 1.0])
    t = np.repeat(np.arange(6), 2)
    loss_a = np.zeros(12)
    loss_b = np.repeat(d, 2) + np.tile([0.5, -0.5], 6)  # the +-0.5 cancel within a period
    dm = diebold_mariano(loss_a, loss_b, t, max_lag=1)
    # by hand: T = 6, mean 1, deviations [0, -2, 1, -1, 2, 0]
    # gamma0 = (0 + 4 + 1 + 1 + 4 + 0) / 6 = 10/6; gamma1 = (0 - 2 - 1 - 2 + 0) / 6 = -5/6
    # var = (gamma0 + 2 * (1 - 1/2) * gamma1) / T = (10/6 - 5/6) / 6 = 5/36
    # DM = 1 / sqrt(5/36) = 6 / sqrt(5); h = 2: k = sqrt((6 + 1 - 4 + 2/6) / 6) = sqrt(5/9)
    assert dm.n_periods == 6 and dm.n_rows == 12 and dm.max_lag == 1 and dm.df == 5
    assert dm.mean_difference == pytest.approx(1.0)
    assert dm.variance == pytest.approx(5 / 36)
    assert dm.correction == pytest.approx(math.sqrt(5 / 9))
    expected = 6 / math.sqrt(5) * math.sqrt(5 / 9)  # = 2
    assert dm.statistic == pytest.approx(expected)
    assert dm.p_value == pytest.approx(2 * stats.t.sf(2.0, df=5))
    assert dm.verdict == "no significant difference"  # p = 0.10


def test_small_sample_correction_shrinks_the_statistic():
    t = _rows(n_periods=12, per_period=5)
    loss_a = RNG.gamma(2.0, 1.0, len(t))
    loss_b = 0.8 * loss_a
    dm = diebold_mariano(loss_a, loss_b, t, max_lag=2)
    raw = dm.mean_difference / math.sqrt(dm.variance)
    h, n = 3, 12
    assert dm.correction == pytest.approx(math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n))
    assert dm.correction < 1 and abs(dm.statistic) < abs(raw)
    assert dm.statistic == pytest.approx(raw * dm.correction)
    # t with T - 1 df is wider than the normal: a larger p-value for the same statistic
    assert dm.p_value >= 2 * stats.norm.sf(abs(dm.statistic))


@pytest.mark.parametrize("lag", [0, 1, 3, 7, 15])
def test_hac_variance_is_never_negative(lag):
    for _ in range(50):
        series = RNG.normal(size=32)
        series[1::2] *= -3  # strong negative autocorrelation: the rectangular kernel fails here
        assert hac_variance(series, lag) >= 0.0


def test_default_lag_is_integer_cube_root():
    assert [default_lag(n) for n in (3, 7, 8, 13, 26, 27, 48, 63, 64, 125)] == [
        1, 1, 2, 2, 2, 3, 3, 3, 4, 5]


def test_constant_nonzero_difference_is_certain():
    t = _rows(n_periods=10, per_period=1)
    dm = diebold_mariano(np.ones(10), np.zeros(10), t)
    assert dm.statistic == -math.inf and dm.p_value == 0.0 and dm.verdict == "B better"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss_b": np.zeros(5)}, "same length"),
    ({"time_index": np.zeros(10)}, "at least 3"),
    ({"max_lag": 9}, "does not fit"),
    ({"alpha": 1.5}, "alpha"),
])
def test_bad_input_is_refused(kwargs, match):
    args = {"loss_a": np.zeros(10), "loss_b": np.ones(10), "time_index": np.arange(10)}
    args.update({k: v for k, v in kwargs.items() if k in args})
    options = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(InputError, match=match):
        diebold_mariano(args["loss_a"], args["loss_b"], args["time_index"], **options)


def test_nan_loss_is_refused():
    with pytest.raises(InputError, match="NaN or infinite"):
        diebold_mariano([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], [1, 2, 3])


# --- compare_forecasts --------------------------------------------------------------------------


def _scored(point: np.ndarray, actual: np.ndarray, origins=range(444, 457), steps=36,
            units=(1, 2, 3, 4)) -> Scored:
    grid = np.array([(o, s, u) for o in origins for s in range(1, steps + 1) for u in units])
    n = len(grid)
    return Scored(
        origin=grid[:, 0].astype(np.int64), step=grid[:, 1].astype(np.int64),
        month_id=(grid[:, 0] + grid[:, 1]).astype(np.int64), unit=grid[:, 2].astype(np.int64),
        actual=actual[:n].astype(np.float64), point=point[:n].astype(np.float64),
        samples=point[:n, None].astype(np.float64),
    )


def _panel(n: int = 13 * 36 * 4) -> tuple[np.ndarray, np.ndarray]:
    actual = RNG.poisson(3.0, n).astype(float) * (RNG.random(n) < 0.4)
    good = np.clip(actual + RNG.normal(0, 1.0, n), 0, None)
    return actual, good


def test_same_forecast_has_zero_deltas_and_no_difference():
    actual, good = _panel()
    a = _scored(good, actual)
    result = compare_forecasts(a, _scored(good, actual))
    assert result.n_common == len(a) and result.n_only_a == result.n_only_b == 0
    assert all(v.delta == 0.0 for v in result.values.values())
    assert set(result.values) == {"pooled", "step", "month", "sequence"}
    assert result.dm is not None and result.dm.p_value == 1.0
    assert result.verdict == "no significant difference"
    pooled = evaluate(a, ["msle"]).pooled["msle"]
    assert result.values["pooled"].a == pytest.approx(pooled)


def test_better_forecast_wins_and_values_match_evaluate():
    actual, good = _panel()
    zeros = np.zeros_like(actual)
    a, b = _scored(zeros, actual), _scored(good, actual)
    result = compare_forecasts(a, b, metric="mse")
    assert result.verdict == "B better" and result.values["pooled"].delta < 0
    assert result.dm is not None  # the tested mean is the month-wise mean's delta
    assert result.dm.mean_difference == pytest.approx(result.values["month"].delta)
    assert result.values["step"].b == pytest.approx(evaluate(b, ["mse"]).means["step"]["mse"])
    step = result.groups["step"]
    assert list(step["group"]) == list(range(1, 37))
    assert (step["delta"] < 0).sum() > 30
    assert result.to_dict()["dm"]["verdict"] == "B better"
    by_origin = compare_forecasts(a, b, metric="mae", by="origin")
    assert by_origin.dm is not None and by_origin.dm.n_periods == 13


def test_rows_only_in_one_run_are_counted_not_scored():
    actual, good = _panel()
    a = _scored(good, actual)
    b = _scored(good, actual, units=(1, 2, 3))  # unit 4 missing in B; the prefix rows align
    result = compare_forecasts(a, b)
    assert result.n_only_a > 0 and result.n_only_b == 0
    assert result.n_common == len(b)
    assert any("only in A" in note for note in result.notes)


def test_metric_without_row_loss_has_values_but_no_test():
    actual, good = _panel()
    result = compare_forecasts(_scored(good, actual), _scored(good * 1.1, actual),
                               metric="pearson")
    assert result.dm is None and "not a mean of per-row losses" in (result.dm_reason or "")
    assert result.verdict == "not tested"


def test_row_losses_average_to_the_metric():
    actual, good = _panel()
    s = _scored(good, actual)
    for name in ("msle", "mse", "mae", "crps"):
        assert row_losses(s, name).mean() == pytest.approx(evaluate(s, [name]).pooled[name])
    assert np.allclose(row_losses(s, "msle"), (np.log1p(actual) - np.log1p(good)) ** 2)
    with pytest.raises(InputError, match="per-row losses"):
        row_losses(s, "pearson")


def test_disjoint_forecasts_are_refused():
    actual, good = _panel()
    with pytest.raises(InputError, match="share no"):
        compare_forecasts(_scored(good, actual), _scored(good, actual, units=(7, 8, 9, 10)))
