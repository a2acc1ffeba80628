"""Learners cannot extrapolate exponentially: every prediction of a direct multi-step model is
capped at TARGET_BOUND_FACTOR x (1 + the largest training target) - 1 deaths (log1p(largest)
+ log 2 on the log scale), the amber_ridge failure (21.9 million deaths predicted for one
country-month) in miniature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.models.test_stepshifter import SMALL, grid_design

from ewspipe.models.hurdle import Hurdle
from ewspipe.models.persistence import load_model, save_model
from ewspipe.models.stepshifter import TARGET_BOUND_FACTOR, Stepshifter

TRAIN_LAST = 121 + 79  # months 121..200 train; the feature explodes after that


def growing_feature():
    """A raw-count feature in [0, 10] while training, with log1p(y) = 0.8 x (so y <= e^8):
    a ridge on log1p(y) learns the slope exactly. From month 201 on the feature of unit 1
    grows to 100: expm1(0.8 x 100) ~ 5e34 without a cap."""
    rng = np.random.default_rng(1)
    n_months, n_units = 100, 12
    x = rng.uniform(0, 10, (n_months, n_units))
    x[TRAIN_LAST - 121 + 1:, 0] = np.linspace(20, 100, n_months - (TRAIN_LAST - 121 + 1))
    y = np.zeros_like(x)
    y[1:] = np.round(np.expm1(0.8 * x[:-1]))  # step 1: y at t + 1 from x at t
    y[TRAIN_LAST - 121 + 1:] = 0.0  # actuals after training do not matter
    return grid_design(y, x[:, :, None]), y


def _bound(largest: float) -> float:
    return TARGET_BOUND_FACTOR * (largest + 1.0) - 1.0


@pytest.mark.parametrize("log_target", [True, False])
def test_ridge_with_a_growing_feature_cannot_exceed_the_bound(log_target: bool,
                                                               tmp_path: Path) -> None:
    design, y = growing_feature()
    model = Stepshifter(learner="ridge", learner_params={"alpha": 1e-6}, steps=3,
                        log_target=log_target, n_samples=50, n_jobs=1)
    model.fit(design, train_last=TRAIN_LAST)
    largest = float(y[: TRAIN_LAST - 121 + 1].max())
    assert max(model.target_max_.values()) <= largest
    fc = model.predict(design, origin=TRAIN_LAST + 20, steps=[1, 2, 3])
    cap = _bound(largest)
    assert np.isfinite(fc.point).all() and np.isfinite(fc.samples).all()
    assert fc.point.max() <= cap * (1 + 1e-9) and fc.samples.max() <= cap * (1 + 1e-9)
    assert fc.point.max() >= 0.5 * cap  # the exploding unit sits at the cap, not at 0
    # in the training range the cap changes nothing: the fit is untouched
    inside = model.predict(design, origin=150, steps=[1])
    expected = np.expm1(0.8 * design.X[design.month_rows(150), 0])
    if log_target:
        np.testing.assert_allclose(inside.point, expected, rtol=0.05, atol=1.0)
    # the learned cap travels with the saved model
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(design, origin=TRAIN_LAST + 20,
                                                steps=[1, 2, 3]).point, fc.point)


def test_hurdle_regressor_is_capped_too() -> None:
    design, y = growing_feature()
    model = Hurdle(classifier="logistic", regressor="ridge",
                   regressor_params={"alpha": 1e-6}, steps=2, n_jobs=1)
    model.fit(design, train_last=TRAIN_LAST)
    fc = model.predict(design, origin=TRAIN_LAST + 20, steps=[1, 2])
    assert np.isfinite(fc.point).all()
    assert fc.point.max() <= _bound(float(y[: TRAIN_LAST - 121 + 1].max())) * (1 + 1e-9)


def test_tree_learners_are_unaffected() -> None:
    """A tree predicts means of training targets: below the cap, so lifting the cap changes
    no prediction."""
    design, _ = growing_feature()
    model = Stepshifter(learner_params=SMALL, steps=2, n_jobs=1).fit(design,
                                                                     train_last=TRAIN_LAST)
    capped = model.predict(design, origin=TRAIN_LAST + 20, steps=[1, 2]).point
    model.target_max_ = {}  # no cap (as a model saved before the cap existed)
    free = model.predict(design, origin=TRAIN_LAST + 20, steps=[1, 2]).point
    np.testing.assert_array_equal(capped, free)
