"""Save and load fitted forecasters in formats that cannot run code when read (no pickle).

A saved model is a directory:

- ``model.json``: format and version, algorithm name and class, hyperparameters, the learned
  metadata (cut-off month, feature names, ...), every learner with its kind (and its file),
  and the versions of Python and the libraries that wrote it;
- ``<key>.lgbm.txt``: a LightGBM booster as text (``Booster.model_to_string``), loaded with
  ``lightgbm.Booster(model_str=...)``; keys are ``step01``.. (stepshifter) or
  ``classifier_step01``/``regressor_step01``.. (hurdle);
- ``<key>.xgb.json``: an XGBoost model in its own JSON format (``save_model``/``load_model``);
- ``<key>.skops``: a scikit-learn learner (random forest, histogram gradient boosting, the
  imputing ridge/logistic pipelines) written with ``skops.io``. skops rebuilds only types it
  trusts; the few extra types our learners need are :data:`SKOPS_TRUSTED`, and a file naming
  any other type is refused before anything is built;
- constant learners (a step with nothing to learn) are a number in ``model.json``;
- ``arrays.npz``: learned arrays (residual tables), read with ``allow_pickle=False``.

Forecasters take part through two methods: ``_export_state() -> (meta, arrays, estimators)``
(a JSON-able dict, a dict of numpy arrays, a dict of fitted learners) and
``_import_state(meta, arrays, estimators)``, which restores the learned attributes.

Security: nothing here unpickles by default. Older ewspipe versions wrote ``<key>.joblib``
pickles; a model listing one (or any pickle file) is refused with :class:`PickleRefused`
unless the caller passes ``allow_pickle=True`` (the ``[models] allow_pickle`` setting, off by
default), because loading a pickle runs whatever code it names and a sha256 stored beside the
file proves nothing against someone who can write both. The artifact store verifies every
file's sha256 before calling :func:`load_model`; that catches corruption, not an attacker.
"""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ewspipe.errors import IntegrityError, StoreError
from ewspipe.models import registry
from ewspipe.models.base import BaseForecaster
from ewspipe.models.learners import ConstantClassifier, ConstantRegressor

__all__ = ["MODEL_FILE", "PICKLE_SUFFIXES", "SKOPS_TRUSTED", "LightGBMClassifierText",
           "LightGBMRegressorText", "PickleRefused", "load_model", "pickled_files", "save_model"]

MODEL_FILE = "model.json"
_ARRAYS_FILE = "arrays.npz"
_FORMAT = "ewspipe-model"
_VERSION = 2  # 2: no pickles (skops, XGBoost JSON, constants in model.json)
_READABLE = (1, 2)  # version 1 differs only in pickling what is not LightGBM
_LGBM_REGRESSOR, _LGBM_CLASSIFIER = "lightgbm_regressor", "lightgbm_classifier"
_XGB_REGRESSOR, _XGB_CLASSIFIER = "xgboost_regressor", "xgboost_classifier"
_SKOPS, _JOBLIB = "skops", "joblib"
_CONST_REGRESSOR, _CONST_CLASSIFIER = "constant_regressor", "constant_classifier"
_SUFFIX = {_LGBM_REGRESSOR: ".lgbm.txt", _LGBM_CLASSIFIER: ".lgbm.txt",
           _XGB_REGRESSOR: ".xgb.json", _XGB_CLASSIFIER: ".xgb.json", _SKOPS: ".skops"}
#: File endings of pickles (what older versions wrote, and what is refused by default).
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: The types outside skops' own trusted set that our scikit-learn learners consist of (and
#: nothing more): a file naming any other type is refused, never rebuilt.
SKOPS_TRUSTED = frozenset({
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})


class PickleRefused(IntegrityError):
    """A saved model holds a pickle and pickles are not allowed (``[models] allow_pickle``)."""


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
    """How a fitted learner is written; TypeError for one that only pickle could write."""
    if isinstance(estimator, ConstantRegressor):
        return _CONST_REGRESSOR
    if isinstance(estimator, ConstantClassifier):
        return _CONST_CLASSIFIER
    if isinstance(estimator, LightGBMRegressorText):
        return _LGBM_REGRESSOR
    if isinstance(estimator, LightGBMClassifierText):
        return _LGBM_CLASSIFIER
    package = type(estimator).__module__.split(".")[0]
    if package == "lightgbm":
        import lightgbm as lgb

        if isinstance(estimator, lgb.LGBMRegressor):
            return _LGBM_REGRESSOR
        if isinstance(estimator, lgb.LGBMClassifier) and list(estimator.classes_) == [0, 1]:
            return _LGBM_CLASSIFIER
    elif package == "xgboost":
        import xgboost as xgb

        if isinstance(estimator, xgb.XGBClassifier):
            return _XGB_CLASSIFIER
        if isinstance(estimator, xgb.XGBRegressor):
            return _XGB_REGRESSOR
    elif package == "sklearn":
        return _SKOPS
    raise TypeError(
        f"cannot save a learner of type {type(estimator).__module__}.{type(estimator).__name__} "
        "without pickle; use one of the learners in ewspipe.models.learners"
    )


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
    for package in ("ewspipe", "numpy", "sklearn", "lightgbm", "xgboost", "skops"):
        try:
            found[package] = str(importlib.import_module(package).__version__)
        except (ImportError, AttributeError):
            continue
    return found


