"""Save and load fitted forecasters, in the learners' native formats where there is one.

A saved model is a directory:

- ``model.json``: format and version, algorithm name and class, hyperparameters, the learned
  metadata (cut-off month, feature names, ...), every other file with its kind, and the
  versions of Python and the libraries that wrote it;
- ``<key>.lgbm.txt``: a LightGBM booster as text (``Booster.model_to_string``), loaded with
  ``lightgbm.Booster(model_str=...)``; keys are ``step01``.. (stepshifter) or
  ``classifier_step01``/``regressor_step01``.. (hurdle);
- ``<key>.joblib``: any other learner (scikit-learn, xgboost) pickled with joblib;
- ``arrays.npz``: learned arrays (residual tables), read with ``allow_pickle=False``.

Forecasters take part through two methods: ``_export_state() -> (meta, arrays, estimators)``
(a JSON-able dict, a dict of numpy arrays, a dict of fitted learners) and
``_import_state(meta, arrays, estimators)``, which restores the learned attributes.

Security: ``.joblib`` files are pickles, and loading a pickle runs code. :func:`load_model` must
only be called on files whose sha256 the caller has verified against the hashes recorded when
they were written (the artifact store records them for every path :func:`save_model` returns
and verifies them before loading). This module does not verify anything itself.
"""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ewspipe.errors import StoreError
from ewspipe.models import registry
from ewspipe.models.base import BaseForecaster

__all__ = ["MODEL_FILE", "LightGBMClassifierText", "LightGBMRegressorText", "load_model",
           "save_model"]

MODEL_FILE = "model.json"
_ARRAYS_FILE = "arrays.npz"
_FORMAT = "ewspipe-model"
_VERSION = 1
_LGBM_REGRESSOR, _LGBM_CLASSIFIER, _JOBLIB = "lightgbm_regressor", "lightgbm_classifier", "joblib"


