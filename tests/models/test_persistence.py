"""Saving and loading fitted forecasters: native formats, identical predictions, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import StoreError
from ewspipe.features.design import Design
from ewspipe.models import registry
from ewspipe.models.base import NotFittedError
from ewspipe.models.persistence import MODEL_FILE, PICKLE_SUFFIXES, load_model, save_model
from ewspipe.panel.schema import Level

SMALL = {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5}
TRAIN_LAST, ORIGIN = 200, 205
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "zero": ("zero", {}),
    "locf": ("locf", {}),
    "average": ("average", {"w": 4}),
    "log_average": ("log_average", {"w": 4}),
    "conflictology": ("conflictology", {"n_samples": 20, "seed": 2}),
    "stepshifter_lightgbm": ("stepshifter", {"learner_params": SMALL, "steps": 4,
                                             "n_samples": 15, "zero_downsample": 0.5}),
    "stepshifter_ridge": ("stepshifter", {"learner": "ridge", "steps": 3, "n_samples": 5}),
    "stepshifter_forest": ("stepshifter", {"learner": "random_forest",
                                           "learner_params": {"n_estimators": 4}, "steps": 2}),
    "hurdle_lightgbm": ("hurdle", {"classifier_params": SMALL, "regressor_params": SMALL,
                                   "steps": 3, "n_samples": 15}),
    "hurdle_mixed": ("hurdle", {"classifier": "logistic", "regressor": "hist_gradient_boosting",
                                "regressor_params": {"max_iter": 5}, "steps": 2}),
}


def design(seed: int = 0) -> Design:
    """15 units x 100 months (121..220): intermittent counts; features lags 1-2 and noise."""
    rng = np.random.default_rng(seed)
    n_months, n_units = 100, 15
    y = np.where(rng.random((n_months, n_units)) < 0.3, rng.poisson(20, (n_months, n_units)), 0)
    logy = np.log1p(y.astype(float))
    lag1, lag2 = np.full_like(logy, np.nan), np.full_like(logy, np.nan)
    lag1[1:], lag2[2:] = logy[:-1], logy[:-2]
    X = np.stack([logy, lag1, lag2, rng.normal(size=logy.shape)], axis=2)
    t, u = np.nonzero(np.ones_like(y, dtype=bool))
    return Design(Level.CM, "country_id", "ged_sb", (121 + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u].astype(float), X[t, u],
                  ("lag0", "lag1", "lag2", "noise"))


def fitted(case: str) -> Any:
    name, params = CASES[case]
    return registry.create(name, params).fit(design(), train_last=TRAIN_LAST)


def steps_of(model: Any) -> list[int]:
    return list(getattr(model, "trained_steps_", range(1, 37)))


def test_every_algorithm_has_a_case() -> None:
    assert {name for name, _ in CASES.values()} == set(registry.names())


@pytest.mark.parametrize("case", CASES)
def test_round_trip_predicts_identically(case: str, tmp_path: Path) -> None:
    model = fitted(case)
    written = save_model(model, tmp_path / "m")
    assert written[-1].name == MODEL_FILE and all(p.is_file() for p in written)
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    d = design()
    for origin in (ORIGIN, 215):
        a = model.predict(d, origin=origin, steps=steps_of(model))
        b = loaded.predict(d, origin=origin, steps=steps_of(model))
        pd.testing.assert_frame_equal(a.frame, b.frame)
        np.testing.assert_array_equal(a.point, b.point)
        np.testing.assert_array_equal(a.samples, b.samples)
    if CASES[case][0] == "hurdle":
        np.testing.assert_array_equal(
            model.predict_proba(d, origin=ORIGIN, steps=steps_of(model)),
            loaded.predict_proba(d, origin=ORIGIN, steps=steps_of(model)),
        )


def test_lightgbm_boosters_are_stored_as_text(tmp_path: Path) -> None:
    written = save_model(fitted("hurdle_lightgbm"), tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"{role}_step{s:02d}.lgbm.txt" for role in ("classifier", "regressor") for s in (1, 2, 3)]
        + ["arrays.npz", MODEL_FILE]
    )
    assert (tmp_path / "regressor_step01.lgbm.txt").read_text().startswith("tree\n")
    doc = json.loads((tmp_path / MODEL_FILE).read_text())
    assert doc["algorithm"] == "hurdle"
    assert doc["class"] == "ewspipe.models.hurdle.Hurdle"
    assert doc["params"]["classifier_params"] == SMALL
    assert doc["estimators"]["classifier_step02"] == {
        "file": "classifier_step02.lgbm.txt", "kind": "lightgbm_classifier"}
    assert doc["state"]["train_last_"] == TRAIN_LAST
    assert "lightgbm" in doc["versions"] and "numpy" in doc["versions"]


def test_scikit_learn_learners_are_stored_with_skops(tmp_path: Path) -> None:
    written = save_model(fitted("stepshifter_ridge"), tmp_path)
    assert {p.suffix for p in written} == {".skops", ".npz", ".json"}
    doc = json.loads((tmp_path / MODEL_FILE).read_text())
    assert doc["format_version"] == 2
    assert doc["estimators"]["step01"] == {"file": "step01.skops", "kind": "skops"}
    assert set(doc["estimators"]) == {"step01", "step02", "step03"}


def test_nothing_saved_is_a_pickle(tmp_path: Path) -> None:
    """No case writes a pickle: every file is text, JSON, npz or a skops zip."""
    for case in CASES:
        for path in save_model(fitted(case), tmp_path / case):
            head = path.read_bytes()[:2]
            assert head[:1] != b"\x80", f"{case}: {path.name} is a pickle"
            assert path.suffix not in PICKLE_SUFFIXES


def test_a_loaded_model_can_be_saved_again(tmp_path: Path) -> None:
    save_model(fitted("stepshifter_lightgbm"), tmp_path / "a")
    again = save_model(load_model(tmp_path / "a"), tmp_path / "b")
    for path in again:
        assert path.read_bytes() == (tmp_path / "a" / path.name).read_bytes() or \
            path.name == MODEL_FILE


def test_baselines_write_only_the_description(tmp_path: Path) -> None:
    assert [p.name for p in save_model(fitted("average"), tmp_path)] == [MODEL_FILE]


def test_unfitted_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        save_model(registry.create("stepshifter"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    model = fitted("locf")
    save_model(model, tmp_path)
    with pytest.raises(FileExistsError, match="fresh directory"):
        save_model(model, tmp_path)


def test_missing_or_foreign_directories_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="holds no saved model"):
        load_model(tmp_path / "nowhere")
    save_model(fitted("stepshifter_ridge"), tmp_path / "m")
    doc_path = tmp_path / "m" / MODEL_FILE
    doc = json.loads(doc_path.read_text())
    doc_path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(StoreError, match=r"format version 1 or 2 .*version 99"):
        load_model(tmp_path / "m")
    doc_path.write_text(json.dumps(doc))
    (tmp_path / "m" / "step02.skops").unlink()
    with pytest.raises(StoreError, match=r"failed while loading .*step02\.skops"):
        load_model(tmp_path / "m")
