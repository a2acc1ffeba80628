"""Learners by name: the regressors and classifiers the stepshifter and hurdle are built from.

A model file names a learner (``learner = "lightgbm"``) and gives its parameters as a table
(``learner_params``); this module turns the pair into an unfitted scikit-learn style
estimator. Seeds come from the forecaster's own ``seed`` hyperparameter (one derived seed per
step), so ``learner_params`` may not set ``random_state``/``seed`` itself.

Regressors: ``lightgbm`` (LGBMRegressor with ``deterministic=True``, ``force_row_wise=True``,
``verbose=-1``, ``n_estimators=100`` and ``n_jobs=1`` unless given: the forecasters get their
parallelism by fitting steps concurrently, see their ``n_jobs``; OpenMP threads inside each
fit on top of that oversubscribe the cores and spin-wait badly on a busy machine),
``hist_gradient_boosting``, ``random_forest``, ``ridge`` (median imputation of NaN and
standardisation before Ridge, which cannot take NaN), ``xgboost`` (optional extra:
``pip install ewspipe[xgboost]``).
Classifiers: ``lightgbm``, ``hist_gradient_boosting``, ``random_forest``, ``logistic`` (same
imputation and scaling as ``ridge``), ``xgboost``.

Heavy libraries are imported when a learner is built, not when this module is imported.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ewspipe.errors import SpecError

__all__ = [
    "Classifier",
    "ConstantClassifier",
    "ConstantRegressor",
    "MissingDependency",
    "Regressor",
    "check_classifier",
    "check_regressor",
    "classifier_names",
    "fit_learner",
    "make_classifier",
    "make_regressor",
    "positive_proba",
    "regressor_names",
]

Kind = Literal["regressor", "classifier"]
_SEED_KEYS = frozenset({"random_state", "seed", "random_seed"})
_PIPELINE_LAST = "model"  # name of the estimator step in the imputing pipelines


class Regressor(Protocol):
    def fit(self, X: Any, y: Any, **kwargs: Any) -> Any: ...

    def predict(self, X: Any) -> Any: ...


class Classifier(Protocol):
    def fit(self, X: Any, y: Any, **kwargs: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


class MissingDependency(SpecError, ImportError):
    """A learner needs an optional package that is not installed (the message says how)."""


@dataclass(frozen=True)
class _Learner:
    build: Callable[[dict[str, Any], int], Any]  # (params, seed) -> unfitted estimator
    valid_keys: Callable[[], frozenset[str] | None]  # None: the library checks unknown keys


# ------------------------------------------------------------------------------ builders ---


def _lightgbm(kind: Kind) -> _Learner:
    def build(params: dict[str, Any], seed: int) -> Any:
        import lightgbm as lgb

        defaults: dict[str, Any] = {
            "n_estimators": 100, "deterministic": True, "verbose": -1, "n_jobs": 1,
        }
        if not {"force_row_wise", "force_col_wise"} & set(params):
            defaults["force_row_wise"] = True
        cls = lgb.LGBMRegressor if kind == "regressor" else lgb.LGBMClassifier
        return cls(**{**defaults, **params, "random_state": seed})

    @functools.cache
    def valid_keys() -> frozenset[str] | None:
        import lightgbm as lgb

        keys = set(inspect.signature(lgb.LGBMModel.__init__).parameters) - {"self", "kwargs"}
        try:  # LightGBM's own list of parameter names and aliases
            from lightgbm.basic import _ConfigAliases

            aliases = _ConfigAliases._get_all_param_aliases()
        except (ImportError, AttributeError):  # pragma: no cover - older/newer LightGBM
            return None
        for names in aliases.values():
            keys.update(names)
        return frozenset(keys)

    return _Learner(build, valid_keys)


def _sklearn(cls_path: str, *, impute: bool = False) -> _Learner:
    module_name, cls_name = cls_path.rsplit(".", 1)

    def estimator_cls() -> Any:
        import importlib

        return getattr(importlib.import_module(module_name), cls_name)

    def build(params: dict[str, Any], seed: int) -> Any:
        estimator = estimator_cls()(**{**params, "random_state": seed})
        if not impute:
            return estimator
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            (_PIPELINE_LAST, estimator),
        ])

    @functools.cache
    def valid_keys() -> frozenset[str] | None:
        return frozenset(estimator_cls()().get_params(deep=False))

    return _Learner(build, valid_keys)


def _import_xgboost() -> Any:
    try:
        import xgboost
    except ImportError as exc:
        raise MissingDependency(
            "learner 'xgboost' needs the optional package xgboost, which is not installed; "
            "install it with: pip install ewspipe[xgboost]"
        ) from exc
    return xgboost


def _xgboost(kind: Kind) -> _Learner:
    def build(params: dict[str, Any], seed: int) -> Any:
        xgb = _import_xgboost()
        cls = xgb.XGBRegressor if kind == "regressor" else xgb.XGBClassifier
        return cls(**{**params, "random_state": seed})

    def valid_keys() -> frozenset[str] | None:
        _import_xgboost()
        return None  # XGBoost takes booster parameters as keyword arguments

    return _Learner(build, valid_keys)


def _family(kind: Kind, linear: str, linear_path: str) -> dict[str, _Learner]:
    """Every learner of one kind: the same families in their regressor or classifier form,
    plus a linear model (imputed: it cannot take missing values)."""
    suffix = kind.capitalize()
    return {
        "lightgbm": _lightgbm(kind),
        "hist_gradient_boosting": _sklearn(f"sklearn.ensemble.HistGradientBoosting{suffix}"),
        "random_forest": _sklearn(f"sklearn.ensemble.RandomForest{suffix}"),
        linear: _sklearn(linear_path, impute=True),
        "xgboost": _xgboost(kind),
    }


_REGRESSORS = _family("regressor", "ridge", "sklearn.linear_model.Ridge")
_CLASSIFIERS = _family("classifier", "logistic", "sklearn.linear_model.LogisticRegression")


# ------------------------------------------------------------------------------ public API ---


def regressor_names() -> list[str]:
    """Names accepted by ``learner`` (stepshifter) and ``regressor`` (hurdle)."""
    return sorted(_REGRESSORS)


def classifier_names() -> list[str]:
    """Names accepted by ``classifier`` (hurdle)."""
    return sorted(_CLASSIFIERS)


def _lookup(name: Any, kind: Kind) -> _Learner:
    table = _REGRESSORS if kind == "regressor" else _CLASSIFIERS
    if isinstance(name, str) and name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), table, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise SpecError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}.{hint}")


def _check_keys(name: str, kind: Kind, learner: _Learner, params: Mapping[str, Any]) -> None:
    seeded = sorted(_SEED_KEYS & set(params))
    if seeded:
        raise SpecError(
            f"{kind} {name!r}: parameter {seeded[0]!r} may not be set in the learner's params; "
            "the model's 'seed' hyperparameter seeds every learner"
        )
    valid = learner.valid_keys()
    if valid is None:
        return
    unknown = sorted(set(params) - valid)
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"{kind} {name!r} has no parameter {unknown[0]!r}.{hint}")


def _make(name: str, params: Mapping[str, Any], seed: int, kind: Kind) -> Any:
    learner = _lookup(name, kind)
    _check_keys(name, kind, learner, params)
    return learner.build(dict(params), seed)


def make_regressor(name: str, params: Mapping[str, Any], *, seed: int) -> Regressor:
    """An unfitted regressor.

    Args:
        name: one of :func:`regressor_names`.
        params: the learner's parameters (not modified).
        seed: its random state.

    Raises:
        SpecError: unknown name (listing the valid ones), unknown or seed parameter.
        MissingDependency: the optional package of the learner is not installed.
    """
    return _make(name, params, seed, "regressor")


def make_classifier(name: str, params: Mapping[str, Any], *, seed: int) -> Classifier:
    """An unfitted classifier for P(y > 0); see :func:`make_regressor`."""
    return _make(name, params, seed, "classifier")


def fit_learner(
    estimator: Any,
    X: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> Any:
    """Fit with optional sample weights (routed to the last step of a pipeline)."""
    if sample_weight is None:
        return estimator.fit(X, y)
    from sklearn.pipeline import Pipeline

    key = f"{_PIPELINE_LAST}__sample_weight" if isinstance(estimator, Pipeline) else \
        "sample_weight"
    return estimator.fit(X, y, **{key: sample_weight})


def positive_proba(classifier: Any, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """P(y > 0) from a classifier fitted on labels {0, 1}."""
    proba = np.asarray(classifier.predict_proba(X), dtype=np.float64)
    classes = list(getattr(classifier, "classes_", [0, 1]))
    return np.clip(proba[:, classes.index(1)], 0.0, 1.0)


def _dry_run(name: str, params: Mapping[str, Any], kind: Kind) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    X[::7, 1] = np.nan
    y = np.where(X[:, 0] > 0, rng.poisson(5.0, 64), 0).astype(np.float64)
    if kind == "classifier":
        y = (y > 0).astype(np.int64)
    estimator = _make(name, params, 0, kind)
    try:
        fit_learner(estimator, X, y, np.ones(len(y)))
    except Exception as exc:  # the library's own message names the problem; keep it chained
        raise SpecError(
            f"{kind} {name!r} rejects its params {dict(params)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def check_regressor(name: str, params: Mapping[str, Any], *, dry_run: bool = True) -> None:
    """Validate a regressor name and params without the user's data.

    With ``dry_run`` the learner is also fitted on 64 synthetic rows, which catches bad values
    (e.g. ``num_leaves = 0``) in the library's own words.

    Raises:
        SpecError: unknown name or parameter, a seed parameter, or a rejected value.
        MissingDependency: the optional package of the learner is not installed.
    """
    if dry_run:
        _dry_run(name, params, "regressor")
    else:
        _make(name, params, 0, "regressor")


def check_classifier(name: str, params: Mapping[str, Any], *, dry_run: bool = True) -> None:
    """Validate a classifier name and params; see :func:`check_regressor`."""
    if dry_run:
        _dry_run(name, params, "classifier")
    else:
        _make(name, params, 0, "classifier")


# ---------------------------------------------------------------- constant fall-backs ---


class ConstantRegressor:
    """Predicts one value; used when a step has nothing to learn from (e.g. no positives)."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def fit(self, X: Any, y: Any, **kwargs: Any) -> ConstantRegressor:
        return self

    def predict(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.full(len(X), self.value)


class ConstantClassifier:
    """P(y > 0) = ``probability`` for every row; used when training labels are all one class."""

    classes_ = np.array([0, 1])

    def __init__(self, probability: float) -> None:
        self.probability = float(probability)

    def fit(self, X: Any, y: Any, **kwargs: Any) -> ConstantClassifier:
        return self

    def predict_proba(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        p = np.full(len(X), self.probability)
        return np.column_stack([1.0 - p, p])
