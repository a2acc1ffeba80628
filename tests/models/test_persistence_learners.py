"""Every learner round-trips without pickle, and no pickle or foreign type is ever rebuilt."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from tests.models.test_persistence import ORIGIN, TRAIN_LAST, design

from ewspipe.errors import IntegrityError
from ewspipe.models import learners, registry
from ewspipe.models.persistence import (
    MODEL_FILE,
    SKOPS_TRUSTED,
    PickleRefused,
    load_model,
    pickled_files,
    save_model,
)

SMALL: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 5, "num_leaves": 7, "min_child_samples": 5},
    "hist_gradient_boosting": {"max_iter": 5},
    "random_forest": {"n_estimators": 3, "max_depth": 4},
    "ridge": {}, "logistic": {},
    "xgboost": {"n_estimators": 5, "max_depth": 3},
}
LINEAR = {"ridge": "logistic"}  # the regressor paired with each classifier in the hurdle case


def _needs(name: str) -> None:
    if name == "xgboost" and importlib.util.find_spec("xgboost") is None:
        pytest.skip("xgboost is not installed (optional extra)")


def _assert_same_predictions(model: Any, loaded: Any) -> None:
    d = design()
    steps = list(getattr(model, "trained_steps_", [1, 2]))
    a = model.predict(d, origin=ORIGIN, steps=steps)
    b = loaded.predict(d, origin=ORIGIN, steps=steps)
    np.testing.assert_array_equal(a.point, b.point)
    np.testing.assert_array_equal(a.samples, b.samples)
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(model.predict_proba(d, origin=ORIGIN, steps=steps),
                                      loaded.predict_proba(d, origin=ORIGIN, steps=steps))


@pytest.mark.parametrize("name", learners.regressor_names())
def test_every_regressor_round_trips_bit_identically(name: str, tmp_path: Path) -> None:
    _needs(name)
    model = registry.create("stepshifter", {"learner": name, "learner_params": SMALL[name],
                                            "steps": 2, "n_samples": 3})
    model.fit(design(), train_last=TRAIN_LAST)
    written = save_model(model, tmp_path)
    assert not pickled_files(tmp_path)
    assert not any(p.read_bytes()[:1] == b"\x80" for p in written)  # no pickle protocol 2+
    _assert_same_predictions(model, load_model(tmp_path))


@pytest.mark.parametrize("name", learners.classifier_names())
def test_every_classifier_round_trips_bit_identically(name: str, tmp_path: Path) -> None:
    _needs(name)
    regressor = {v: k for k, v in LINEAR.items()}.get(name, name)
    model = registry.create("hurdle", {
        "classifier": name, "classifier_params": SMALL[name],
        "regressor": regressor, "regressor_params": SMALL[regressor], "steps": 2,
        "n_samples": 3})
    model.fit(design(), train_last=TRAIN_LAST)
    save_model(model, tmp_path)
    assert not pickled_files(tmp_path)
    _assert_same_predictions(model, load_model(tmp_path))


def test_constant_learners_are_numbers_in_the_description(tmp_path: Path) -> None:
    d = design()
    quiet = dataclasses.replace(d, y=np.zeros_like(d.y))
    model = registry.create("hurdle", {"steps": 2}).fit(quiet, train_last=TRAIN_LAST)
    assert [p.name for p in save_model(model, tmp_path)] == [MODEL_FILE]
    doc = json.loads((tmp_path / MODEL_FILE).read_text())
    assert doc["estimators"]["classifier_step01"] == {"kind": "constant_classifier",
                                                      "value": 0.0}
    loaded = load_model(tmp_path)
    np.testing.assert_array_equal(model.predict(quiet, origin=ORIGIN, steps=[1, 2]).point,
                                  loaded.predict(quiet, origin=ORIGIN, steps=[1, 2]).point)


# ------------------------------------------------------------------ hostile files ---


class _Planted:
    """A pickle whose loading creates a marker file (what an attacker's payload would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _ridge_model(tmp_path: Path) -> tuple[Any, Path]:
    model = registry.create("stepshifter", {"learner": "ridge", "steps": 2})
    model.fit(design(), train_last=TRAIN_LAST)
    save_model(model, tmp_path / "m")
    return model, tmp_path / "m"


def _as_legacy(directory: Path, key: str, payload: Any) -> Path:
    """Rewrite the saved model as the old format did: ``key`` pickled with joblib."""
    doc = json.loads((directory / MODEL_FILE).read_text())
    (directory / doc["estimators"][key]["file"]).unlink()
    path = directory / f"{key}.joblib"
    joblib.dump(payload, path)
    doc["format_version"] = 1
    doc["estimators"][key] = {"file": path.name, "kind": "joblib"}
    (directory / MODEL_FILE).write_text(json.dumps(doc))
    return path


def test_a_planted_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _, directory = _ridge_model(tmp_path)
    path = _as_legacy(directory, "step01", _Planted(marker))
    assert pickled_files(directory) == [path]
    with pytest.raises(PickleRefused, match=r"step01\.joblib is a pickle.*Delete the folder"):
        load_model(directory)
    assert not marker.exists()


def test_a_pickle_renamed_to_skops_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _, directory = _ridge_model(tmp_path)
    joblib.dump(_Planted(marker), directory / "step01.skops")  # overwrite in place
    with pytest.raises(IntegrityError, match=r"step01\.skops is not a skops file"):
        load_model(directory)
    assert not marker.exists()


def test_a_skops_file_naming_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    _, directory = _ridge_model(tmp_path)
    hostile = FunctionTransformer(func=os.system).fit(np.zeros((2, 1)))
    assert set(sio.get_untrusted_types(data=sio.dumps(hostile))) - SKOPS_TRUSTED
    sio.dump(hostile, directory / "step01.skops")
    with pytest.raises(IntegrityError, match=r"outside ewspipe's trusted list.*system"):
        load_model(directory)


def test_a_legacy_pickle_loads_only_when_allowed(tmp_path: Path) -> None:
    model, directory = _ridge_model(tmp_path)
    _as_legacy(directory, "step02", model.models_[2])
    with pytest.raises(PickleRefused):
        load_model(directory)
    _assert_same_predictions(model, load_model(directory, allow_pickle=True))


def test_a_learner_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    _, directory = _ridge_model(tmp_path)
    doc = json.loads((directory / MODEL_FILE).read_text())
    doc["estimators"]["step01"]["file"] = "../elsewhere.skops"
    (directory / MODEL_FILE).write_text(json.dumps(doc))
    with pytest.raises(Exception, match="not a plain file name"):
        load_model(directory)


def test_a_learner_only_pickle_could_write_is_refused(tmp_path: Path) -> None:
    model, _ = _ridge_model(tmp_path)
    model.models_[1] = object()
    with pytest.raises(TypeError, match="without pickle"):
        save_model(model, tmp_path / "again")
    assert not (tmp_path / "again").exists()
