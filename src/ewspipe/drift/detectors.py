"""Input drift detectors, registered by the names ``[drift.thresholds]`` uses.

Each detector *measures* a :class:`~ewspipe.drift.windows.Windows` and returns plain numbers
(one per offender); thresholds are applied afterwards (:mod:`ewspipe.drift.check`), so the
back-test can keep the raw values. The VIEWS detectors (DOMAIN.md section 6):

* ``{global,month,unit,feature}_missingness``: share of missing test-window values (absent
  rows of units that were present in the last standard month count as missing); month and
  unit shares pool the features, feature shares pool months and units;
* ``{global,month,feature}_zeros``: share of zeros among the observed test-window values;
* ``unit_zeros``: per unit, the *increase* of its share of silent months (every count 0)
  from the standard to the test window: a unit's own history is its reference, because in
  zero-inflated conflict data most units are always zero and an absolute per-unit share
  would flag every peaceful country every month;
* ``delta_completeness`` = |nan_test - nan_std| / (nan_std + 1e-20), per feature;
* ``delta_zeroes`` = |zero_test - zero_std| / (zero_std + 1e-20), per feature;
* ``extreme_values`` = |max(test) - mean(std)| / (std(std) + 1e-20), per feature, naming the
  unit holding the maximum;
* ``ks_drift`` = 1 / p-value of the two-sample Kolmogorov-Smirnov test on positive values.

And the two parts of the zero-inflation (hurdle) detector, effect sizes rather than p-values,
so 13,000 cells do not make every wobble significant:

* ``nonzero_shift`` = |logit p_test - logit p_std| for the share p of non-zero values
  (smoothed with half a pseudo-count per test window's worth of cells, so an all-zero
  month stays finite); 1.0 means the odds of a non-zero value changed e-fold;
* ``positive_shift`` = Wasserstein-1 distance between log1p of the positive values in the
  test and standard windows: the log scale is the normalisation (counts become scale-free),
  so 1.0 means positive values moved by a factor of about e on average. (Dividing further by
  the spread of the standard positives separated clean months from a tenfold unit change no
  better on the real cm data and adds a second noisy estimate; docs/drift_backtest.md.)

Adding a detector: write a ``_measure`` function, register it below, add its threshold to
``DriftThresholds`` in settings.py and its perturbation to :mod:`ewspipe.drift.selftest`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ewspipe.drift.windows import Windows
from ewspipe.errors import InputError

__all__ = ["DETECTORS", "Detector", "Measurement", "get_detector", "names"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Kind = Literal["global", "month", "unit"]

_EPS = 1e-20  # DOMAIN.md: denominators of the delta and extreme-value detectors
_P_FLOOR = 1e-300  # a KS p-value of exactly 0 would make 1/p infinite
ALL_FEATURES = "all"


@dataclass(frozen=True)
class Measurement:
    """One detector's values for one feature (or ``"all"`` features pooled).

    ``kind`` says what ``keys`` hold: nothing (``global``), month ids or unit ids. ``values``
    has one entry per key (one entry for ``global``); ``NaN`` means "not measurable" (e.g.
    too few positive values) and never raises an alarm.
    """

    feature: str
    kind: Kind
    keys: IntArray
    values: FloatArray


@dataclass(frozen=True)
class Detector:
    name: str
    granularity: str
    description: str
    measure: Callable[[Windows, int], list[Measurement]]


_NO_KEYS = np.zeros(0, dtype=np.int64)


def _global(feature: str, value: float) -> Measurement:
    return Measurement(feature, "global", _NO_KEYS, np.array([value], dtype=np.float64))


def _ratio(num: npt.NDArray[np.integer], den: npt.NDArray[np.integer]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


# ------------------------------------------------------------------ shared reductions


def _test_missing(w: Windows) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(missing, expected) over the test window, both ``(n, U, F)``."""
    expected = np.broadcast_to(w.expected_test[:, :, None], w.test.shape)
    missing = expected & np.isnan(w.test)
    return missing, expected


def _std_missing(w: Windows) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    present = np.broadcast_to(w.standard_present[:, :, None], w.standard.shape)
    return present & np.isnan(w.standard), present


def _zeros(values: FloatArray) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    observed = ~np.isnan(values)
    return observed & (values == 0), observed


# ------------------------------------------------------------------ missingness


def _global_missingness(w: Windows, _: int) -> list[Measurement]:
    missing, expected = _test_missing(w)
    return [_global(ALL_FEATURES, float(_ratio(missing.sum(), expected.sum())))]


def _month_missingness(w: Windows, _: int) -> list[Measurement]:
    missing, expected = _test_missing(w)
    values = _ratio(missing.sum(axis=(1, 2)), expected.sum(axis=(1, 2)))
    return [Measurement(ALL_FEATURES, "month", w.test_months, values)]