class LightGBMRegressorText:
    """A LightGBM regressor restored from its text model; predicts like ``LGBMRegressor``."""

    def __init__(self, booster: Any) -> None:
        self.booster_ = booster

    def predict(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(self.booster_.predict(X), dtype=np.float64)


class LightGBMClassifierText:
    """A binary LightGBM classifier restored from text; ``predict_proba`` like LGBMClassifier."""

    classes_ = np.array([0, 1])

    def __init__(self, booster: Any) -> None:
        self.booster_ = booster

    def predict_proba(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        p = np.asarray(self.booster_.predict(X), dtype=np.float64)
        return np.column_stack([1.0 - p, p])


def _kind(estimator: Any) -> str:
    if isinstance(estimator, LightGBMRegressorText):
        return _LGBM_REGRESSOR
    if isinstance(estimator, LightGBMClassifierText):
        return _LGBM_CLASSIFIER
    if type(estimator).__module__.split(".")[0] == "lightgbm":
        import lightgbm as lgb

        if isinstance(estimator, lgb.LGBMRegressor):
            return _LGBM_REGRESSOR
        if isinstance(estimator, lgb.LGBMClassifier) and list(estimator.classes_) == [0, 1]:
            return _LGBM_CLASSIFIER
    return _JOBLIB


def _algorithm(model: BaseForecaster) -> str:
    name = getattr(model, "algorithm", None)
    if isinstance(name, str) and name in registry.names() and registry.get(name) is type(model):
        return name
    raise TypeError(
        f"{type(model).__name__} is not a registered algorithm; only forecasters registered with "
        "ewspipe.models.registry.register can be saved"
    )


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("ewspipe", "numpy", "sklearn", "lightgbm", "xgboost", "joblib"):
        try:
            found[package] = str(importlib.import_module(package).__version__)
        except (ImportError, AttributeError):
            continue
    return found


def save_model(model: BaseForecaster, directory: str | Path) -> list[Path]:
    """Write a fitted forecaster into ``directory`` (created if needed).

    Args:
        model: a fitted forecaster of a registered algorithm.
        directory: where to write; must not already hold a saved model's files.

    Returns:
        Every file written, ``model.json`` last (record their sha256 to verify before loading).

    Raises:
        NotFittedError: the model is not fitted.
        TypeError: the model's class is not a registered algorithm.
        FileExistsError: one of the files exists already (save into a fresh directory).
        ValueError: a hyperparameter or learned value cannot be written as JSON (named).
    """
    model._check_fitted()
    algorithm = _algorithm(model)
    meta, arrays, estimators = model._export_state()  # type: ignore[attr-defined]
    directory = Path(directory)
    names = [MODEL_FILE, _ARRAYS_FILE]
    kinds = {key: _kind(est) for key, est in estimators.items()}
    files = {
        key: f"{key}.lgbm.txt" if kind != _JOBLIB else f"{key}.joblib"
        for key, kind in kinds.items()
    }
    existing = [n for n in [*names, *files.values()] if (directory / n).exists()]
    if existing:
        raise FileExistsError(
            f"{directory} already holds {existing[0]!r}; save each model into a fresh directory"
        )
    doc = {
        "format": _FORMAT,
        "format_version": _VERSION,
        "algorithm": algorithm,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": model.get_params(),
        "state": meta,
        "arrays": _ARRAYS_FILE if arrays else None,
        "estimators": {key: {"file": files[key], "kind": kinds[key]} for key in estimators},
        "versions": _versions(),
    }
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"cannot save {algorithm}: its parameters or learned metadata are not plain JSON "
            f"values ({exc}); use numbers, strings, booleans, lists and tables only"
        ) from exc

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for key, est in estimators.items():
        path = directory / files[key]
        if kinds[key] == _JOBLIB:
            import joblib

            joblib.dump(est, path)
        else:
            path.write_text(est.booster_.model_to_string(), encoding="utf-8")
        written.append(path)
    if arrays:
        path = directory / _ARRAYS_FILE
        with path.open("wb") as handle:  # a handle keeps np.savez from appending ".npz"
            np.savez(handle, **arrays)
        written.append(path)
    path = directory / MODEL_FILE
    path.write_text(text + "\n", encoding="utf-8")
    written.append(path)
    return written


def _load_estimator(path: Path, kind: str) -> Any:
    if kind == _JOBLIB:
        import joblib

        return joblib.load(path)
    import lightgbm as lgb

    booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
    return LightGBMRegressorText(booster) if kind == _LGBM_REGRESSOR else \
        LightGBMClassifierText(booster)


def load_model(directory: str | Path) -> BaseForecaster:
    """Restore a forecaster written by :func:`save_model`; it predicts identically.

    Only call this on files whose sha256 was verified (``.joblib`` files are pickles).

    Raises:
        StoreError: ``model.json`` is missing, malformed or of another format version, names an
            algorithm this ewspipe does not have, or a file it lists is missing or unreadable.
    """
    directory = Path(directory)
    doc_path = directory / MODEL_FILE
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{directory} holds no saved model ({MODEL_FILE} is missing)") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {doc_path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT \
            or doc.get("format_version") != _VERSION:
        raise StoreError(
            f"{doc_path} is not an ewspipe model of format version {_VERSION} (got format "
            f"{doc.get('format') if isinstance(doc, dict) else None!r}, version "
            f"{doc.get('format_version') if isinstance(doc, dict) else None!r})"
        )
    try:
        model = registry.create(doc["algorithm"], doc["params"])
        expected = f"{type(model).__module__}.{type(model).__qualname__}"
        if doc["class"] != expected:
            raise StoreError(
                f"{doc_path}: algorithm {doc['algorithm']!r} was saved from class {doc['class']}, "
                f"but this ewspipe implements it as {expected}; refit the model"
            )
        estimators = {
            key: _load_estimator(directory / entry["file"], entry["kind"])
            for key, entry in doc["estimators"].items()
        }
        arrays: dict[str, np.ndarray] = {}
        if doc["arrays"]:
            with np.load(directory / doc["arrays"], allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        model._import_state(doc["state"], arrays, estimators)  # type: ignore[attr-defined]
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"failed while loading the model saved in {directory}: {type(exc).__name__}: {exc}"
        ) from exc
    return model
