"""Direct multi-step model: pairing, learning a known relation, scales, sampling, learners."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import ewspipe.models.stepshifter as stepshifter_module
from ewspipe.errors import EwspipeError, SpecError
from ewspipe.features.design import Design
from ewspipe.models import learners
from ewspipe.models.base import NotFittedError
from ewspipe.models.sampling import ResidualTable
from ewspipe.models.stepshifter import (
    Stepshifter,
    downsample_zeros,
    downsampled_pairs,
    training_pairs,
)
from ewspipe.panel.schema import Level

SMALL = {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5}


def grid_design(y: np.ndarray, X: np.ndarray, first: int = 121,
                present: np.ndarray | None = None) -> Design:
    """A Design from (months x units) target and (months x units x k) features."""
    present = np.ones_like(y, dtype=bool) if present is None else present
    t, u = np.nonzero(present)
    return Design(Level.CM, "country_id", "ged_sb", (first + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u].astype(np.float64),
                  X[t, u].astype(np.float64), tuple(f"x{j}" for j in range(X.shape[2])))


def lagged_relation(n_months: int = 120, n_units: int = 30, lag: int = 3, seed: int = 0,
                    threshold: float = 0.0):
    """x iid in [0, 50); y at t = 2 * x at t - lag (0 before, and 0 where that x < threshold):
    only step ``lag`` is learnable."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 50, (n_months, n_units))
    y = np.zeros_like(x)
    y[lag:] = np.where(x[:-lag] >= threshold, 2 * x[:-lag], 0.0)
    return grid_design(y, x[:, :, None]), x


def constant_levels(n_months: int = 60, levels: np.ndarray | None = None) -> Design:
    """Each unit has a constant count; the feature is log1p of it."""
    levels = np.array([0, 0, 3, 40, 400, 4000.0]) if levels is None else levels
    y = np.broadcast_to(levels, (n_months, len(levels))).copy()
    return grid_design(y, np.log1p(y)[:, :, None])


# ----------------------------------------------------------------------------- pairing ---


def small_panel() -> Design:
    """Units 1-2 in months 101-106; unit 3 only in 101-103; unit 2's target at 104 is NaN."""
    y = np.arange(18, dtype=float).reshape(6, 3)
    y[3, 1] = np.nan
    present = np.ones((6, 3), dtype=bool)
    present[3:, 2] = False
    X = np.arange(18, dtype=float).reshape(6, 3, 1) * 10
    return grid_design(y, X, first=101, present=present)


def test_training_pairs_match_same_unit_step_months_later() -> None:
    design = small_panel()
    pairs = training_pairs(design, train_last=105, step=2)
    f_month, f_unit = design.months[pairs.features], design.units[pairs.features]
    t_month, t_unit = design.months[pairs.targets], design.units[pairs.targets]
    assert (t_month == f_month + 2).all() and (t_unit == f_unit).all()
    assert (t_month <= 105).all()
    got = set(zip(f_month.tolist(), f_unit.tolist(), strict=True))
    # unit 3 has no month 104/105; unit 2's target at 104 is NaN
    assert got == {(101, 1), (101, 2), (101, 3), (102, 1), (103, 1), (103, 2)}


def test_complete_pairs_are_a_block_of_rows() -> None:
    design, _ = lagged_relation(n_months=20, n_units=4)
    pairs = training_pairs(design, train_last=135, step=5)
    assert isinstance(pairs.features, slice)
    np.testing.assert_array_equal(pairs.rows_of(design.X),
                                  np.asarray(design.X)[pairs.features])
    assert len(pairs) == (135 - 5 - 121 + 1) * 4


def test_train_window_limits_feature_months() -> None:
    design = small_panel()
    pairs = training_pairs(design, train_last=106, step=1, window=2)
    assert design.months[pairs.features].min() == 104
    assert design.months[pairs.targets].max() == 106