def _unit_missingness(w: Windows, _: int) -> list[Measurement]:
    missing, expected = _test_missing(w)
    shares = _ratio(missing.sum(axis=(0, 2)), expected.sum(axis=(0, 2)))
    return [Measurement(ALL_FEATURES, "unit", w.units, shares)]


def _feature_missingness(w: Windows, _: int) -> list[Measurement]:
    missing, expected = _test_missing(w)
    shares = _ratio(missing.sum(axis=(0, 1)), expected.sum(axis=(0, 1)))
    return [_global(f, float(shares[i])) for i, f in enumerate(w.features)]


# ------------------------------------------------------------------ zeros


def _global_zeros(w: Windows, _: int) -> list[Measurement]:
    zero, observed = _zeros(w.test)
    return [_global(ALL_FEATURES, float(_ratio(zero.sum(), observed.sum())))]


def _month_zeros(w: Windows, _: int) -> list[Measurement]:
    zero, observed = _zeros(w.test)
    values = _ratio(zero.sum(axis=(1, 2)), observed.sum(axis=(1, 2)))
    return [Measurement(ALL_FEATURES, "month", w.test_months, values)]


def _silent_share(values: FloatArray) -> FloatArray:
    """Per unit: share of its observed months in which every observed feature is 0."""
    observed = (~np.isnan(values)).any(axis=2)
    silent = observed & ~(values > 0).any(axis=2)  # NaN > 0 is False
    return _ratio(silent.sum(axis=0), observed.sum(axis=0))


def _unit_zeros(w: Windows, _: int) -> list[Measurement]:
    # silence is about the counts: covariates such as population are never zero
    cols = [w.features.index(f) for f in w.count_features] or list(range(len(w.features)))
    increase = _silent_share(w.test[..., cols]) - _silent_share(w.standard[..., cols])
    return [Measurement(ALL_FEATURES, "unit", w.units, increase)]


def _feature_zeros(w: Windows, _: int) -> list[Measurement]:
    zero, observed = _zeros(w.test)
    shares = _ratio(zero.sum(axis=(0, 1)), observed.sum(axis=(0, 1)))
    return [_global(f, float(shares[i])) for i, f in enumerate(w.features)]


# ------------------------------------------------------------------ deltas


def _delta_completeness(w: Windows, _: int) -> list[Measurement]:
    miss_t, exp_t = _test_missing(w)
    miss_s, exp_s = _std_missing(w)
    nan_t = _ratio(miss_t.sum(axis=(0, 1)), exp_t.sum(axis=(0, 1)))
    nan_s = _ratio(miss_s.sum(axis=(0, 1)), exp_s.sum(axis=(0, 1)))
    delta = np.abs(nan_t - nan_s) / (nan_s + _EPS)
    return [_global(f, float(delta[i])) for i, f in enumerate(w.features)]


def _delta_zeroes(w: Windows, _: int) -> list[Measurement]:
    zero_t, obs_t = _zeros(w.test)
    zero_s, obs_s = _zeros(w.standard)
    z_t = _ratio(zero_t.sum(axis=(0, 1)), obs_t.sum(axis=(0, 1)))
    z_s = _ratio(zero_s.sum(axis=(0, 1)), obs_s.sum(axis=(0, 1)))
    delta = np.abs(z_t - z_s) / (z_s + _EPS)
    return [_global(f, float(delta[i])) for i, f in enumerate(w.features)]


def _extreme_values(w: Windows, _: int) -> list[Measurement]:
    out = []
    test = w.test.reshape(-1, len(w.features))
    std = w.standard.reshape(-1, len(w.features))
    units = np.tile(w.units, w.n_test)
    for i, f in enumerate(w.features):
        t, s = test[:, i], std[:, i]
        t_ok, s_ok = ~np.isnan(t), ~np.isnan(s)
        if not t_ok.any() or not s_ok.any():
            out.append(_global(f, np.nan))
            continue
        where = int(np.argmax(np.where(t_ok, t, -np.inf)))
        s_vals = s[s_ok]
        value = abs(t[where] - s_vals.mean()) / (s_vals.std() + _EPS)
        out.append(Measurement(f, "unit", units[where:where + 1], np.array([value])))
    return out


# ------------------------------------------------------------------ distributions


def _positives(w: Windows, i: int) -> tuple[FloatArray, FloatArray]:
    t, s = w.test[..., i].ravel(), w.standard[..., i].ravel()
    return t[t > 0], s[s > 0]  # NaN > 0 is False


