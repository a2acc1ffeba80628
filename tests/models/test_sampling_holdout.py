"""Out-of-sample residual sampling of the stepshifter (``sampling = "holdout"``) and ``spread``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ewspipe.errors import SpecError
from ewspipe.features.design import Design
from ewspipe.models.persistence import MODEL_FILE, load_model, save_model
from ewspipe.models.sampling import ResidualTable
from ewspipe.models.stepshifter import Stepshifter
from ewspipe.panel.schema import Level

TRAIN_LAST, ORIGIN = 200, 205
# A learner that memorises its training pairs: in-sample residuals are near zero.
OVERFIT = {"n_estimators": 200, "num_leaves": 63, "min_child_samples": 1, "learning_rate": 0.3}


def noisy_design(seed: int = 0) -> Design:
    """20 units x 100 months (121..220): counts unrelated to the 5 noise features beyond a
    per-unit level, so any fit beyond the level is over-fitting."""
    rng = np.random.default_rng(seed)
    n_months, n_units = 100, 20
    level = rng.gamma(1.0, 20.0, n_units)
    y = rng.poisson(np.broadcast_to(level, (n_months, n_units))).astype(float)
    X = np.concatenate([np.broadcast_to(np.log1p(level), (n_months, n_units))[:, :, None],
                        rng.normal(size=(n_months, n_units, 5))], axis=2)
    t, u = np.nonzero(np.ones_like(y, dtype=bool))
    return Design(Level.CM, "country_id", "ged_sb", (121 + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u], X[t, u],
                  tuple(f"x{j}" for j in range(X.shape[2])))


def model(**params: object) -> Stepshifter:
    base: dict[str, object] = {"learner_params": OVERFIT, "steps": 2, "n_samples": 50,
                               "seed": 3, "n_jobs": 1}
    return Stepshifter(**{**base, **params})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def design() -> Design:
    return noisy_design()


@pytest.fixture(scope="module")
def holdout(design: Design) -> Stepshifter:
    return model(sampling="holdout", holdout_months=24, spread=0.8).fit(design,
                                                                       train_last=TRAIN_LAST)


@pytest.fixture(scope="module")
def residual(design: Design) -> Stepshifter:
    return model(sampling="residual").fit(design, train_last=TRAIN_LAST)


def table_width(table: ResidualTable) -> float:
    """Mean 5 %-95 % width of the residual distribution over the bins."""
    return float(np.mean(np.quantile(table.table, 0.95, axis=1)
                         - np.quantile(table.table, 0.05, axis=1)))


def test_holdout_keeps_the_point_of_residual_sampling(design, holdout, residual) -> None:
    a = holdout.predict(design, origin=ORIGIN, steps=[1, 2])
    b = residual.predict(design, origin=ORIGIN, steps=[1, 2])
    np.testing.assert_array_equal(a.point, b.point)
    assert not np.array_equal(a.samples, b.samples)


def test_holdout_residuals_are_wider_than_in_sample_ones_of_an_overfit_learner(
    holdout, residual
) -> None:
    for step in (1, 2):
        inside = table_width(residual.residuals_[step])
        outside = table_width(holdout.residuals_[step])
        assert outside > 3 * inside, (step, inside, outside)


def test_holdout_sampling_is_deterministic(design, holdout) -> None:
    again = model(sampling="holdout", holdout_months=24, spread=0.8).fit(design,
                                                                       train_last=TRAIN_LAST)
    a = holdout.predict(design, origin=ORIGIN, steps=[1, 2])
    b = again.predict(design, origin=ORIGIN, steps=[1, 2])
    np.testing.assert_array_equal(a.samples, b.samples)
    for step in (1, 2):
        np.testing.assert_array_equal(holdout.residuals_[step].table,
                                      again.residuals_[step].table)


def test_holdout_tables_are_saved_and_reloaded(design, holdout, tmp_path: Path) -> None:
    save_model(holdout, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.get_params() == holdout.get_params()
    for origin in (ORIGIN, 215):
        a = holdout.predict(design, origin=origin, steps=[1, 2])
        b = loaded.predict(design, origin=origin, steps=[1, 2])
        np.testing.assert_array_equal(a.point, b.point)
        np.testing.assert_array_equal(a.samples, b.samples)


def test_spread_scales_positive_draws_and_keeps_the_zeros() -> None:
    table = ResidualTable.fit(np.zeros(4), np.array([-2.0, -0.5, 1.0, 3.0]), bins=1)
    predicted = np.array([1.0])
    plain = table.draw(predicted, 200, np.random.default_rng(5))
    narrow = table.draw(predicted, 200, np.random.default_rng(5), spread=0.5)
    positive = plain > 0
    np.testing.assert_allclose(narrow[positive], 1.0 + 0.5 * (plain[positive] - 1.0))
    np.testing.assert_array_equal(narrow[~positive], plain[~positive])  # zero counts stay zero
    assert positive.any() and (~positive).any()


def test_spread_in_the_model_changes_samples_not_the_point(design, residual) -> None:
    wide = model(sampling="residual", spread=2.0).fit(design, train_last=TRAIN_LAST)
    a = wide.predict(design, origin=ORIGIN, steps=[1, 2])
    b = residual.predict(design, origin=ORIGIN, steps=[1, 2])
    np.testing.assert_array_equal(a.point, b.point)
    width = lambda s: np.quantile(s, 0.95, axis=1) - np.quantile(s, 0.05, axis=1)  # noqa: E731
    assert np.mean(width(a.samples)) > 1.5 * np.mean(width(b.samples))


def test_a_holdout_longer_than_the_training_pairs_is_named(design) -> None:
    with pytest.raises(ValueError, match=r"holdout_months = 90.*lower 'holdout_months'"):
        model(sampling="holdout", holdout_months=90, steps=1).fit(design, train_last=TRAIN_LAST)


@pytest.mark.parametrize(("params", "match"), [
    ({"sampling": "holdot"}, r"'sampling'.*did you mean 'holdout'"),
    ({"holdout_months": 0}, r"'holdout_months'.*integer >= 1"),
    ({"spread": 0.0}, r"'spread'.*\(0.0, 10.0\]"),
])
def test_bad_sampling_params_are_named(params: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        Stepshifter.check_params(params, dry_run=False)


def test_an_artifact_saved_before_holdout_and_spread_loads_and_predicts_alike(
    design, residual, tmp_path: Path
) -> None:
    """A model.json of an older ewspipe has neither key in its params: defaults apply."""
    save_model(residual, tmp_path / "m")
    doc_path = tmp_path / "m" / MODEL_FILE
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    for params in (doc["params"], doc["state"]["params_"]):
        del params["holdout_months"], params["spread"]
    doc_path.write_text(json.dumps(doc), encoding="utf-8")
    loaded = load_model(tmp_path / "m")
    a = residual.predict(design, origin=ORIGIN, steps=[1, 2])
    b = loaded.predict(design, origin=ORIGIN, steps=[1, 2])
    np.testing.assert_array_equal(a.samples, b.samples)
