"""The forecaster protocol, checked once for every registered algorithm (STYLE.md point 11).

Each algorithm runs with small learners (fast) and, where it has one, a probabilistic variant.
A test fails when an algorithm is registered without a case here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import SpecError
from ewspipe.features.design import Design
from ewspipe.models import registry
from ewspipe.models.base import BaseForecaster, NotFittedError, clone
from ewspipe.panel.schema import Level

FIRST, N_MONTHS, N_UNITS = 121, 120, 20
TRAIN_LAST, ORIGIN = 200, 210
LATE_UNIT, GONE_UNIT = 20, 19  # enters at month 151; leaves after month 205

_SMALL_LGBM = {"n_estimators": 8, "num_leaves": 7, "min_child_samples": 5}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "zero": ("zero", {}),
    "locf": ("locf", {}),
    "average": ("average", {"w": 6}),
    "log_average": ("log_average", {"w": 6}),
    "conflictology": ("conflictology", {"w": 12, "n_samples": 30, "seed": 3}),
    "stepshifter": ("stepshifter", {"learner_params": _SMALL_LGBM}),
    "stepshifter_sampled": (
        "stepshifter",
        {"learner_params": _SMALL_LGBM, "n_samples": 25, "zero_downsample": 0.5, "seed": 5},
    ),
    "hurdle": ("hurdle", {"classifier_params": _SMALL_LGBM, "regressor_params": _SMALL_LGBM}),
    "hurdle_sampled": (
        "hurdle",
        {"classifier_params": _SMALL_LGBM, "regressor_params": _SMALL_LGBM, "n_samples": 25,
         "log_target": False, "seed": 9},
    ),
}


def synthetic_design(seed: int = 0) -> Design:
    """20 units x 120 months (121..240) of zero-inflated counts with hand-made causal features.

    Unit 20 enters at month 151 and unit 19 leaves after month 205, so the entity set changes.
    Features at month t: log1p of y at t, t-1, t-2 (lags 0..2), the 3-month mean of log1p y,
    and a static covariate; NaN where the unit has no history yet.
    """
    rng = np.random.default_rng(seed)
    months = np.arange(FIRST, FIRST + N_MONTHS)
    present = np.ones((N_MONTHS, N_UNITS), dtype=bool)
    present[: 151 - FIRST, LATE_UNIT - 1] = False
    present[206 - FIRST :, GONE_UNIT - 1] = False
    rate = rng.gamma(0.6, 15.0, N_UNITS)
    active = rng.random(N_UNITS) < 0.4
    y = np.zeros((N_MONTHS, N_UNITS))
    for t in range(N_MONTHS):  # a regime switch per unit, persistent over months
        active ^= rng.random(N_UNITS) < 0.05
        y[t] = np.where(active, rng.poisson(rate), 0)
    y[~present] = np.nan
    logy = np.log1p(y)

    def lag(a: np.ndarray, k: int) -> np.ndarray:
        out = np.full_like(a, np.nan)
        out[k:] = a[: len(a) - k]
        return out

    lags = [lag(logy, k) for k in range(3)]
    mean3 = np.mean(lags, axis=0)
    static = np.broadcast_to(rng.normal(size=N_UNITS), (N_MONTHS, N_UNITS))
    X = np.stack([*lags, mean3, static], axis=2)
    t_idx, u_idx = np.nonzero(present)  # row-major: sorted by (month, unit)
    return Design(
        level=Level.CM,
        unit_column="country_id",
        target="ged_sb",
        months=months[t_idx].astype(np.int64),
        units=(u_idx + 1).astype(np.int64),
        y=y[t_idx, u_idx],
        X=X[t_idx, u_idx],
        feature_names=("lag0", "lag1", "lag2", "mean3", "static"),
    )


def corrupt_after(design: Design, month: int) -> Design:
    """A copy whose rows after ``month`` hold absurd values (target and every feature)."""
    later = design.months > month
    y, X = design.y.copy(), design.X.copy()
    y[later] = 1e7
    X[later] = -1e6
    return Design(design.level, design.unit_column, design.target, design.months,
                  design.units, y, X, design.feature_names)


def make(case: str) -> BaseForecaster:
    name, params = CASES[case]
    return registry.create(name, params)


@pytest.fixture(scope="module")
def design() -> Design:
    return synthetic_design()


@pytest.fixture(scope="module")
def fitted(design: Design) -> dict[str, BaseForecaster]:
    return {case: make(case).fit(design, train_last=TRAIN_LAST) for case in CASES}


def assert_same(a: Any, b: Any) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.point, b.point)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_every_registered_algorithm_has_a_case() -> None:
    assert {name for name, _ in CASES.values()} == set(registry.names())


@pytest.mark.parametrize("case", CASES)
def test_fit_returns_self(case: str, design: Design) -> None:
    model = make(case)
    assert model.fit(design, train_last=TRAIN_LAST) is model


@pytest.mark.parametrize("case", CASES)
def test_predicts_36_steps_for_the_origin_entity_set(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    fc = fitted[case].predict(design, origin=ORIGIN)
    units = design.units[design.month_rows(ORIGIN)]
    assert GONE_UNIT not in units and LATE_UNIT in units
    assert list(fc.frame.columns) == ["origin", "step", "month_id", "country_id"]
    assert len(fc) == 36 * len(units)
    assert (fc.frame["origin"] == ORIGIN).all()
    assert sorted(fc.frame["step"].unique()) == list(range(1, 37))
    assert (fc.frame["month_id"] == ORIGIN + fc.frame["step"]).all()
    for _, group in fc.frame.groupby("step"):
        np.testing.assert_array_equal(group["country_id"].to_numpy(), units)
    keys = fc.frame[["origin", "step", "country_id"]]
    pd.testing.assert_frame_equal(keys, keys.sort_values(["origin", "step", "country_id"]))


@pytest.mark.parametrize("case", CASES)
def test_output_is_raw_non_negative_finite_counts(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    fc = fitted[case].predict(design, origin=ORIGIN)
    for values in (fc.point, fc.samples):
        assert np.isfinite(values).all()
        assert (values >= 0).all()
    assert fc.point.shape == (len(fc),)
    assert fc.samples.shape[0] == len(fc)
    if fc.n_samples == 1:
        np.testing.assert_array_equal(fc.samples[:, 0], fc.point)
    else:
        assert fc.n_samples == CASES[case][1]["n_samples"]
    if case != "zero":  # raw counts: the panel's positives are in the tens, log1p would be < 5
        assert fc.point.max() > 5


@pytest.mark.parametrize("case", CASES)
def test_predict_reads_nothing_after_the_origin(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    model = fitted[case]
    clean = model.predict(design, origin=ORIGIN)
    assert_same(model.predict(corrupt_after(design, ORIGIN), origin=ORIGIN), clean)
    assert_same(model.predict(design.up_to(ORIGIN), origin=ORIGIN), clean)


@pytest.mark.parametrize("case", CASES)
def test_fit_learns_nothing_after_train_last(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    refit = make(case).fit(corrupt_after(design, TRAIN_LAST), train_last=TRAIN_LAST)
    origin = TRAIN_LAST  # the origin's own rows are clean in both designs
    assert_same(refit.predict(design, origin=origin), fitted[case].predict(design, origin=origin))


@pytest.mark.parametrize("case", CASES)
def test_reproducible_with_the_same_seed(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    again = make(case).fit(design, train_last=TRAIN_LAST)
    assert_same(again.predict(design, origin=ORIGIN), fitted[case].predict(design, origin=ORIGIN))


@pytest.mark.parametrize("case", CASES)
def test_a_step_does_not_depend_on_the_other_steps_requested(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    model = fitted[case]
    full = model.predict(design, origin=ORIGIN)
    part = model.predict(design, origin=ORIGIN, steps=[7, 2])  # any order, returned sorted
    mask = full.frame["step"].isin([2, 7]).to_numpy()
    assert part.frame["step"].is_monotonic_increasing
    pd.testing.assert_frame_equal(part.frame, full.frame[mask].reset_index(drop=True))
    np.testing.assert_array_equal(part.point, full.point[mask])
    np.testing.assert_array_equal(part.samples, full.samples[mask])


@pytest.mark.parametrize("case", CASES)
def test_clone_and_get_params_round_trip(case: str, fitted: dict[str, BaseForecaster]) -> None:
    name, params = CASES[case]
    model = fitted[case]
    assert model.get_params() == {**type(model).default_params(), **params}
    copy = clone(model)
    assert type(copy) is type(model)
    assert copy.get_params() == model.get_params()
    assert registry.create(name, model.get_params()).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(synthetic_design(), origin=ORIGIN)


@pytest.mark.parametrize("case", CASES)
def test_not_fitted_error_before_fit(case: str, design: Design) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        make(case).predict(design, origin=ORIGIN)


@pytest.mark.parametrize("case", CASES)
def test_check_params_validates_without_data(case: str) -> None:
    name, params = CASES[case]
    cls = registry.get(name)
    assert cls.check_params(params) == {**cls.default_params(), **params}
    with pytest.raises(SpecError, match="unknown hyperparameter 'bogus'"):
        cls.check_params({"bogus": 1})


@pytest.mark.parametrize("case", CASES)
def test_origin_without_rows_is_refused(case: str, fitted: dict[str, BaseForecaster]) -> None:
    design = synthetic_design().up_to(ORIGIN)
    with pytest.raises(ValueError, match="origin month 215 has no rows"):
        fitted[case].predict(design, origin=215)


@pytest.mark.parametrize("case", CASES)
def test_bad_steps_are_refused(
    case: str, design: Design, fitted: dict[str, BaseForecaster]
) -> None:
    with pytest.raises(ValueError, match="steps must be integers >= 1"):
        fitted[case].predict(design, origin=ORIGIN, steps=[0, 1])


@pytest.mark.parametrize("case", CASES)
def test_train_last_before_the_data_is_refused(case: str, design: Design) -> None:
    with pytest.raises(ValueError, match="no design rows with month <= train_last 100"):
        make(case).fit(design, train_last=100)