def _per_positives(
    w: Windows, min_positives: int, measure: Callable[[FloatArray, FloatArray], float]
) -> list[Measurement]:
    """``measure(test, standard)`` of each feature's positive values; NaN (not measurable)
    where either window has fewer than ``min_positives`` of them."""
    out = []
    for i, f in enumerate(w.features):
        pos_t, pos_s = _positives(w, i)
        if min(len(pos_t), len(pos_s)) < min_positives:
            out.append(_global(f, np.nan))
        else:
            out.append(_global(f, measure(pos_t, pos_s)))
    return out


def _ks_inverse_p(pos_t: FloatArray, pos_s: FloatArray) -> float:
    from scipy import stats  # here: scipy.stats costs ~1 s of every CLI start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ks_2samp(pos_t, pos_s, method="asymp").pvalue)
    return 1.0 / max(p, _P_FLOOR)


def _ks_drift(w: Windows, min_positives: int) -> list[Measurement]:
    return _per_positives(w, min_positives, _ks_inverse_p)


def _logit(k: FloatArray, n: FloatArray, scale: FloatArray) -> FloatArray:
    # half a pseudo-count per test-window's worth of cells, so both windows are smoothed
    # alike: a feature that is never (or always) zero in both has no shift
    p = (k + 0.5 * scale) / (n + scale)
    return np.log(p) - np.log1p(-p)


def _nonzero_shift(w: Windows, _: int) -> list[Measurement]:
    obs_t, obs_s = ~np.isnan(w.test), ~np.isnan(w.standard)
    k_t = (w.test > 0).sum(axis=(0, 1)).astype(float)
    k_s = (w.standard > 0).sum(axis=(0, 1)).astype(float)
    n_t = obs_t.sum(axis=(0, 1)).astype(float)
    n_s = obs_s.sum(axis=(0, 1)).astype(float)
    ok = (n_t > 0) & (n_s > 0)
    n_t_safe = np.where(ok, n_t, 1.0)
    shift = np.abs(_logit(k_t, n_t, np.ones_like(n_t)) - _logit(k_s, n_s, n_s / n_t_safe))
    shift = np.where(ok, shift, np.nan)
    return [_global(f, float(shift[i])) for i, f in enumerate(w.features)]


def _positive_shift(w: Windows, min_positives: int) -> list[Measurement]:
    from scipy import stats

    return _per_positives(w, min_positives, lambda pos_t, pos_s: float(
        stats.wasserstein_distance(np.log1p(pos_t), np.log1p(pos_s))))


# ------------------------------------------------------------------ registry

DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("global_missingness", "global", "share of missing test-window values",
                 _global_missingness),
        Detector("month_missingness", "month", "share of missing values in each test month",
                 _month_missingness),
        Detector("unit_missingness", "unit",
                 "share of missing test-window values of each unit "
                 "(a unit that drops out of the feed is missing)", _unit_missingness),
        Detector("feature_missingness", "feature", "share of missing values of each feature",
                 _feature_missingness),
        Detector("global_zeros", "global", "share of zeros among observed test-window values",
                 _global_zeros),
        Detector("month_zeros", "month", "share of zeros in each test month", _month_zeros),
        Detector("unit_zeros", "unit",
                 "increase of each unit's share of silent months (all counts 0), "
                 "standard to test window",
                 _unit_zeros),
        Detector("feature_zeros", "feature", "share of zeros of each feature", _feature_zeros),
        Detector("delta_completeness", "feature",
                 "|nan_test - nan_std| / (nan_std + 1e-20)", _delta_completeness),
        Detector("delta_zeroes", "feature", "|zero_test - zero_std| / (zero_std + 1e-20)",
                 _delta_zeroes),
        Detector("extreme_values", "feature",
                 "|max(test) - mean(std)| / (std(std) + 1e-20), naming the unit of the max",
                 _extreme_values),
        Detector("ks_drift", "feature", "1 / p-value of the two-sample KS test on positives",
                 _ks_drift),
        Detector("nonzero_shift", "feature",
                 "|change in the log-odds of a non-zero value| (zero-inflation, part 1)",
                 _nonzero_shift),
        Detector("positive_shift", "feature",
                 "Wasserstein-1 distance between log1p positives, test vs standard "
                 "(zero-inflation, part 2)", _positive_shift),
    )
}


def names() -> list[str]:
    """Registered detector names, in the order they run and are reported."""
    return list(DETECTORS)


def get_detector(name: str) -> Detector:
    """The detector registered under ``name``.

    Raises:
        InputError: for an unknown name, listing the valid ones.
    """
    try:
        return DETECTORS[name]
    except KeyError:
        raise InputError(
            f"{name!r} is not a drift detector; use one of {', '.join(DETECTORS)}"
        ) from None
