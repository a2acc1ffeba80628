"""Hurdle model: P(y > 0) times E[y | y > 0], one classifier and one regressor per step.

For each step s (direct multi-step, pairs as in :mod:`ewspipe.models.stepshifter`):

- the **classifier** learns whether the target at t + s is positive from the features at t, on
  all pairs (zeros optionally down-sampled with weights 1 / share);
- the **regressor** learns the target at t + s on the positive pairs only (on log1p when
  ``log_target``).

Point = P(y > 0) * E[y | y > 0] in raw counts. With ``log_target`` the magnitude is
expm1 of a log-scale fit, which sits nearer the median of the positive counts than their mean.
With ``n_samples > 1`` each sample is Bernoulli(P) times a draw of the regressor's binned
residual bootstrap (see :class:`~ewspipe.models.sampling.ResidualTable`), clipped at 0; the
point stays P * E.
A step whose training labels are all one class gets a constant classifier (P = 0 or 1); a step
without positive pairs gets a regressor predicting 0.

The regressor's predictions (and sample draws) are capped on the model's scale as in the
stepshifter (``TARGET_BOUND_FACTOR`` x (1 + the largest training target) - 1 deaths, i.e.
log1p(largest) + log 2 with ``log_target``), so P * E can never extrapolate exponentially.

Hyperparameters (defaults): ``classifier = "lightgbm"``, ``classifier_params = None``,
``regressor = "lightgbm"``, ``regressor_params = None`` (nested tables, never split by
prefix), ``steps = 36``, ``log_target = True``, ``n_samples = 1``, ``sampling = "residual"``,
``residual_bins = 10``, ``zero_downsample = 1.0`` (classifier only), ``train_window = None``,
``seed = 0``, ``n_jobs = -1``; their meaning is as in the stepshifter.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from ewspipe.features.design import Design
from ewspipe.models import learners
from ewspipe.models.forecast import Forecast
from ewspipe.models.registry import register
from ewspipe.models.sampling import (
    DEFAULT_STEPS,
    ResidualTable,
    Rule,
    assemble,
    check_train_last,
    entity_rows,
    mapping,
    one_of,
    optional,
    step_rng,
    step_seed,
)
from ewspipe.models.stepshifter import (
    STEP_RULES,
    DirectMultiStep,
    TrainingPairs,
    downsample_zeros,
    target_max_from,
)
from ewspipe.threads import single_threaded_blas

__all__ = ["Hurdle"]

_CLASSIFIER_SEED, _REGRESSOR_SEED = 1, 2  # purposes of derived learner seeds


@register("hurdle")
class Hurdle(DirectMultiStep):
    """Direct multi-step hurdle model.

    Learned state: ``classifiers_`` and ``regressors_`` (dicts step -> fitted learner, steps
    1-based), ``residuals_`` (dict step -> ResidualTable of the regressor, empty when
    n_samples == 1), ``params_``, ``feature_names_``, ``train_last_``, ``trained_steps_``,
    ``n_pairs_`` and ``n_positive_`` (dicts step -> count), ``target_max_`` (dict step ->
    largest training target in counts: the base of the regressor's cap).
    """

    algorithm = "hurdle"
    _rules: ClassVar[dict[str, Rule]] = {
        "classifier": one_of(*learners.classifier_names()),
        "classifier_params": optional(mapping()),
        "regressor": one_of(*learners.regressor_names()),
        "regressor_params": optional(mapping()),
        **STEP_RULES,
    }

    def __init__(
        self,
        classifier: str = "lightgbm",
        classifier_params: Mapping[str, Any] | None = None,
        regressor: str = "lightgbm",
        regressor_params: Mapping[str, Any] | None = None,
        steps: int = 36,
        log_target: bool = True,
        n_samples: int = 1,
        sampling: str = "residual",
        residual_bins: int = 10,
        zero_downsample: float = 1.0,
        train_window: int | None = None,
        seed: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.regressor = regressor
        self.regressor_params = regressor_params
        self.steps = steps
        self.log_target = log_target
        self.n_samples = n_samples
        self.sampling = sampling
        self.residual_bins = residual_bins
        self.zero_downsample = zero_downsample
        self.train_window = train_window
        self.seed = seed
        self.n_jobs = n_jobs

    @classmethod
    def _check_learners(cls, params: dict[str, Any], *, dry_run: bool) -> None:
        learners.check_classifier(params["classifier"], params["classifier_params"] or {},
                                  dry_run=dry_run)
        learners.check_regressor(params["regressor"], params["regressor_params"] or {},
                                 dry_run=dry_run)

    def fit(self, design: Design, *, train_last: int) -> Self:
        """Fit a classifier and a positive-part regressor per step on pairs up to train_last.

        Raises:
            SpecError: invalid hyperparameters (named).
            ValueError: no rows up to ``train_last`` or a step without training pairs.
            EwspipeError: a learner failed (step and learner named, cause chained).
        """
        params = self.check_params(self.get_params(), dry_run=False)
        check_train_last(design, train_last)
        self._clear_learned()
        self.params_ = copy.deepcopy(params)  # later edits of learner_params cannot leak in
        try:
            fitted = self._map_steps(lambda step: self._fit_step(design, train_last, step))
        except BaseException:
            self._clear_learned()  # no half-fitted model: predict keeps raising NotFittedError
            raise
        self.classifiers_ = {step: part[0] for step, part in fitted.items()}
        self.regressors_ = {step: part[1] for step, part in fitted.items()}
        self.residuals_ = {step: part[2] for step, part in fitted.items() if part[2] is not None}
        self.n_pairs_ = {step: part[3] for step, part in fitted.items()}
        self.n_positive_ = {step: part[4] for step, part in fitted.items()}
        self.target_max_ = {step: part[5] for step, part in fitted.items()}
        self.trained_steps_ = tuple(fitted)
        self.feature_names_ = tuple(design.feature_names)
        self.train_last_ = int(train_last)
        return self

    def _fit_step(
        self, design: Design, train_last: int, step: int
    ) -> tuple[Any, Any, ResidualTable | None, int, int, float]:
        pairs = self._pairs(design, train_last, step)
        target = design.y[pairs.targets]
        positive = target > 0
        classifier = self._fit_classifier(design, pairs, positive, step)
        regressor, table = self._fit_regressor(design, pairs.subset(positive), step)
        return (classifier, regressor, table, len(pairs), int(positive.sum()),
                self._target_max(target))

    def _fit_classifier(
        self, design: Design, pairs: TrainingPairs, positive: npt.NDArray[np.bool_], step: int
    ) -> Any:
        params = self.params_
        keep, weight = downsample_zeros(
            ~positive, params["zero_downsample"], seed=params["seed"], step=step
        )
        if keep is not None:
            pairs, positive = pairs.subset(keep), positive[keep]
        if positive.all() or not positive.any():
            return learners.ConstantClassifier(float(positive.all()))
        name = params["classifier"]
        model = learners.make_classifier(
            name, params["classifier_params"] or {},
            seed=step_seed(params["seed"], step, _CLASSIFIER_SEED),
        )
        try:
            learners.fit_learner(model, pairs.rows_of(design.X), positive.astype(np.int64),
                                 weight)
        except Exception as exc:
            raise self._fit_error(step, "classifier", name, len(pairs), exc) from exc
        return model

    def _fit_regressor(
        self, design: Design, positives: TrainingPairs, step: int
    ) -> tuple[Any, ResidualTable | None]:
        params = self.params_
        sampled = params["n_samples"] > 1
        if len(positives) == 0:
            table = ResidualTable.fit(np.empty(0), np.empty(0)) if sampled else None
            return learners.ConstantRegressor(0.0), table
        name = params["regressor"]
        model = learners.make_regressor(
            name, params["regressor_params"] or {},
            seed=step_seed(params["seed"], step, _REGRESSOR_SEED),
        )
        X = positives.rows_of(design.X)
        y_model = self._to_model_scale(design.y[positives.targets])
        try:
            learners.fit_learner(model, X, y_model)
        except Exception as exc:
            raise self._fit_error(step, "regressor", name, len(positives), exc) from exc
        if not sampled:
            return model, None
        return model, self._residual_table(model, X, y_model, None, step)

    def _parts(
        self, design: Design, origin: int, steps: Sequence[int]
    ) -> tuple[npt.NDArray[np.int64], slice, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Steps, origin rows, P(y > 0) and the regressor's model-scale prediction per step."""
        step_arr = self._check_predict(design, steps)
        rows = entity_rows(design, origin)
        X = design.X[rows]
        proba = np.empty((len(step_arr), len(X)))
        magnitude = np.empty((len(step_arr), len(X)))
        with single_threaded_blas():  # the same sums for any thread budget, as in fit
            for i, step in enumerate(step_arr):  # over steps, each vectorised over units
                proba[i] = learners.positive_proba(self.classifiers_[int(step)], X)
                magnitude[i] = self.regressors_[int(step)].predict(X)
        return step_arr, rows, proba, magnitude

    def predict(
        self, design: Design, *, origin: int, steps: Sequence[int] = DEFAULT_STEPS
    ) -> Forecast:
        """P(y > 0) * E[y | y > 0] for the units present at ``origin``, in raw counts.

        Only the design rows of month ``origin`` are read.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: a step without a sub-model (named), an origin absent from the design, or
                a design with other features than the fitted ones.
        """
        step_arr, rows, proba, magnitude = self._parts(design, origin, steps)
        point = np.empty_like(proba)
        for i, step in enumerate(step_arr):
            point[i] = proba[i] * self._to_counts(magnitude[i], int(step))
        n_samples = self.params_["n_samples"]
        samples = None
        if n_samples > 1:
            samples = np.empty((*point.shape, n_samples))
            for i, step in enumerate(step_arr):
                rng = step_rng(self.params_["seed"], origin, int(step))
                occurs = rng.random((point.shape[1], n_samples)) < proba[i][:, None]
                draws = self.residuals_[int(step)].draw(magnitude[i], n_samples, rng)
                samples[i] = np.where(occurs, self._to_counts(draws, int(step)), 0.0)
        return assemble(design, int(origin), step_arr, design.units[rows], point, samples,
                        algorithm=self.algorithm)

    def predict_proba(
        self, design: Design, *, origin: int, steps: Sequence[int] = DEFAULT_STEPS
    ) -> npt.NDArray[np.float64]:
        """P(y > 0) per forecast row, in the row order of :meth:`predict` (for Brier, AP, AUC)."""
        _, _, proba, _ = self._parts(design, origin, steps)
        return proba.reshape(-1)

    # ---------------------------------------------------------------- persistence hooks ---

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        meta = {
            "params_": self.params_,
            "train_last_": self.train_last_,
            "feature_names_": list(self.feature_names_),
            "n_pairs_": {str(s): n for s, n in self.n_pairs_.items()},
            "n_positive_": {str(s): n for s, n in self.n_positive_.items()},
            "target_max_": {str(s): v for s, v in self.target_max_.items()},
        }
        arrays: dict[str, np.ndarray] = {}
        for s, table in self.residuals_.items():
            arrays[f"residual_edges_{s:02d}"] = table.edges
            arrays[f"residual_table_{s:02d}"] = table.table
        estimators: dict[str, Any] = {}
        for s in self.trained_steps_:
            estimators[f"classifier_step{s:02d}"] = self.classifiers_[s]
            estimators[f"regressor_step{s:02d}"] = self.regressors_[s]
        return meta, arrays, estimators

    def _import_state(
        self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], estimators: Mapping[str, Any]
    ) -> None:
        self.params_ = meta["params_"]
        self.n_pairs_ = {int(s): int(n) for s, n in meta["n_pairs_"].items()}
        self.n_positive_ = {int(s): int(n) for s, n in meta["n_positive_"].items()}
        self.target_max_ = target_max_from(meta)
        steps = sorted(self.n_pairs_)
        self.classifiers_ = {s: estimators[f"classifier_step{s:02d}"] for s in steps}
        self.regressors_ = {s: estimators[f"regressor_step{s:02d}"] for s in steps}
        self.residuals_ = {
            s: ResidualTable(arrays[f"residual_edges_{s:02d}"], arrays[f"residual_table_{s:02d}"])
            for s in steps
            if f"residual_table_{s:02d}" in arrays
        }
        self.trained_steps_ = tuple(steps)
        self.feature_names_ = tuple(meta["feature_names_"])
        self.train_last_ = int(meta["train_last_"])
