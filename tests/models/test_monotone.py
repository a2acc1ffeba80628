"""The stepshifter's ``monotone`` prior: named features constrain LightGBM's forecast to rise
(1) or fall (-1) with them, whatever the training years say about the largest values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.models.test_stepshifter import grid_design

from ewspipe.errors import SpecError
from ewspipe.models.persistence import load_model, save_model
from ewspipe.models.stepshifter import Stepshifter

TRAIN_LAST = 121 + 99


def wars_that_end():
    """y one month ahead rises with x up to 30, and is 0 above it (the few largest wars of
    the training years all ended): an unconstrained tree learns the drop."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 40, (120, 40))
    y = np.zeros_like(x)
    y[1:] = np.where(x[:-1] < 30, np.round(np.expm1(0.15 * x[:-1])), 0.0)
    return grid_design(y, np.stack([x, rng.normal(size=x.shape)], axis=2))


def _fit(monotone=None, **params):
    model = Stepshifter(learner="lightgbm", steps=1, n_jobs=1, monotone=monotone,
                        learner_params={"n_estimators": 60, "min_child_samples": 5}, **params)
    return model.fit(wars_that_end(), train_last=TRAIN_LAST)


def _curve(model: Stepshifter) -> np.ndarray:
    """The step-1 forecast along x = 0..40 (the noise feature held at 0)."""
    grid = np.column_stack([np.linspace(0, 40, 81), np.zeros(81)])
    return np.asarray(model.models_[1].predict(grid))


def test_increasing_feature_never_lowers_the_forecast(tmp_path: Path) -> None:
    free = _curve(_fit())
    assert free[-1] < free.max() - 1.0  # without the prior the largest values forecast peace
    model = _fit({"x0": 1})
    constrained = _curve(model)
    assert (np.diff(constrained) >= -1e-9).all()
    assert constrained[-1] >= constrained.max() - 1e-9
    save_model(model, tmp_path / "m")  # the prior travels with the saved model
    assert load_model(tmp_path / "m").params_["monotone"] == {"x0": 1}


def test_keys_are_read_as_feature_expressions() -> None:
    design = wars_that_end()
    design = type(design)(design.level, design.unit_column, design.target, design.months,
                          design.units, design.y, design.X, ("decay(ged_sb, 12)", "x1"))
    model = Stepshifter(learner="lightgbm", steps=1, n_jobs=1,
                        monotone={"decay(ged_sb, 12, 1)": 1},
                        learner_params={"n_estimators": 5})
    model.fit(design, train_last=TRAIN_LAST)  # the default threshold written out: same feature


@pytest.mark.parametrize(("monotone", "params", "message"), [
    ({"x9": 1}, {}, "'x9', which is not among the model's features"),
    ({"x0": 2}, {}, "1 (increasing), -1 (decreasing) or 0"),
    ({"x0": 1}, {"learner": "ridge", "learner_params": None}, "needs learner 'lightgbm'"),
    ({"x0": 1}, {"learner_params": {"monotone_constraints": [1, 0]}}, "both set monotone"),
])
def test_bad_priors_are_named(monotone, params, message) -> None:
    kwargs = {"learner": "lightgbm", "learner_params": {"n_estimators": 5}, **params}
    model = Stepshifter(steps=1, n_jobs=1, monotone=monotone, **kwargs)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.fit(wars_that_end(), train_last=TRAIN_LAST)