def test_a_window_model_reads_no_design_row_before_its_first_design_month() -> None:
    """Trained on the design cut at first_design_month, a windowed model is the same model:
    the run builds only that tail (build_design(first_month=...))."""
    design, _ = lagged_relation(n_months=60, n_units=6)
    params = {"learner_params": SMALL, "steps": 4, "train_window": 12, "n_samples": 5,
              "zero_downsample": 0.5, "seed": 3, "n_jobs": 1}
    train_last = 170
    first = Stepshifter(**params).first_design_month(train_last)
    assert first == train_last - 12
    cut = slice(int(np.searchsorted(design.months, first)), None)
    tail = Design(design.level, design.unit_column, design.target, design.months[cut],
                  design.units[cut], design.y[cut], design.X[cut], design.feature_names)
    a = Stepshifter(**params).fit(design, train_last=train_last)
    b = Stepshifter(**params).fit(tail, train_last=train_last)
    fa = a.predict(design, origin=train_last, steps=[1, 2, 3, 4])
    fb = b.predict(tail, origin=train_last, steps=[1, 2, 3, 4])
    np.testing.assert_array_equal(fa.point, fb.point)
    np.testing.assert_array_equal(fa.samples, fb.samples)
    assert Stepshifter(**{**params, "train_window": None}).first_design_month(train_last) is None


@pytest.mark.parametrize("kind", ["lightgbm", "ridge", "hurdle"])
def test_a_forecast_reads_only_its_origin_month(kind: str) -> None:
    """The monthly forecast builds its design from first_predict_month(origin) on: one
    month. The forecast, draws included, is the same as from the whole design."""
    from ewspipe.models.hurdle import Hurdle

    design, _ = lagged_relation(n_months=60, n_units=6)
    if kind == "hurdle":
        model = Hurdle(classifier_params=SMALL, regressor_params=SMALL, steps=4,
                       n_samples=7, seed=2)
    else:
        model = Stepshifter(learner=kind, learner_params=SMALL if kind == "lightgbm" else {},
                            steps=4, n_samples=7, seed=2, n_jobs=1)
    model.fit(design, train_last=170)
    for origin in (170, 175):
        first = model.first_predict_month(origin)
        assert first == origin
        cut = slice(int(np.searchsorted(design.months, first)), None)
        lean = Design(design.level, design.unit_column, design.target, design.months[cut],
                      design.units[cut], design.y[cut], design.X[cut], design.feature_names)
        fa = model.predict(design, origin=origin, steps=[1, 2, 3, 4])
        fb = model.predict(lean, origin=origin, steps=[1, 2, 3, 4])
        assert fa.frame.equals(fb.frame)
        np.testing.assert_array_equal(fa.point, fb.point)
        np.testing.assert_array_equal(fa.samples, fb.samples)


def test_downsample_zeros_keeps_all_positives_and_reweights_zeros() -> None:
    rng = np.random.default_rng(0)
    is_zero = rng.random(20_000) < 0.8
    keep, weight = downsample_zeros(is_zero, 0.25, seed=1, step=3)
    assert keep is not None and weight is not None
    assert keep[~is_zero].all()
    assert keep[is_zero].mean() == pytest.approx(0.25, abs=0.02)
    np.testing.assert_array_equal(weight, np.where(is_zero[keep], 4.0, 1.0))
    assert weight[is_zero[keep]].sum() == pytest.approx(is_zero.sum(), rel=0.05)
    again, _ = downsample_zeros(is_zero, 0.25, seed=1, step=3)
    other, _ = downsample_zeros(is_zero, 0.25, seed=1, step=4)
    np.testing.assert_array_equal(keep, again)
    assert not np.array_equal(keep, other)
    assert downsample_zeros(is_zero, 1.0, seed=1, step=3) == (None, None)


def test_zero_downsample_in_the_model_keeps_every_positive_pair() -> None:
    design, _ = lagged_relation(threshold=25.0)  # about half of the targets are 0
    full = Stepshifter(learner_params=SMALL, steps=4).fit(design, train_last=200)
    thin = Stepshifter(learner_params=SMALL, steps=4, zero_downsample=0.01, seed=2).fit(
        design, train_last=200
    )
    for step in range(1, 5):
        pairs = training_pairs(design, train_last=200, step=step)
        positives = int((design.y[pairs.targets] > 0).sum())
        assert full.n_pairs_[step] == len(pairs)
        assert positives < len(pairs) / 1.5
        assert positives <= thin.n_pairs_[step] < positives + 0.05 * (len(pairs) - positives)


