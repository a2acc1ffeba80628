"""Hurdle model: P(y > 0) times E[y | y > 0], one classifier and one regressor per step.

For each step s (direct multi-step, pairs as in :mod:`ewspipe.models.stepshifter`):

- the **classifier** learns whether the target at t + s is positive from the features at t, on
  all pairs (zeros optionally down-sampled with weights 1 / share);
- the **regressor** learns the target at t + s on the positive pairs only (on log1p when
  ``log_target``).

The point depends on ``combine``:

- ``"counts"`` (default, the original model): P(y > 0) * M in raw counts, M the regressor's
  magnitude in counts (expm1 of a log-scale fit with ``log_target``, which sits nearer the
  median of the positive counts than their mean);
- ``"log"``: expm1(P(y > 0) * log1p(M)). With ``log_target``, log1p(M) is the regressor's
  estimate of E[log1p y | y > 0], so P * log1p(M) estimates E[log1p y] (zeros add 0), the
  point that minimises the expected squared log error, i.e. MSLE, the metric runs are scored
  on. "counts" scales the magnitude by P in counts, which in log terms is a much larger
  shrinkage toward 0 than P implies for small P and no shrinkage at all for P near 1.
  Without ``log_target`` log1p(M) over-states E[log1p y | y > 0] (Jensen), so "log" is meant
  for ``log_target = true``.

With ``n_samples > 1`` each sample is Bernoulli(P) times a draw of the regressor's binned
residual bootstrap (see :class:`~ewspipe.models.sampling.ResidualTable`), clipped at 0, for
either ``combine``; the point is as above.
A step whose training labels are all one class gets a constant classifier (P = 0 or 1); a step
without positive pairs gets a regressor predicting 0.

The regressor's predictions (and sample draws) are capped on the model's scale as in the
stepshifter (``TARGET_BOUND_FACTOR`` x (1 + the largest training target) - 1 deaths, i.e.
log1p(largest) + log 2 with ``log_target``), so P * E can never extrapolate exponentially.

Hyperparameters (defaults): ``classifier = "lightgbm"``, ``classifier_params = None``,
``regressor = "lightgbm"``, ``regressor_params = None`` (nested tables, never split by
prefix), ``steps = 36``, ``log_target = True``, ``n_samples = 1``, ``sampling = "residual"``,
``residual_bins = 10``, ``zero_downsample = 1.0`` (classifier only), ``train_window = None``,
``seed = 0``, ``n_jobs = -1``; their meaning is as in the stepshifter. ``combine = "counts"``
(or ``"log"``) chooses the point as above; a model saved before ``combine`` existed reads as
"counts", which is what it computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ewspipe.features.design import Design
from ewspipe.models import learners
from ewspipe.models.registry import register
from ewspipe.models.sampling import (
    DEFAULT_STEPS,
    Draw,
    ResidualTable,
    Rule,
    entity_rows,
    one_of,
    step_seed,
)
from ewspipe.models.stepshifter import (
    STEP_RULES,
    DirectMultiStep,
    TrainingPairs,
    downsample_zeros,
    learner_rules,
)
from ewspipe.threads import single_threaded_blas

__all__ = ["COMBINE_OPTIONS", "Hurdle"]

#: How the point joins P(y > 0) and the positive magnitude M: "counts" = P * M,
#: "log" = expm1(P * log1p(M)) (the MSLE-consistent point; see the module docstring).
COMBINE_OPTIONS = ("counts", "log")

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
        **learner_rules("classifier", learners.classifier_names()),
        **learner_rules("regressor", learners.regressor_names()),
        **STEP_RULES,
        "combine": one_of(*COMBINE_OPTIONS),
    }

    def __init__(
        self,
        classifier: str = "lightgbm",
        classifier_params: Mapping[str, Any] | None = None,
        regressor: str = "lightgbm",
        regressor_params: Mapping[str, Any] | None = None,
        combine: str = "counts",
        **step_params: Any,
    ) -> None:
        self.classifier = classifier
        self.classifier_params = classifier_params
        self.regressor = regressor
        self.regressor_params = regressor_params
        self.combine = combine
        super().__init__(**step_params)

    @classmethod
    def _check_learners(cls, params: dict[str, Any], *, dry_run: bool) -> None:
        learners.check_classifier(params["classifier"], params["classifier_params"] or {},
                                  dry_run=dry_run)
        learners.check_regressor(params["regressor"], params["regressor_params"] or {},
                                 dry_run=dry_run)

    def _keep_fitted(
        self, fitted: dict[int, tuple[Any, Any, ResidualTable | None, int, int, float]]
    ) -> None:
        """A classifier and a positive-part regressor per step (``fit``)."""
        self.classifiers_ = {step: part[0] for step, part in fitted.items()}
        self.regressors_ = {step: part[1] for step, part in fitted.items()}
        self.residuals_ = {step: part[2] for step, part in fitted.items() if part[2] is not None}
        self.n_pairs_ = {step: part[3] for step, part in fitted.items()}
        self.n_positive_ = {step: part[4] for step, part in fitted.items()}
        self.target_max_ = {step: part[5] for step, part in fitted.items()}

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
        self, X: npt.NDArray[np.float64], step_arr: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """P(y > 0) and the regressor's model-scale prediction per step (steps x units)."""
        proba = np.empty((len(step_arr), len(X)))
        magnitude = np.empty((len(step_arr), len(X)))
        with single_threaded_blas():  # the same sums for any thread budget, as in fit
            for i, step in enumerate(step_arr):  # over steps, each vectorised over units
                proba[i] = learners.positive_proba(self.classifiers_[int(step)], X)
                magnitude[i] = self.regressors_[int(step)].predict(X)
        return proba, magnitude

    def _step_parts(
        self, X: npt.NDArray[np.float64], step: int
    ) -> tuple[npt.NDArray[np.float64], Draw | None]:
        """The point of ``combine``; a sample is 0 where a uniform draw says no event, else
        a draw of the regressor's binned residuals."""
        parts = self._parts(X, np.array([step], dtype=np.int64))
        proba, magnitude = parts[0][0], parts[1][0]
        in_logs = self.params_.get("combine", "counts") == "log"  # older saved params lack it
        counts = self._to_counts(magnitude, step)
        point = np.expm1(proba * np.log1p(counts)) if in_logs else proba * counts
        n_samples = self.params_["n_samples"]
        if n_samples <= 1:
            return point, None
        table = self.residuals_[step]

        def draw(block: slice, rng: np.random.Generator) -> npt.NDArray[np.float64]:
            occurs = rng.random((len(proba[block]), n_samples)) < proba[block][:, None]
            draws = table.draw(magnitude[block], n_samples, rng)
            return np.where(occurs, self._to_counts(draws, step), 0.0)

        return point, draw

    def predict_proba(
        self, design: Design, *, origin: int, steps: Sequence[int] = DEFAULT_STEPS
    ) -> npt.NDArray[np.float64]:
        """P(y > 0) per forecast row, in the row order of :meth:`predict` (for Brier, AP, AUC)."""
        step_arr = self._check_predict(design, steps)
        proba, _ = self._parts(design.X[entity_rows(design, origin)], step_arr)
        return proba.reshape(-1)

    # ---------------------------------------------------------------- persistence hooks ---

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        meta, arrays = self._export_common()
        meta["n_positive_"] = {str(s): n for s, n in self.n_positive_.items()}
        estimators: dict[str, Any] = {}
        for s in self.trained_steps_:
            estimators[f"classifier_step{s:02d}"] = self.classifiers_[s]
            estimators[f"regressor_step{s:02d}"] = self.regressors_[s]
        return meta, arrays, estimators

    def _import_state(
        self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], estimators: Mapping[str, Any]
    ) -> None:
        steps = sorted(int(s) for s in meta["n_pairs_"])
        self._import_common(meta, arrays, steps)
        self.n_positive_ = {int(s): int(n) for s, n in meta["n_positive_"].items()}
        self.classifiers_ = {s: estimators[f"classifier_step{s:02d}"] for s in steps}
        self.regressors_ = {s: estimators[f"regressor_step{s:02d}"] for s in steps}
