"""Metrics: hand-computed values, brute-force references, degenerate inputs, input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ewspipe.errors import InputError
from ewspipe.evaluation import MetricUndefined, get_metric, names

Y = np.array([0.0, 1.0, 3.0])
X = np.array([0.0, 2.0, 1.0])


def score(name: str, actual, prediction, **params) -> float:
    return get_metric(name, **params)(np.asarray(actual, float), np.asarray(prediction, float))


# --- registry --------------------------------------------------------------------------------


def test_names_lists_every_metric():
    assert names() == sorted([
        "mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar",
        "crps", "twcrps", "mis", "coverage", "coverage_50", "coverage_90", "pit_coverage_50",
        "pit_coverage_90", "brier", "ap", "roc_auc",
    ])


def test_unknown_name_lists_valid_ones():
    with pytest.raises(InputError, match=r"'rmse' is not a metric; valid names: ap, brier"):
        get_metric("rmse")


def test_unknown_parameter_is_named():
    with pytest.raises(InputError, match="'mis' has no parameter beta; its parameters: alpha"):
        get_metric("mis", beta=0.1)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0])
def test_alpha_outside_unit_interval_is_refused(alpha):
    with pytest.raises(InputError, match="alpha must be in"):
        get_metric("mis", alpha=alpha)


def test_labels_show_non_default_parameters():
    assert get_metric("mis").label == "mis"
    assert get_metric("mis", alpha=0.1).label == "mis(alpha=0.1)"
    assert get_metric("twcrps", threshold=10).label == "twcrps(threshold=10)"
    assert get_metric("brier", tau=0).label == "brier"


# --- point metrics, by hand ------------------------------------------------------------------


def test_point_metrics_by_hand():
    # errors y - x = [0, -1, 2]; log1p differences [0, ln 2 - ln 3, ln 4 - ln 2]
    msle = (math.log(1.5) ** 2 + math.log(2) ** 2) / 3
    assert score("mse", Y, X) == pytest.approx(5 / 3)
    assert score("mae", Y, X) == pytest.approx(1.0)
    assert score("msle", Y, X) == pytest.approx(msle)
    assert score("rmsle", Y, X) == pytest.approx(math.sqrt(msle))
    assert score("y_hat_bar", Y, X) == pytest.approx(1.0)
    assert score("mcr", Y, X) == pytest.approx(3 / 4)  # mean x = 1, mean y = 4/3
    # dx = [-1, 1, 0], dy = [-4/3, -1/3, 5/3]: cov 1, Sxx 2, Syy 42/9
    assert score("pearson", Y, X) == pytest.approx(3 / math.sqrt(84))


def test_pearson_perfect_and_inverse():
    assert score("pearson", [1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert score("pearson", [1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_msle_applies_log1p_itself():
    # raw counts in: a forecast of 9 for an actual of 99 is off by log(10) on the log scale
    assert score("msle", [99.0], [9.0]) == pytest.approx(math.log(10) ** 2)


def test_zeros_only_actuals():
    y = np.zeros(4)
    x = np.array([0.0, 1.0, 3.0, 0.0])
    assert score("mse", y, x) == pytest.approx(10 / 4)
    assert score("msle", y, x) == pytest.approx((math.log(2) ** 2 + math.log(4) ** 2) / 4)
    assert score("crps", y, x) == pytest.approx(1.0)
    with pytest.raises(MetricUndefined, match="mcr is undefined here: every actual is 0"):
        score("mcr", y, x)
    with pytest.raises(MetricUndefined, match="pearson is undefined here: actuals are constant"):
        score("pearson", y, x)
    with pytest.raises(MetricUndefined, match="no actual is above 0"):
        score("ap", y, x[:, None])
    with pytest.raises(MetricUndefined, match="only one class"):
        score("roc_auc", y, x[:, None])


def test_all_zero_forecast_of_zeros_is_perfect():
    y = np.zeros(5)
    for name in ("mse", "msle", "rmsle", "mae", "y_hat_bar"):
        assert score(name, y, y) == 0.0
    assert score("crps", y, np.zeros((5, 10))) == 0.0
    assert score("brier", y, np.zeros((5, 10))) == 0.0


def test_constant_predictions():
    y = np.array([0.0, 2.0, 4.0])
    x = np.full(3, 0.1)
    assert score("mse", y, x) == pytest.approx((0.01 + 1.9**2 + 3.9**2) / 3)
    assert score("mcr", y, x) == pytest.approx(0.1 / 2)
    with pytest.raises(MetricUndefined, match="predictions are constant"):
        score("pearson", y, x)


def test_pearson_constant_float_predictions_are_detected_exactly():
    # 0.1 is not exact in binary: a moment formula would leave a tiny "variance" and give a
    # meaningless r; the shifted sums are exactly zero.
    y = np.arange(1000.0)
    with pytest.raises(MetricUndefined, match="predictions are constant"):
        score("pearson", y, np.full(1000, 0.1))
    with pytest.raises(MetricUndefined, match="both constant"):
        score("pearson", np.full(3, 7.3), np.full(3, 0.1))


def test_single_row():
    assert score("mse", [3.0], [1.0]) == 4.0
    assert score("crps", [3.0], [[1.0, 5.0]]) == pytest.approx(2.0 - 1.0)
    with pytest.raises(MetricUndefined, match="fewer than 2 rows"):
        score("pearson", [3.0], [1.0])


# --- sample metrics, by hand -----------------------------------------------------------------


def test_crps_by_hand():
    # y = 0, X = [0, 2]: mean|X - y| = 1, (1/8) sum_ij |Xi - Xj| = 4/8
    assert score("crps", [0.0], [[0.0, 2.0]]) == pytest.approx(0.5)
    # y = 3, X = [1, 2, 4, 5]: mean|X - y| = 6/4; pairs i < j differ by 1, 3, 4, 2, 3, 1 = 14,
    # so sum_ij = 28 and the second term is 28/32
    assert score("crps", [3.0], [[5.0, 1.0, 4.0, 2.0]]) == pytest.approx(1.5 - 0.875)


def test_crps_of_point_forecast_is_mae():
    assert score("crps", Y, X) == pytest.approx(score("mae", Y, X))
    assert score("crps", Y, X[:, None]) == pytest.approx(score("mae", Y, X))


def test_twcrps_by_hand():
    # t = 1: v(X) = [1, 2], v(y) = 1: mean|v(X) - 1| = 0.5, spread (1/8)(1 + 1) = 0.25
    assert score("twcrps", [0.0], [[0.0, 2.0]], threshold=1) == pytest.approx(0.25)
    # everything below the threshold: nothing is scored
    assert score("twcrps", [3.0], [[0.0, 2.0, 7.0]], threshold=25) == 0.0
    # for counts (>= 0) a threshold of 0 is the plain CRPS
    samples = np.array([[0.0, 3.0, 10.0], [1.0, 1.0, 2.0]])
    assert score("twcrps", [2.0, 0.0], samples, threshold=0) == pytest.approx(
        score("crps", [2.0, 0.0], samples)
    )


def test_twcrps_default_threshold_is_25():
    assert get_metric("twcrps").threshold == 25.0


def test_mis_and_coverage_by_hand():
    samples = np.tile(np.arange(101.0), (3, 1))  # quantiles 0.025, 0.975 -> 2.5, 97.5
    y = np.array([50.0, 0.0, 100.0])
    # width 95; below by 2.5 -> + 40 * 2.5; above by 2.5 -> + 40 * 2.5
    assert score("mis", y, samples) == pytest.approx((95 + 195 + 195) / 3)
    assert score("coverage", y, samples) == pytest.approx(1 / 3)
    # alpha 0.1: quantiles 5 and 95; y = 0 is 5 below -> 90 + 20 * 5
    assert score("mis", [0.0], samples[:1], alpha=0.1) == pytest.approx(190.0)


def test_coverage_bounds_are_inclusive():
    assert score("coverage", [2.5, 97.5], np.tile(np.arange(101.0), (2, 1))) == 1.0


def test_coverage_50_and_90_by_hand():
    samples = np.tile(np.arange(101.0), (4, 1))  # quartiles 25, 75; 5 % and 95 %: 5, 95
    y = np.array([25.0, 75.0, 80.0, 4.0])
    assert score("coverage_50", y, samples) == 0.5  # 25 and 75 in (bounds inclusive)
    assert score("coverage_90", y, samples) == 0.75  # 4 < 5 is out
    assert get_metric("coverage_50").alpha == 0.5 and get_metric("coverage_90").alpha == 0.1
    assert score("coverage_90", y, samples) == score("coverage", y, samples, alpha=0.1)


def test_coverage_counts_a_zero_inside_a_zero_interval():
    """Many samples are 0: a 0 actual in [0, u] (even [0, 0]) is covered, a 1 in [0, 0] not."""
    samples = np.array([[0.0] * 8 + [3.0, 9.0], [0.0] * 10, [0.0] * 10])
    y = np.array([0.0, 0.0, 1.0])
    assert score("coverage_50", y, samples) == pytest.approx(2 / 3)
    assert score("coverage_90", y, samples) == pytest.approx(2 / 3)


def test_pit_coverage_by_hand():
    """y = 0 with 8 of 10 samples 0: the PIT is uniform on [0, 0.8]; y = 1 sits at F = 0.8."""
    samples = np.array([[0.0] * 8 + [3.0, 9.0]] * 2)
    assert score("pit_coverage_50", [0.0], samples[:1]) == pytest.approx(0.5 / 0.8)
    assert score("pit_coverage_90", [0.0], samples[:1]) == pytest.approx(0.75 / 0.8)
    assert score("pit_coverage_50", [1.0], samples[:1]) == 0.0  # 0.8 > 0.75
    assert score("pit_coverage_90", [1.0], samples[:1]) == 1.0
    assert score("pit_coverage_90", [0.0, 1.0], samples) == pytest.approx((0.75 / 0.8 + 1) / 2)
    assert score("pit_coverage_90", [50.0], samples[:1]) == 0.0  # F(y) = 1: above the 95 %


def test_pit_coverage_is_nominal_for_a_calibrated_zero_heavy_forecast():
    """Actuals drawn from the forecast's own distribution (85 % zeros): the PIT coverage is
    0.5 / 0.9, while the interval coverage counts every 0 in [0, u] and lands far above."""
    rng = np.random.default_rng(7)
    n, s = 4000, 200
    rate = np.where(rng.random(n) < 0.7, 0.05, rng.gamma(0.5, 40.0, n))
    draw = lambda k: rng.poisson(rate[:, None] * rng.gamma(1.0, 1.0, (n, k)))  # noqa: E731
    samples, y = draw(s).astype(float), draw(1)[:, 0].astype(float)
    assert score("pit_coverage_50", y, samples) == pytest.approx(0.5, abs=0.03)
    assert score("pit_coverage_90", y, samples) == pytest.approx(0.9, abs=0.02)
    assert score("coverage_90", y, samples) > 0.95


def test_brier_by_hand():
    samples = np.array([[0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    # p = 0.5, 0.5, 0; events 0, 1, 0
    assert score("brier", [0.0, 2.0, 0.0], samples) == pytest.approx((0.25 + 0.25 + 0) / 3)
    # tau = 1: p = 0.25, 0.25, 0; events 0, 1, 0
    assert score("brier", [0.0, 2.0, 0.0], samples, tau=1) == pytest.approx(
        (0.0625 + 0.5625 + 0) / 3
    )


def _samples_with_share(shares: list[float], s: int = 20) -> np.ndarray:
    """Rows whose share of samples > 0 is exactly ``shares``."""
    out = np.zeros((len(shares), s))
    for i, p in enumerate(shares):
        out[i, : round(p * s)] = 5.0
    return out


def test_ap_and_roc_auc_by_hand():
    # sklearn's documented example: scores [0.1, 0.4, 0.35, 0.8] for labels [0, 0, 1, 1]
    samples = _samples_with_share([0.1, 0.4, 0.35, 0.8])
    y = [0.0, 0.0, 3.0, 12.0]
    assert score("ap", y, samples) == pytest.approx(0.8333333333)
    assert score("roc_auc", y, samples) == pytest.approx(0.75)


# --- brute-force references ------------------------------------------------------------------

_counts = st.integers(min_value=0, max_value=50).map(float)
# no subnormals: [0, 2.2e-311] has a variance that underflows to 0, so numpy's ptp calls it
# varying while every variance formula (ours and corrcoef's) calls it constant; counts never
# come that close to 0
_values = st.one_of(_counts, st.floats(min_value=0, max_value=1e4, allow_nan=False,
                                          allow_subnormal=False))


@st.composite
def _sample_case(draw):
    n = draw(st.integers(1, 6))
    s = draw(st.integers(1, 12))
    samples = draw(hnp.arrays(np.float64, (n, s), elements=_values))
    y = draw(hnp.arrays(np.float64, (n,), elements=_values))
    return y, samples


def _crps_brute(y: np.ndarray, samples: np.ndarray) -> float:
    s = samples.shape[1]
    first = np.abs(samples - y[:, None]).mean(axis=1)
    second = np.abs(samples[:, :, None] - samples[:, None, :]).sum(axis=(1, 2)) / (2 * s * s)
    return float(np.mean(first - second))


@settings(max_examples=150, deadline=None)
@given(_sample_case())
def test_crps_matches_the_quadratic_formula(case):
    y, samples = case
    assert score("crps", y, samples) == pytest.approx(_crps_brute(y, samples), rel=1e-9,
                                                      abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(_sample_case(), st.sampled_from([0.0, 1.0, 5.0, 25.0, 1000.0]))
def test_twcrps_matches_the_chained_quadratic_formula(case, threshold):
    y, samples = case
    expected = _crps_brute(np.maximum(y, threshold), np.maximum(samples, threshold))
    got = score("twcrps", y, samples, threshold=threshold)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(_sample_case(), st.sampled_from([0.05, 0.1, 0.2, 0.5, 0.9]))
def test_mis_and_coverage_match_numpy_quantiles(case, alpha):
    y, samples = case
    low = np.quantile(samples, alpha / 2, axis=1)
    high = np.quantile(samples, 1 - alpha / 2, axis=1)
    mis = (high - low) + (2 / alpha) * (low - y) * (y < low) + (2 / alpha) * (y - high) * (y > high)
    covered = (low <= y) & (y <= high)
    assert score("mis", y, samples, alpha=alpha) == pytest.approx(mis.mean(), rel=1e-12,
                                                                  abs=1e-9)
    assert score("coverage", y, samples, alpha=alpha) == covered.mean()


@settings(max_examples=100, deadline=None)
@given(_sample_case(), st.sampled_from([0.0, 1.0, 10.0]))
def test_brier_matches_its_definition(case, tau):
    y, samples = case
    p = (samples > tau).mean(axis=1)
    assert score("brier", y, samples, tau=tau) == pytest.approx(np.mean((p - (y > tau)) ** 2))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 30)), elements=_values),
       hnp.arrays(np.float64, (30,), elements=_values))
def test_pearson_matches_numpy_when_defined(y, x_full):
    x = x_full[: len(y)]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        with pytest.raises(MetricUndefined):
            score("pearson", y, x)
    else:
        assert score("pearson", y, x) == pytest.approx(np.corrcoef(y, x)[0, 1], abs=1e-9)


# --- input errors ----------------------------------------------------------------------------


def test_nan_actual_names_metric_and_row_count():
    with pytest.raises(InputError, match=r"^mse: 2 of 3 rows have a NaN or infinite actual "
                                         r"\(first at row 1\)"):
        score("mse", [0.0, np.nan, np.nan], X)


def test_nan_point_prediction_is_an_error_not_a_nan_score():
    with pytest.raises(InputError, match=r"msle: 1 of 3 rows have a NaN or infinite point"):
        score("msle", Y, [0.0, np.nan, 1.0])


def test_infinite_sample_is_an_error():
    samples = np.array([[0.0, 1.0], [np.inf, 1.0], [2.0, -np.inf], [1.0, np.nan]])
    with pytest.raises(InputError, match=r"crps: 3 of 4 rows have a NaN or infinite sample "
                                         r"\(first at row 1\)"):
        score("crps", np.zeros(4), samples)


def test_negative_actual_is_an_error():
    with pytest.raises(InputError, match="1 of 3 rows have a negative actual"):
        score("mae", [0.0, -1.0, 2.0], X)


def test_negative_prediction_refused_by_log_metrics_only():
    with pytest.raises(InputError, match=r"rmsle: 1 of 3 rows have a negative point prediction.*"
                                         r"clip negatives to 0 upstream"):
        score("rmsle", Y, [0.0, -0.5, 1.0])
    assert score("mse", Y, [0.0, -1.0, 1.0]) == pytest.approx((0 + 4 + 4) / 3)


def test_empty_input_is_an_error():
    with pytest.raises(InputError, match="mse: no rows to score"):
        score("mse", [], [])
    with pytest.raises(InputError, match="crps: no rows to score"):
        score("crps", np.zeros(0), np.zeros((0, 5)))


def test_misaligned_input_is_an_error():
    with pytest.raises(InputError, match="3 actuals but 2 prediction rows"):
        score("mse", Y, [1.0, 2.0])


def test_point_metric_refuses_samples_with_a_hint():
    with pytest.raises(InputError, match=r"mse takes point predictions.*sample_mean"):
        score("mse", Y, np.c_[X, X])