@pytest.mark.parametrize("block", [1, 5, 1 << 20])
@pytest.mark.parametrize("window", [None, 3])
def test_downsampled_pairs_are_training_pairs_then_downsample_zeros(block, window,
                                                                    monkeypatch) -> None:
    """Block by block (global pgm memory), the same pairs, targets, weights and draws."""
    monkeypatch.setattr(stepshifter_module, "_PAIR_BLOCK", block)
    holey = small_panel()
    y = np.where(np.arange(60 * 7).reshape(60, 7) % 4 == 0, 5.0, 0.0)
    y[10, 2] = np.nan
    for design in (holey, grid_design(y, y[:, :, None])):
        last = int(design.last_month)
        for step in (1, 2):
            full = training_pairs(design, train_last=last, step=step, window=window)
            target = design.y[full.targets]
            keep, weight = downsample_zeros(target == 0, 0.4, seed=9, step=step)
            assert keep is not None
            want = full.subset(keep)
            got, values, weights, n, top = downsampled_pairs(
                design, train_last=last, step=step, window=window, share=0.4, seed=9)
            np.testing.assert_array_equal(got.features, want.features)
            np.testing.assert_array_equal(got.targets, want.targets)
            np.testing.assert_array_equal(values, target[keep])
            np.testing.assert_array_equal(weights, weight)
            assert (n, top) == (len(full), float(np.max(target, initial=0.0)))


def test_a_down_sampled_fit_is_the_same_for_any_pair_block(monkeypatch) -> None:
    design, _ = lagged_relation(threshold=25.0)
    params = {"learner_params": SMALL, "steps": 3, "zero_downsample": 0.3, "seed": 4,
              "n_samples": 5}
    one = Stepshifter(**params).fit(design, train_last=200)
    monkeypatch.setattr(stepshifter_module, "_PAIR_BLOCK", 7)
    other = Stepshifter(**params).fit(design, train_last=200)
    assert one.n_pairs_ == other.n_pairs_ and one.target_max_ == other.target_max_
    a = one.predict(design, origin=200, steps=[1, 2, 3])
    b = other.predict(design, origin=200, steps=[1, 2, 3])
    np.testing.assert_array_equal(a.point, b.point)
    np.testing.assert_array_equal(a.samples, b.samples)


# ---------------------------------------------------------------------------- learning ---


def test_learns_a_known_relation_at_the_right_step() -> None:
    design, x = lagged_relation(lag=3)
    origin = 230
    exact = Stepshifter(learner="ridge", learner_params={"alpha": 1e-6}, steps=3,
                        log_target=False).fit(design, train_last=origin)
    fc = exact.predict(design, origin=origin, steps=[3])
    expected = 2 * x[origin - 121]  # y at origin + 3 = 2 * x at origin
    np.testing.assert_allclose(fc.point, expected, rtol=1e-4, atol=1e-4)

    boosted = Stepshifter(steps=3, log_target=False).fit(design, train_last=origin)
    fc = boosted.predict(design, origin=origin, steps=[1, 2, 3])
    by_step = {s: fc.point[fc.frame["step"].to_numpy() == s] for s in (1, 2, 3)}
    assert np.mean(np.abs(by_step[3] - expected)) < 2.5  # targets span 0..100
    assert np.corrcoef(by_step[3], expected)[0, 1] > 0.99
    assert abs(np.corrcoef(by_step[1], expected)[0, 1]) < 0.5  # step 1 has nothing to learn