def _skops_bytes(estimator: Any, key: str) -> bytes:
    """The learner as skops bytes, refused if reading it back would need another type."""
    import skops.io as sio

    data: bytes = sio.dumps(estimator)
    extra = sorted(set(sio.get_untrusted_types(data=data)) - SKOPS_TRUSTED)
    if extra:
        raise TypeError(
            f"cannot save learner {key}: it holds types outside the trusted list "
            f"({', '.join(extra)}); add them to SKOPS_TRUSTED only if they cannot run code"
        )
    return data


def save_model(model: BaseForecaster, directory: str | Path) -> list[Path]:
    """Write a fitted forecaster into ``directory`` (created if needed); no pickle is written.

    Args:
        model: a fitted forecaster of a registered algorithm.
        directory: where to write; must not already hold a saved model's files.

    Returns:
        Every file written, ``model.json`` last (record their sha256 to verify before loading).

    Raises:
        NotFittedError: the model is not fitted.
        TypeError: the model's class is not a registered algorithm, or one of its learners
            cannot be written without pickle.
        FileExistsError: one of the files exists already (save into a fresh directory).
        ValueError: a hyperparameter or learned value cannot be written as JSON (named).
    """
    model._check_fitted()
    algorithm = _algorithm(model)
    meta, arrays, estimators = model._export_state()  # type: ignore[attr-defined]
    directory = Path(directory)
    kinds = {key: _kind(est) for key, est in estimators.items()}
    entries: dict[str, dict[str, Any]] = {}
    for key, kind in kinds.items():
        est = estimators[key]
        if kind == _CONST_REGRESSOR:
            entries[key] = {"kind": kind, "value": est.value}
        elif kind == _CONST_CLASSIFIER:
            entries[key] = {"kind": kind, "value": est.probability}
        else:
            entries[key] = {"file": f"{key}{_SUFFIX[kind]}", "kind": kind}
    names = [MODEL_FILE, _ARRAYS_FILE, *(e["file"] for e in entries.values() if "file" in e)]
    existing = [n for n in names if (directory / n).exists()]
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
        "estimators": entries,
        "versions": _versions(),
    }
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"cannot save {algorithm}: its parameters or learned metadata are not plain JSON "
            f"values ({exc}); use numbers, strings, booleans, lists and tables only"
        ) from exc
    skops_data = {key: _skops_bytes(estimators[key], key)
                  for key, kind in kinds.items() if kind == _SKOPS}

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for key, entry in entries.items():
        if "file" not in entry:
            continue
        path, kind, est = directory / entry["file"], kinds[key], estimators[key]
        if kind == _SKOPS:
            path.write_bytes(skops_data[key])
        elif kind in (_XGB_REGRESSOR, _XGB_CLASSIFIER):
            est.save_model(path)
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


def _refuse_pickle(path: Path) -> PickleRefused:
    return PickleRefused(
        f"{path} is a pickle (written by an ewspipe older than model format {_VERSION}, or "
        "planted); loading a pickle runs any code it contains, so ewspipe does not load it. "
        f"Delete the folder {path.parent} and run again to retrain the model (or, only if "
        "you trust the file, set allow_pickle = true under [models] in ewspipe.toml)"
    )


def pickled_files(directory: str | Path) -> list[Path]:
    """The pickles a saved model would load (older formats): empty for a pickle-free model.

    Reads only ``model.json`` (JSON, safe); an unreadable one lists nothing here and is
    reported by :func:`load_model`."""
    directory = Path(directory)
    try:
        doc = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
        entries = list(doc["estimators"].values())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("file")
        if entry.get("kind") == _JOBLIB or (
                isinstance(name, str) and name.lower().endswith(PICKLE_SUFFIXES)):
            found.append(directory / str(name))
    return found


