"""Hurdle model: P(y > 0) from a classifier, E[y | y > 0] from a regressor on positives."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ewspipe.errors import SpecError
from ewspipe.features.design import Design
from ewspipe.models import learners
from ewspipe.models.hurdle import Hurdle
from ewspipe.models.persistence import load_model, save_model
from ewspipe.panel.schema import Level

SMALL = {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 5}
FIRST, TRAIN_LAST, ORIGIN = 121, 210, 220


def regime_design(n_months: int = 120, n_units: int = 40, seed: int = 0) -> Design:
    """Half the units are 'at war' (feature 1, counts ~ 50 in 90 % of months), the rest at
    peace (feature 0, always 0); a second feature is noise."""
    rng = np.random.default_rng(seed)
    war = (np.arange(n_units) % 2 == 0).astype(float)
    fires = rng.random((n_months, n_units)) < 0.9
    y = np.where((war == 1) & fires, rng.poisson(50, (n_months, n_units)), 0).astype(float)
    X = np.stack([np.broadcast_to(war, y.shape), rng.normal(size=y.shape)], axis=2)
    t, u = np.nonzero(np.ones_like(y, dtype=bool))
    return Design(Level.CM, "country_id", "ged_sb", (FIRST + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u], X[t, u], ("war", "noise"))


@pytest.fixture(scope="module")
def design() -> Design:
    return regime_design()


def small_hurdle(**params) -> Hurdle:
    return Hurdle(classifier_params=SMALL, regressor_params=SMALL, steps=3, **params)


def test_probabilities_are_in_0_1_and_separate_the_regimes(design: Design) -> None:
    model = small_hurdle().fit(design, train_last=TRAIN_LAST)
    proba = model.predict_proba(design, origin=ORIGIN, steps=[1, 2, 3])
    fc = model.predict(design, origin=ORIGIN, steps=[1, 2, 3])
    assert proba.shape == (len(fc),)
    assert ((proba >= 0) & (proba <= 1)).all()
    war = design.X[design.month_rows(ORIGIN), 0] == 1
    war_rows = np.tile(war, 3)
    assert proba[war_rows].mean() == pytest.approx(0.9, abs=0.05)
    assert proba[~war_rows].max() < 0.1


def test_point_is_probability_times_positive_magnitude(design: Design) -> None:
    for log_target in (True, False):
        model = small_hurdle(log_target=log_target).fit(design, train_last=TRAIN_LAST)
        fc = model.predict(design, origin=ORIGIN, steps=[1, 2, 3])
        proba = model.predict_proba(design, origin=ORIGIN, steps=[1, 2, 3])
        X = design.X[design.month_rows(ORIGIN)]
        magnitude = np.concatenate([model.regressors_[s].predict(X) for s in (1, 2, 3)])
        if log_target:
            magnitude = np.expm1(magnitude)
        np.testing.assert_allclose(fc.point, proba * np.maximum(magnitude, 0))
        war_rows = np.tile(X[:, 0] == 1, 3)
        expected = 0.9 * 50 if not log_target else 0.9 * np.expm1(np.log1p(50))
        assert fc.point[war_rows].mean() == pytest.approx(expected, rel=0.1)  # raw counts


def test_combine_log_is_the_msle_point_and_old_params_read_as_counts(
    design: Design, tmp_path: Path
) -> None:
    counts = small_hurdle().fit(design, train_last=TRAIN_LAST)
    log = small_hurdle(combine="log").fit(design, train_last=TRAIN_LAST)
    fc_counts = counts.predict(design, origin=ORIGIN, steps=[1, 2, 3])
    fc_log = log.predict(design, origin=ORIGIN, steps=[1, 2, 3])
    proba = log.predict_proba(design, origin=ORIGIN, steps=[1, 2, 3])
    X = design.X[design.month_rows(ORIGIN)]
    log_magnitude = np.concatenate([log.regressors_[s].predict(X) for s in (1, 2, 3)])
    np.testing.assert_allclose(fc_log.point, np.expm1(proba * np.maximum(log_magnitude, 0)))
    # the same learners: only the combination differs, and it is lower wherever 0 < P < 1
    np.testing.assert_allclose(fc_counts.point, proba * np.expm1(log_magnitude))
    middle = (proba > 0.01) & (proba < 0.99)
    assert middle.any() and (fc_log.point[middle] < fc_counts.point[middle]).all()
    # a model saved before `combine` existed has no such key in its params: it reads as counts
    save_model(log, tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    found = [d for d in _dicts(meta) if d.get("combine") == "log"]
    assert found, "the saved params record combine"
    for d in found:
        del d["combine"]
    meta_path.write_text(json.dumps(meta))
    old = load_model(tmp_path / "m")
    np.testing.assert_allclose(old.predict(design, origin=ORIGIN, steps=[1, 2, 3]).point,
                               fc_counts.point)


def _dicts(value: object) -> list[dict]:
    if isinstance(value, dict):
        return [value, *(d for v in value.values() for d in _dicts(v))]
    if isinstance(value, list):
        return [d for v in value for d in _dicts(v)]
    return []


def test_samples_are_bernoulli_times_magnitude(design: Design) -> None:
    model = small_hurdle(n_samples=2000, seed=3).fit(design, train_last=TRAIN_LAST)
    fc = model.predict(design, origin=ORIGIN, steps=[1])
    proba = model.predict_proba(design, origin=ORIGIN, steps=[1])
    assert fc.samples.shape == (len(fc), 2000)
    assert (fc.samples >= 0).all() and np.isfinite(fc.samples).all()
    share_positive = (fc.samples > 0).mean(axis=1)
    np.testing.assert_allclose(share_positive, proba, atol=0.05)
    war_rows = design.X[design.month_rows(ORIGIN), 0] == 1
    positive = fc.samples[war_rows][fc.samples[war_rows] > 0]
    assert 30 < np.median(positive) < 70


def test_all_zero_training_targets_give_zero_probability() -> None:
    design = regime_design()
    peace = Design(design.level, design.unit_column, design.target, design.months,
                   design.units, np.zeros_like(design.y), design.X, design.feature_names)
    model = small_hurdle(n_samples=5).fit(peace, train_last=TRAIN_LAST)
    assert isinstance(model.classifiers_[1], learners.ConstantClassifier)
    assert isinstance(model.regressors_[1], learners.ConstantRegressor)
    fc = model.predict(peace, origin=ORIGIN, steps=[1, 2, 3])
    assert (fc.point == 0).all() and (fc.samples == 0).all()


def test_params_are_nested_per_learner(design: Design) -> None:
    model = Hurdle(classifier_params={"n_estimators": 7}, regressor_params={"n_estimators": 3},
                   steps=1).fit(design, train_last=TRAIN_LAST)
    assert model.classifiers_[1].get_params()["n_estimators"] == 7
    assert model.regressors_[1].get_params()["n_estimators"] == 3


def test_zero_downsample_touches_the_classifier_only(design: Design) -> None:
    full = small_hurdle().fit(design, train_last=TRAIN_LAST)
    thin = small_hurdle(zero_downsample=0.2).fit(design, train_last=TRAIN_LAST)
    X = design.X[design.month_rows(ORIGIN)]
    for s in (1, 2, 3):
        assert thin.n_positive_[s] == full.n_positive_[s]
        np.testing.assert_array_equal(thin.regressors_[s].predict(X),
                                      full.regressors_[s].predict(X))
    proba = thin.predict_proba(design, origin=ORIGIN, steps=[1, 2, 3])
    war_rows = np.tile(X[:, 0] == 1, 3)
    assert proba[war_rows].mean() == pytest.approx(0.9, abs=0.05)  # weights keep it unbiased


def test_predict_refuses_untrained_steps(design: Design) -> None:
    model = small_hurdle().fit(design, train_last=TRAIN_LAST)
    with pytest.raises(ValueError, match="step 4 was not trained"):
        model.predict_proba(design, origin=ORIGIN, steps=[4])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"classifier": "ridge"}, r"'classifier' .* one of .*'logistic'.*; got 'ridge'"),
        ({"regressor": "logistic"}, r"'regressor' .* one of .*'ridge'.*; got 'logistic'"),
        ({"classifier": "logistic", "classifier_params": {"C": -1.0}},
         r"classifier 'logistic' rejects its params \{'C': -1.0\}"),
        ({"regressor_params": {"max_depthh": 3}},
         r"regressor 'lightgbm' has no parameter 'max_depthh'"),
        ({"cls_n_estimators": 3}, r"unknown hyperparameter 'cls_n_estimators'"),
        ({"combine": "logs"}, r"'combine' .* one of 'counts', 'log' \(did you mean 'log'\?\)"),
    ],
)
def test_check_params_names_the_bad_key(params: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        Hurdle.check_params(params)


CLASSIFIER_PARAMS = {
    "lightgbm": SMALL,
    "hist_gradient_boosting": {"max_iter": 30},
    "random_forest": {"n_estimators": 5},
    "logistic": {},
    "xgboost": {"n_estimators": 5},
}


@pytest.mark.parametrize("name", learners.classifier_names())
def test_every_classifier_gives_probabilities(name: str, design: Design) -> None:
    if name == "xgboost" and importlib.util.find_spec("xgboost") is None:
        pytest.skip("xgboost is not installed (optional extra)")
    model = Hurdle(classifier=name, classifier_params=CLASSIFIER_PARAMS[name], regressor="ridge",
                   steps=1, zero_downsample=0.5)
    Hurdle.check_params(model.get_params())
    proba = model.fit(design, train_last=TRAIN_LAST).predict_proba(design, origin=ORIGIN,
                                                                   steps=[1])
    war = design.X[design.month_rows(ORIGIN), 0] == 1
    assert ((proba >= 0) & (proba <= 1)).all()
    assert proba[war].mean() > 0.7 and proba[~war].mean() < 0.3