def test_every_step_learns_when_the_relation_holds_for_all_steps() -> None:
    design = constant_levels()
    model = Stepshifter(learner="ridge", learner_params={"alpha": 1e-8}, log_target=True)
    fc = model.fit(design, train_last=175).predict(design, origin=180)
    assert sorted(set(fc.frame["step"])) == list(range(1, 37))
    np.testing.assert_allclose(fc.point, np.tile([0, 0, 3, 40, 400, 4000.0], 36), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("log_target", [True, False])
def test_output_is_raw_counts_whatever_the_fitting_scale(log_target: bool) -> None:
    design = constant_levels()
    model = Stepshifter(learner_params={"min_child_samples": 5}, steps=2, log_target=log_target)
    fc = model.fit(design, train_last=170).predict(design, origin=180, steps=[1, 2])
    np.testing.assert_allclose(fc.point[4:6], [400, 4000], rtol=0.1)  # not log1p ~ 6 and 8.3
    assert (fc.point[:2] < 1).all()


def test_log_target_is_inside_the_model_only() -> None:
    design = constant_levels()
    model = Stepshifter(learner="ridge", steps=1, log_target=True).fit(design, train_last=170)
    raw = model.models_[1].predict(design.X[design.month_rows(180)])
    assert raw.max() < 10  # the sub-model works on log1p ...
    forecast = model.predict(design, origin=180, steps=[1])
    assert forecast.point.max() > 3000  # ... the forecast does not


# ---------------------------------------------------------------------------- sampling ---


def test_residual_table_samples_from_the_bin_of_the_prediction() -> None:
    predicted = np.r_[np.zeros(500), np.full(500, 10.0)]
    residuals = np.r_[np.zeros(500), np.linspace(-3, 3, 500)]
    table = ResidualTable.fit(predicted, residuals, bins=2)
    rng = np.random.default_rng(0)
    low = table.draw(np.zeros(5), 1000, rng)
    high = table.draw(np.full(5, 10.0), 1000, rng)
    assert (low == 0).all()  # near-zero predictions only get near-zero residuals
    assert high.min() >= 7 - 1e-9 and high.max() <= 13 + 1e-9 and high.std() > 1


def test_weighted_residuals_undo_downsampling() -> None:
    residuals = np.r_[np.zeros(10), np.ones(90)]
    weights = np.r_[np.full(10, 9.0), np.ones(90)]  # 10 kept of 90 zeros, weight 9
    table = ResidualTable.fit(np.zeros(100), residuals, weights, bins=1)
    assert (table.table == 0).mean() == pytest.approx(0.5, abs=0.01)


def test_samples_are_counts_spread_around_the_point() -> None:
    rng = np.random.default_rng(1)
    levels = rng.gamma(0.5, 200, 40)
    noisy = rng.poisson(np.broadcast_to(levels, (80, 40))).astype(float)
    design = grid_design(noisy, np.log1p(np.broadcast_to(levels, (80, 40)))[:, :, None])
    model = Stepshifter(learner_params=SMALL, steps=2, n_samples=300, seed=4)
    fc = model.fit(design, train_last=190).predict(design, origin=200, steps=[1, 2])
    assert fc.samples.shape == (80, 300)
    assert (fc.samples >= 0).all() and np.isfinite(fc.samples).all()
    spread = np.quantile(fc.samples, 0.9, axis=1) - np.quantile(fc.samples, 0.1, axis=1)
    assert np.corrcoef(fc.point, spread)[0, 1] > 0.5  # wider for larger predictions
    median = np.median(fc.samples, axis=1)
    assert np.corrcoef(np.log1p(median), np.log1p(fc.point))[0, 1] > 0.95


# ---------------------------------------------------------------------- errors and jobs ---


def test_predict_refuses_a_step_it_was_not_trained_for() -> None:
    design, _ = lagged_relation()
    model = Stepshifter(learner_params=SMALL, steps=3).fit(design, train_last=200)
    with pytest.raises(ValueError, match=r"step 4 was not trained.*steps 1\.\.3"):
        model.predict(design, origin=200, steps=[1, 4])


def test_a_step_without_training_pairs_is_named() -> None:
    design, _ = lagged_relation(n_months=20)
    with pytest.raises(ValueError, match="step 20 has no training pairs"):
        Stepshifter(learner_params=SMALL, steps=20).fit(design, train_last=140)


def test_predict_refuses_a_design_with_other_features() -> None:
    design, _ = lagged_relation()
    model = Stepshifter(learner_params=SMALL, steps=1).fit(design, train_last=200)
    other = Design(design.level, design.unit_column, design.target, design.months,
                   design.units, design.y, design.X, ("other",))
    with pytest.raises(ValueError, match=r"missing \['x0'\], unexpected \['other'\]"):
        model.predict(other, origin=200, steps=[1])


def test_non_finite_predictions_are_errors_not_zeros() -> None:
    design = constant_levels()
    model = Stepshifter(learner="ridge", steps=1).fit(design, train_last=170)
    model.models_[1] = learners.ConstantRegressor(np.nan)  # a learner gone wrong
    with pytest.raises(FloatingPointError, match=r"non-finite point values.*step 1"):
        model.predict(design, origin=180, steps=[1])


def test_thread_count_does_not_change_the_result() -> None:
    design, _ = lagged_relation()
    params = {"learner_params": SMALL, "steps": 6, "n_samples": 20, "zero_downsample": 0.5}
    one = Stepshifter(**params, n_jobs=1).fit(design, train_last=200)
    two = Stepshifter(**params, n_jobs=2).fit(design, train_last=200)
    a = one.predict(design, origin=210, steps=range(1, 7))
    b = two.predict(design, origin=210, steps=range(1, 7))
    np.testing.assert_array_equal(a.samples, b.samples)


def test_learner_failure_names_the_step_and_leaves_the_model_unfitted() -> None:
    design, _ = lagged_relation()
    model = Stepshifter(learner="ridge", learner_params={"alpha": -1.0}, steps=2, n_jobs=1)
    with pytest.raises(EwspipeError, match=r"learner 'ridge' of step 1 .*'alpha'"):
        model.fit(design, train_last=200)
    with pytest.raises(NotFittedError):
        model.predict(design, origin=200, steps=[1])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"learner": "lgbm"}, r"'learner' of algorithm 'stepshifter' must be one of "
                              r"'hist_gradient_boosting', 'lightgbm', 'random_forest', 'ridge', "
                              r"'xgboost' \(did you mean 'lightgbm'\?\); got 'lgbm'"),
        ({"learner_params": {"n_estimatorz": 5}},
         r"regressor 'lightgbm' has no parameter 'n_estimatorz'\. Did you mean 'n_estimators'"),
        ({"learner_params": {"random_state": 5}}, r"'random_state' may not be set.*'seed'"),
        ({"learner_params": {"num_leaves": 1}}, r"regressor 'lightgbm' rejects its params"),
        ({"learner": "ridge", "learner_params": {"alpha": -1}}, r"'alpha' parameter of Ridge"),
        ({"learner_params": [1, 2]}, r"'learner_params' of algorithm 'stepshifter' must be a "
                                     r"table"),
        ({"zero_downsample": 0.0}, r"'zero_downsample' .* in \(0\.0, 1\.0\]; got 0\.0"),
        ({"steps": 0}, r"'steps' .* got 0"),
        ({"sampling": "quantile"}, r"'sampling' .* one of 'residual', 'holdout'; got 'quantile'"),
        ({"train_window": 0}, r"'train_window' .* or omitted \(None\); got 0"),
        ({"n_jobs": 0}, r"'n_jobs' .* -1 for all available CPUs; got 0"),
    ],
)
def test_check_params_names_the_bad_key_and_value(params: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        Stepshifter.check_params(params)


@pytest.mark.skipif(importlib.util.find_spec("xgboost") is not None,
                    reason="xgboost is installed")
def test_missing_xgboost_gives_the_install_hint() -> None:
    with pytest.raises(learners.MissingDependency, match=r"pip install ewspipe\[xgboost\]"):
        Stepshifter.check_params({"learner": "xgboost"})
    with pytest.raises(ImportError):  # also an ImportError, for callers that expect one
        learners.make_regressor("xgboost", {}, seed=0)


REGRESSOR_PARAMS = {
    "lightgbm": SMALL,
    "hist_gradient_boosting": {"max_iter": 5},
    "random_forest": {"n_estimators": 5},
    "ridge": {},
    "xgboost": {"n_estimators": 5},
}


@pytest.mark.parametrize("name", learners.regressor_names())
def test_every_regressor_fits_and_predicts_counts(name: str) -> None:
    if name == "xgboost" and importlib.util.find_spec("xgboost") is None:
        pytest.skip("xgboost is not installed (optional extra)")
    design, _ = lagged_relation()
    model = Stepshifter(learner=name, learner_params=REGRESSOR_PARAMS[name], steps=2)
    Stepshifter.check_params(model.get_params())
    fc = model.fit(design, train_last=200).predict(design, origin=210, steps=[1, 2])
    assert np.isfinite(fc.point).all() and (fc.point >= 0).all() and fc.point.max() > 5