def _load_skops(path: Path) -> Any:
    import skops.io as sio

    data = path.read_bytes()
    try:
        named = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # not a skops file at all (e.g. a pickle renamed)
        raise IntegrityError(
            f"{path} is not a skops file ({type(exc).__name__}: {exc}); refusing to load it. "
            f"Delete the folder {path.parent} and run again to retrain the model"
        ) from exc
    extra = sorted(named - SKOPS_TRUSTED)
    if extra:
        raise IntegrityError(
            f"{path} names types outside ewspipe's trusted list ({', '.join(extra)}); "
            f"refusing to load it. Delete the folder {path.parent} and run again to retrain"
        )
    return sio.loads(data, trusted=sorted(named))


def _load_estimator(directory: Path, entry: dict[str, Any], allow_pickle: bool) -> Any:
    kind = entry["kind"]
    if kind == _CONST_REGRESSOR:
        return ConstantRegressor(float(entry["value"]))
    if kind == _CONST_CLASSIFIER:
        return ConstantClassifier(float(entry["value"]))
    name = entry["file"]
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise IntegrityError(f"{directory / MODEL_FILE}: learner file {name!r} is not a plain "
                             f"file name in the model's folder; delete {directory} and run "
                             "again to retrain the model")
    path = directory / name
    if kind == _JOBLIB or path.name.lower().endswith(PICKLE_SUFFIXES):
        if not allow_pickle:
            raise _refuse_pickle(path)
        import joblib

        return joblib.load(path)  # allowed by the user's setting, sha256 checked by the caller
    if kind == _SKOPS:
        return _load_skops(path)
    if kind in (_XGB_REGRESSOR, _XGB_CLASSIFIER):
        import xgboost as xgb

        model = xgb.XGBRegressor() if kind == _XGB_REGRESSOR else xgb.XGBClassifier()
        model.load_model(path)
        return model
    if kind in (_LGBM_REGRESSOR, _LGBM_CLASSIFIER):
        import lightgbm as lgb

        booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
        return LightGBMRegressorText(booster) if kind == _LGBM_REGRESSOR else \
            LightGBMClassifierText(booster)
    raise IntegrityError(f"{directory / MODEL_FILE}: learner {name!r} has an unknown kind "
                         f"{kind!r}; delete {directory} and run again to retrain the model")


def load_model(directory: str | Path, *, allow_pickle: bool = False) -> BaseForecaster:
    """Restore a forecaster written by :func:`save_model`; it predicts identically.

    Args:
        directory: the saved model's folder (its files' sha256 verified by the caller).
        allow_pickle: load a pickled learner of an older format; only for files you trust.

    Raises:
        PickleRefused: the model holds a pickle and ``allow_pickle`` is false.
        IntegrityError: a file it lists is missing, damaged or not what its kind says (a
            skops file naming a type outside the trusted list included).
        StoreError: ``model.json`` is missing, malformed or of an unknown format version, or
            names an algorithm this ewspipe does not have.
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
            or doc.get("format_version") not in _READABLE:
        raise StoreError(
            f"{doc_path} is not an ewspipe model of format version "
            f"{' or '.join(map(str, _READABLE))} (got format "
            f"{doc.get('format') if isinstance(doc, dict) else None!r}, version "
            f"{doc.get('format_version') if isinstance(doc, dict) else None!r})"
        )
    if not allow_pickle:
        pickles = pickled_files(directory)
        if pickles:  # before anything is read: a model with a pickle is refused as a whole
            raise _refuse_pickle(pickles[0])
    try:
        model = registry.create(doc["algorithm"], doc["params"])
        expected = f"{type(model).__module__}.{type(model).__qualname__}"
        if doc["class"] != expected:
            raise StoreError(
                f"{doc_path}: algorithm {doc['algorithm']!r} was saved from class {doc['class']}, "
                f"but this ewspipe implements it as {expected}; refit the model"
            )
        estimators = {
            key: _load_estimator(directory, entry, allow_pickle)
            for key, entry in doc["estimators"].items()
        }
        arrays: dict[str, np.ndarray] = {}
        if doc["arrays"]:
            with np.load(directory / doc["arrays"], allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        model._import_state(doc["state"], arrays, estimators)  # type: ignore[attr-defined]
    except StoreError:
        raise
    except Exception as exc:  # a damaged or tampered file: refuse it, naming the way out
        raise IntegrityError(
            f"failed while loading the model saved in {directory}: {type(exc).__name__}: "
            f"{exc}. Delete that folder and run again to retrain the model"
        ) from exc
    return model
