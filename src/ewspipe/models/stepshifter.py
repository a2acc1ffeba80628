"""Direct multi-step forecasting ("stepshifter"): one fitted sub-model per step.

Sub-model s learns (features of a unit at month t) -> (target of the same unit at t + s) from
all pairs with t + s <= train_last; forecasting from origin o applies sub-model s to the
features at o to predict month o + s. No recursion, no error accumulation (DOMAIN.md 3).

Training pairs for every step come from one vectorised look-up (:func:`training_pairs`): rows
are sorted by month, so the feature rows of step s are a contiguous block of the design (a view
of ``X``, no copy) whenever every one of them has a target s months later; otherwise an index
array selects them. With ``zero_downsample`` < 1 the pairs are found and thinned a block of
rows at a time (:func:`downsampled_pairs`, the same pairs and draws), so only the kept ones
are ever held: ~6 % of the ~16 M candidates per step of copper_mesh on the global grid.

Hyperparameters (defaults):

- ``learner = "lightgbm"``: a regressor name of :mod:`ewspipe.models.learners`.
- ``learner_params = None``: dict of the learner's parameters (None = the learner's defaults).
- ``steps = 36``: sub-models for steps 1..steps; predict refuses other steps.
- ``log_target = True``: fit on log1p(y) and return expm1 of the prediction, inside the model
  only; the output is always raw counts (expm1 of a log-scale mean: nearer a median than a
  mean, which suits MSLE; set False to fit raw counts, e.g. for MSE).
- ``n_samples = 1``: samples per prediction; 1 = point model (samples[:, 0] == point).
- ``sampling = "residual"``: how samples are made when n_samples > 1: the binned residual
  bootstrap of :class:`~ewspipe.models.sampling.ResidualTable`, on the model's scale, mapped
  to counts and clipped at 0. The point stays the sub-model's prediction.
  ``sampling = "holdout"`` (stepshifter only) draws out-of-sample residuals instead: see
  :meth:`Stepshifter._holdout_table`.
- ``residual_bins = 10``: prediction-level bins of the residual bootstrap (1 = unconditional).
- ``holdout_months = 24`` (stepshifter, ``sampling = "holdout"``): the last months of the
  training window whose targets the residual sub-model does not see.
- ``spread = 1.0`` (stepshifter): factor on the residual of every draw above zero (<1 narrows,
  >1 widens the intervals of positive counts; draws of a zero count and the point are
  unchanged, see :meth:`~ewspipe.models.sampling.ResidualTable.draw`).
- ``zero_downsample = 1.0``: share in (0, 1] of training pairs with target 0 that are kept
  (drawn per step, seeded); kept zeros get sample weight 1 / share so the fit stays unbiased.
  Conflict data are ~85 % (cm) to ~99 % (pgm) zeros, so 0.1 cuts pgm fitting time ~10 times.
- ``train_window = None``: if set, only pairs whose feature month t >= train_last - window.
- ``monotone = None``: table feature expression -> 1 (the forecast may only rise with it) or
  -1 (only fall), passed to LightGBM as ``monotone_constraints`` (other features 0). A
  prior, not a fit: more violence in a unit's past never forecasts less violence ahead, and
  longer peace never forecasts more. Without it a tree that saw the few largest wars of the
  training years end within three years predicts ~1 death for Afghanistan 36 months on
  (actual ~1,000); with it, the 2013-2016 backtest window's MSLE of the same LightGBM drops
  from 0.92 to 0.69 (docs/models.md). LightGBM learners only.
- ``seed = 0``: seeds down-sampling, every sub-model (one derived seed per step) and sampling.
- ``n_jobs = -1``: steps fitted concurrently in threads (-1 = all CPUs available to the
  process). Predictions do not depend on it. Learners run single-threaded unless their params
  say otherwise (e.g. LightGBM ``n_jobs``), so the two levels do not oversubscribe the cores;
  BLAS (the ridge, the logistic) runs one thread while models fit and predict, so predictions
  do not depend on the task's thread budget or executor either (``ewspipe.threads``).

**The target bound.** Every prediction (point and samples) is capped at
``TARGET_BOUND_FACTOR`` (2) x (1 + the largest target of the step's training pairs) - 1
deaths, applied on the model's own scale before mapping back to counts: with ``log_target``
the log-scale prediction is clipped to [0, log1p(largest training target) + log 2]. A linear
learner on log1p(y) extrapolates exponentially (expm1 of a linear function of raw-count
features): the ridge ``amber_ridge`` predicted 21.9 million deaths for Ethiopia in one month
(actual 4) when the largest month it was trained on had 48,183. Clipping keeps every
learner and every feature set safe, where "features that cannot explode" would constrain
each model file instead. Tree learners predict means of training targets, so they stay below
the bound and are unaffected.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import numpy.typing as npt

from ewspipe.errors import EwspipeError, InputError, SpecError, did_you_mean
from ewspipe.features.design import Design, check_training_features
from ewspipe.features.expressions import canonical_name
from ewspipe.features.matrix import FeatureMatrix
from ewspipe.models import learners
from ewspipe.models.base import BaseForecaster
from ewspipe.models.forecast import Forecast
from ewspipe.models.registry import register
from ewspipe.models.sampling import (
    DEFAULT_STEPS,
    Draw,
    ResidualTable,
    Rule,
    assemble,
    blocked_draws,
    boolean,
    check_feature_names,
    check_params,
    check_steps,
    check_train_last,
    entity_rows,
    float_in,
    integer,
    mapping,
    one_of,
    optional,
    step_rng,
    step_seed,
)
from ewspipe.threads import available_threads, single_threaded_blas

__all__ = [
    "STEP_RULES",
    "TARGET_BOUND_FACTOR",
    "DirectMultiStep",
    "Stepshifter",
    "TrainingPairs",
    "downsample_zeros",
    "downsampled_pairs",
    "learner_rules",
    "n_jobs_rule",
    "target_max_from",
    "training_pairs",
]

_Rows = slice | npt.NDArray[np.int64]
_T = TypeVar("_T")
_DOWNSAMPLE_KEY = 1_000_001  # rng keys of down-sampling and residual subsets; origins (month
_RESIDUAL_KEY = 1_000_002  # ids, the other key of step_rng) never reach them
_HOLDOUT_PURPOSE = 1  # step_seed purpose of the residual sub-model of sampling = "holdout"
_MAX_RESIDUAL_PAIRS = 20_000
_PAIR_BLOCK = 1 << 20  # candidate pairs per block of downsampled_pairs
#: Predictions are capped at this factor x (1 + the largest training target) - 1 deaths:
#: log1p(largest) + log(2) on the log scale. Twice the worst month a step was trained on is
#: already far beyond any forecast worth making, and five times below the monthly QA's
#: default plausibility ceiling ([qa] max_forecast_factor = 10 x the largest count observed).
TARGET_BOUND_FACTOR = 2.0


@dataclass(frozen=True)
class TrainingPairs:
    """Pairs (feature row at month t, target row at month t + step) of the same unit.

    ``features`` is a slice when the pairs cover a contiguous block of rows (``X[features]``
    is then a view), else an index array; ``targets`` indexes ``y``.
    """

    step: int
    features: _Rows
    targets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, keep: npt.NDArray[np.bool_]) -> TrainingPairs:
        rows = self.features
        index = np.arange(rows.start, rows.stop)[keep] if isinstance(rows, slice) else rows[keep]
        return TrainingPairs(self.step, index, self.targets[keep])

    def rows_of(self, X: FeatureMatrix) -> npt.NDArray[np.float64]:
        """The feature rows of the pairs, as a new float64 array."""
        return X[self.features]


def training_pairs(
    design: Design, *, train_last: int, step: int, window: int | None = None
) -> TrainingPairs:
    """All pairs of one step whose target month t + step <= train_last and target is finite.

    Args:
        design: rows sorted by (month, unit).
        train_last: last month whose target may be used.
        step: months between features and target (>= 1).
        window: if set, only feature months t >= train_last - window.
    """
    months = design.months
    hi = int(np.searchsorted(months, train_last - step, side="right"))
    lo = 0 if window is None else int(np.searchsorted(months, train_last - window, side="left"))
    lo = min(lo, hi)
    target, found = design.rows_ahead(step, lo, hi)
    found &= np.isfinite(design.y[target])
    if found.all():
        return TrainingPairs(step, slice(lo, hi), target)
    return TrainingPairs(step, np.flatnonzero(found) + lo, target[found])


def downsample_zeros(
    is_zero: npt.NDArray[np.bool_], share: float, *, seed: int, step: int
) -> tuple[npt.NDArray[np.bool_] | None, npt.NDArray[np.float64] | None]:
    """Keep all non-zero pairs and a random ``share`` of zero pairs, weighted 1 / share.

    The draw is seeded by (seed, step), so refitting gives the same subset.

    Returns:
        (keep mask, weights of the kept pairs), or (None, None) when share >= 1.
    """
    if share >= 1.0:
        return None, None
    rng = step_rng(seed, _DOWNSAMPLE_KEY, step)
    keep = ~is_zero | (rng.random(len(is_zero)) < share)
    return keep, np.where(is_zero[keep], 1.0 / share, 1.0)


def downsampled_pairs(
    design: Design, *, train_last: int, step: int, window: int | None, share: float, seed: int
) -> tuple[TrainingPairs, npt.NDArray[np.float64], npt.NDArray[np.float64], int, float]:
    """:func:`training_pairs` then :func:`downsample_zeros`, a block of rows at a time.

    The same pairs, weights and random draws as the two in turn (the draws continue one
    stream across blocks), without their arrays over every candidate pair: on the global pgm
    grid a step has ~16 M candidates, ~0.5 GB of index, target and draw arrays per step fitted
    concurrently, of which ``share`` = 0.05 keeps ~6 %.

    Returns:
        (kept pairs, their targets, their weights, number of pairs before down-sampling,
        largest target of all of them (0 without pairs)).
    """
    months = design.months
    hi = int(np.searchsorted(months, train_last - step, side="right"))
    lo = 0 if window is None else int(np.searchsorted(months, train_last - window, side="left"))
    rng = step_rng(seed, _DOWNSAMPLE_KEY, step)
    rows: list[npt.NDArray[np.int64]] = []
    targets: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    total, top = 0, 0.0
    for start in range(min(lo, hi), hi, _PAIR_BLOCK):
        stop = min(start + _PAIR_BLOCK, hi)
        target, found = design.rows_ahead(step, start, stop)
        y = design.y[target]
        found &= np.isfinite(y)
        index = np.flatnonzero(found)
        y = y[index]
        is_zero = y == 0
        total += len(y)
        top = max(top, float(np.max(y, initial=0.0)))
        keep = ~is_zero | (rng.random(len(y)) < share)
        rows.append(index[keep] + start)
        targets.append(target[index[keep]])
        values.append(y[keep])
    y_kept = np.concatenate(values) if values else np.empty(0)
    weight = np.where(y_kept == 0, 1.0 / share, 1.0)
    pairs = TrainingPairs(step, _concat(rows), _concat(targets))
    return pairs, y_kept, weight, total, top


def _concat(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def n_jobs_rule(value: Any) -> str | None:
    """Rule of ``n_jobs``: threads fitting steps concurrently, -1 = all available CPUs."""
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)
    return None if ok else "an integer >= 1, or -1 for all available CPUs"




def target_max_from(meta: Mapping[str, Any]) -> dict[int, float]:
    """``target_max_`` from saved metadata (empty for a model saved without it: no cap)."""
    return {int(s): float(v) for s, v in (meta.get("target_max_") or {}).items()}


def _workers(n_jobs: int, n_tasks: int) -> int:
    if n_jobs == -1:
        n_jobs = available_threads()
    return max(1, min(n_jobs, n_tasks))


# Hyperparameters every direct multi-step model shares (stepshifter and hurdle).
STEP_RULES: dict[str, Rule] = {
    "steps": integer(1),
    "log_target": boolean(),
    "n_samples": integer(1),
    "sampling": one_of("residual"),
    "residual_bins": integer(1),
    "zero_downsample": float_in(0.0, 1.0, low_open=True),
    "train_window": optional(integer(1)),
    "seed": integer(0),
    "n_jobs": n_jobs_rule,
}


def _canonical(name: str) -> str:
    """A feature expression as the design names it (``decay(x, 12, 1)`` -> ``decay(x, 12)``);
    an unparsable one stays as written, to be reported as unknown."""
    try:
        return canonical_name(name)
    except SpecError:
        return name


def _monotone_rule(value: Any) -> str | None:
    if isinstance(value, Mapping) and all(
            isinstance(k, str) and type(v) is int and v in (-1, 0, 1) for k, v in value.items()):
        return None
    return "a table feature expression -> 1 (increasing), -1 (decreasing) or 0"


def learner_rules(role: str, names: Sequence[str]) -> dict[str, Rule]:
    """The rules of a learner hyperparameter ``role`` (one of ``names``) and its
    ``<role>_params`` table."""
    return {role: one_of(*names), f"{role}_params": optional(mapping())}


class DirectMultiStep(BaseForecaster):
    """Protocol plumbing shared by the stepshifter and the hurdle (sub-models per step).

    Subclasses set ``algorithm`` and ``_rules``, implement ``_check_learners``, and set
    ``params_``, ``trained_steps_`` and ``feature_names_`` in ``fit``.
    """

    needs_features: ClassVar[bool] = True

    algorithm: ClassVar[str]
    _rules: ClassVar[dict[str, Rule]]

    def __init__(
        self,
        *,
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
        """The hyperparameters every direct multi-step model has (subclasses add their
        learners' and pass these on as ``**step_params``)."""
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
    def check_params(cls, params: Mapping[str, Any], *, dry_run: bool = True) -> dict[str, Any]:
        """Validate hyperparameters without the user's data (for ``models check``).

        Args:
            params: hyperparameters, possibly partial (defaults fill the rest).
            dry_run: also fit each learner once on 64 synthetic rows, so bad learner values
                are caught now in the library's words (``fit`` skips this).

        Returns:
            The complete params (defaults filled in).

        Raises:
            SpecError: unknown key or bad value (named, with the value), unknown learner or
                learner parameter.
            MissingDependency: a learner's optional package is missing (with the install hint).
        """
        merged = check_params(cls.algorithm, params, cls.default_params(), cls._rules)
        cls._check_learners(merged, dry_run=dry_run)
        return merged

    @classmethod
    def _check_learners(cls, params: dict[str, Any], *, dry_run: bool) -> None:
        raise NotImplementedError

    def fit(self, design: Design, *, train_last: int) -> Self:
        """Fit the sub-models of every step on pairs with target month <= ``train_last``.

        Steps are fitted concurrently in ``n_jobs`` threads; the result does not depend on it.

        Raises:
            SpecError: invalid hyperparameters (named), or a feature missing (NaN) for every
                training row (it would teach the model nothing: every forecast the same).
            ValueError: no rows up to ``train_last`` or a step without training pairs.
            EwspipeError: a learner failed (step and learner named, cause chained).
        """
        params = self.check_params(self.get_params(), dry_run=False)
        check_train_last(design, train_last)
        window = params["train_window"]
        check_training_features(design, train_last=train_last,
                                since=None if window is None else train_last - window)
        self._clear_learned()
        self.params_ = copy.deepcopy(params)  # later edits of learner_params cannot leak in
        try:
            fitted = self._map_steps(lambda step: self._fit_step(design, train_last, step))
        except BaseException:
            self._clear_learned()  # no half-fitted model: predict keeps raising NotFittedError
            raise
        self._keep_fitted(fitted)
        self.trained_steps_ = tuple(fitted)
        self.feature_names_ = tuple(design.feature_names)
        self.train_last_ = int(train_last)
        return self

    def _fit_step(self, design: Design, train_last: int, step: int) -> Any:
        """Everything one step learns (a tuple the subclass's ``_keep_fitted`` unpacks)."""
        raise NotImplementedError

    def _keep_fitted(self, fitted: dict[int, Any]) -> None:
        """Store the learned attributes from ``_fit_step``'s result per step."""
        raise NotImplementedError

    def _clear_learned(self) -> None:
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    def _map_steps(self, fit_step: Callable[[int], _T]) -> dict[int, _T]:
        """``fit_step`` for steps 1..steps, in ``n_jobs`` threads, keyed by step (1-based).

        Learners release the GIL while fitting; each step is seeded on its own, so the result
        is the same for any ``n_jobs``. BLAS runs one thread meanwhile, so the result is also
        the same for any thread budget (see ``ewspipe.threads.single_threaded_blas``). The
        first failure cancels the steps not yet started.
        """
        with single_threaded_blas():
            return self._map_steps_in_threads(fit_step)

    def _map_steps_in_threads(self, fit_step: Callable[[int], _T]) -> dict[int, _T]:
        steps = range(1, self.params_["steps"] + 1)
        workers = _workers(self.params_["n_jobs"], len(steps))
        if workers == 1:
            return {step: fit_step(step) for step in steps}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {step: pool.submit(fit_step, step) for step in steps}
            try:
                return {step: future.result() for step, future in futures.items()}
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def first_design_month(self, train_last: int) -> int | None:
        """With ``train_window`` set, fit reads feature months >= train_last - window (and
        their targets, later) and predict reads only its origin, which is later still."""
        window = self.get_params()["train_window"]
        return None if window is None else int(train_last) - int(window)

    def first_predict_month(self, origin: int) -> int | None:
        """Predict reads the features of its origin's rows only: a forecast's design is one
        month (on the global grid 66,205 rows, against 16 M for the fit's window)."""
        return int(origin)

    def _pairs(self, design: Design, train_last: int, step: int) -> TrainingPairs:
        pairs = training_pairs(design, train_last=train_last, step=step,
                               window=self.params_["train_window"])
        self._check_pairs(design, train_last, step, len(pairs))
        return pairs

    def _check_pairs(self, design: Design, train_last: int, step: int, n: int) -> None:
        if n == 0:
            window = self.params_["train_window"]
            where = f"feature months >= {train_last - window} and " if window else ""
            raise InputError(
                f"{self.algorithm}: step {step} has no training pairs ({where}target months "
                f"<= train_last {train_last}; the design covers months {design.first_month}.."
                f"{design.last_month}); lower 'steps', widen 'train_window' or add history",
                parameter="data")

    def _residual_table(
        self,
        model: Any,
        X: npt.NDArray[np.float64],
        y_model: npt.NDArray[np.float64],
        weight: npt.NDArray[np.float64] | None,
        step: int,
    ) -> ResidualTable:
        """Training residuals of one step's regressor, from at most 20,000 pairs (a seeded
        uniform subset, which keeps the weights valid); enough for 500 quantiles per bin."""
        if len(y_model) > _MAX_RESIDUAL_PAIRS:
            rng = step_rng(self.params_["seed"], _RESIDUAL_KEY, step)
            index = np.sort(rng.choice(len(y_model), _MAX_RESIDUAL_PAIRS, replace=False))
            X, y_model = np.take(X, index, axis=0), y_model[index]
            weight = None if weight is None else weight[index]
        predicted = np.asarray(model.predict(X), dtype=np.float64)
        return ResidualTable.fit(predicted, y_model - predicted, weight,
                                 bins=self.params_["residual_bins"])

    def _fit_error(self, step: int, role: str, name: str, n: int, exc: Exception) -> EwspipeError:
        return EwspipeError(
            f"{self.algorithm}: fitting the {role} {name!r} of step {step} on {n} pairs failed: "
            f"{type(exc).__name__}: {exc}"
        )

    def _export_common(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The meta data and residual arrays every direct multi-step model saves."""
        meta = {
            "params_": self.params_,
            "train_last_": self.train_last_,
            "feature_names_": list(self.feature_names_),
            "n_pairs_": {str(s): n for s, n in self.n_pairs_.items()},
            "target_max_": {str(s): v for s, v in self.target_max_.items()},
        }
        arrays: dict[str, np.ndarray] = {}
        for s, table in self.residuals_.items():
            arrays[f"residual_edges_{s:02d}"] = table.edges
            arrays[f"residual_table_{s:02d}"] = table.table
        return meta, arrays

    def _import_common(
        self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], steps: Sequence[int]
    ) -> None:
        """Restore what :meth:`_export_common` saved, for the trained ``steps``."""
        self.params_ = meta["params_"]
        self.n_pairs_ = {int(s): int(n) for s, n in meta["n_pairs_"].items()}
        self.target_max_ = target_max_from(meta)
        self.residuals_ = {
            s: ResidualTable(arrays[f"residual_edges_{s:02d}"], arrays[f"residual_table_{s:02d}"])
            for s in steps
            if f"residual_table_{s:02d}" in arrays
        }
        self.trained_steps_ = tuple(steps)
        self.feature_names_ = tuple(meta["feature_names_"])
        self.train_last_ = int(meta["train_last_"])

    def _upper_bound(self, step: int) -> float | None:
        """The model-scale cap of ``step``'s predictions (see the module docstring); None for
        a model saved before the bound existed (its artifacts are retrained: the code
        fingerprint is part of their key)."""
        top = getattr(self, "target_max_", {}).get(int(step))
        if top is None:
            return None
        bound = TARGET_BOUND_FACTOR * (max(float(top), 0.0) + 1.0) - 1.0
        return float(np.log1p(bound)) if self.params_["log_target"] else bound

    def _to_counts(self, values: npt.NDArray[np.float64], step: int) -> npt.NDArray[np.float64]:
        """Model-scale predictions of ``step`` -> counts in [0, bound] (NaN stays NaN and is
        reported by assemble())."""
        upper = self._upper_bound(step)
        if upper is not None:
            values = np.minimum(values, upper)
        if not self.params_["log_target"]:
            return np.maximum(values, 0.0)
        with np.errstate(over="ignore"):  # only reachable without a bound; assemble() reports it
            return np.maximum(np.expm1(values), 0.0)

    @staticmethod
    def _target_max(target: npt.NDArray[np.float64]) -> float:
        """The largest training target of a step in counts (0 when there is none)."""
        return float(np.nanmax(target, initial=0.0)) if len(target) else 0.0

    def _to_model_scale(self, y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.log1p(y) if self.params_["log_target"] else y

    def predict(
        self, design: Design, *, origin: int, steps: Sequence[int] = DEFAULT_STEPS
    ) -> Forecast:
        """The forecast of each step for the units present at ``origin``, in raw counts.

        Only the design rows of month ``origin`` are read.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: a step without a sub-model (named), an origin absent from the design, or
                a design with other features than the fitted ones.
        """
        step_arr = self._check_predict(design, steps)
        rows = entity_rows(design, origin)
        X, n = design.X[rows], rows.stop - rows.start
        n_samples = self.params_["n_samples"]
        point = np.empty((len(step_arr), n))
        samples = np.empty((len(step_arr), n, n_samples)) if n_samples > 1 else None
        # one BLAS limit for all steps: setting it scans the loaded libraries (~2 ms), which
        # per step was 0.9 s of a 13-origin cm evaluation (the steps' own blocks nest in it)
        with single_threaded_blas():
            for i, step in enumerate(step_arr):  # over steps, each vectorised over units
                point[i], draw = self._step_parts(X, int(step))
                if samples is not None and draw is not None:
                    samples[i] = self._draws(draw, slice(None), n, int(origin), int(step))
        return assemble(design, int(origin), step_arr, design.units[rows], point, samples,
                        algorithm=self.algorithm)

    def predict_units(
        self, design: Design, *, origin: int, step: int, units: Sequence[slice]
    ) -> Iterator[Forecast]:
        """The forecast of one step for each run of units (positions in the origin's sorted
        unit order), in turn: the rows of :meth:`predict` bit for bit, with the step's point
        predicted once (on all its units) and only one run's draws alive."""
        step_arr = self._check_predict(design, [step])
        rows = entity_rows(design, origin)
        n = rows.stop - rows.start
        point, draw = self._step_parts(design.X[rows], int(step_arr[0]))
        for part in units:
            samples = None if draw is None else \
                self._draws(draw, part, n, int(origin), int(step_arr[0]))[None]
            yield assemble(design, int(origin), step_arr, design.units[rows][part],
                           point[part][None], samples, algorithm=self.algorithm)

    def _draws(self, draw: Draw, part: slice, n: int, origin: int,
               step: int) -> npt.NDArray[np.float64]:
        return blocked_draws(part, n, self.params_["n_samples"], draw,
                             seed=self.params_["seed"], origin=origin, step=step)

    def _step_parts(
        self, X: npt.NDArray[np.float64], step: int
    ) -> tuple[npt.NDArray[np.float64], Draw | None]:
        """The point forecast of ``step`` for the units of ``X`` in counts, and (when the model
        samples) a function drawing a block of those units' samples in counts from a
        generator (see :func:`ewspipe.models.sampling.blocked_draws`)."""
        raise NotImplementedError

    def _check_predict(self, design: Design, steps: Sequence[int]) -> npt.NDArray[np.int64]:
        self._check_fitted()
        step_arr = check_steps(steps)
        untrained = [int(s) for s in step_arr if int(s) not in self.trained_steps_]
        if untrained:
            top = max(self.trained_steps_)
            raise ValueError(
                f"step {untrained[0]} was not trained: this {self.algorithm} has sub-models for "
                f"steps 1..{top}; set its 'steps' hyperparameter to at least {max(untrained)} "
                "and refit"
            )
        check_feature_names(self.feature_names_, design, self.algorithm)
        return step_arr


@register("stepshifter")
class Stepshifter(DirectMultiStep):
    """Direct multi-step regressor: sub-model s maps features at t to the target at t + s.

    Learned state: ``models_`` (dict step -> fitted regressor, steps 1-based),
    ``residuals_`` (dict step -> ResidualTable, empty when n_samples == 1), ``params_``
    (validated hyperparameters used by predict), ``feature_names_``, ``train_last_``,
    ``trained_steps_``, ``n_pairs_`` (dict step -> number of pairs fitted), ``target_max_``
    (dict step -> largest training target in counts: the base of the prediction cap).
    """

    algorithm = "stepshifter"
    _rules: ClassVar[dict[str, Rule]] = {
        **learner_rules("learner", learners.regressor_names()),
        **STEP_RULES,
        "sampling": one_of("residual", "holdout"),
        "holdout_months": integer(1),
        "spread": float_in(0.0, 10.0, low_open=True),
        "monotone": optional(_monotone_rule),
    }

    def __init__(
        self,
        learner: str = "lightgbm",
        learner_params: Mapping[str, Any] | None = None,
        holdout_months: int = 24,
        spread: float = 1.0,
        monotone: Mapping[str, int] | None = None,
        **step_params: Any,
    ) -> None:
        self.learner = learner
        self.learner_params = learner_params
        self.holdout_months = holdout_months
        self.spread = spread
        self.monotone = monotone
        super().__init__(**step_params)

    @classmethod
    def _check_learners(cls, params: dict[str, Any], *, dry_run: bool) -> None:
        learner_params = params["learner_params"] or {}
        if params["monotone"]:
            if params["learner"] != "lightgbm":
                raise SpecError(f"stepshifter hyperparameter 'monotone' needs learner "
                                f"'lightgbm' (got {params['learner']!r}); remove 'monotone' "
                                "or use learner = \"lightgbm\"")
            clash = {"monotone_constraints", "monotone_constraint", "mc"} & set(learner_params)
            if clash:
                raise SpecError(f"learner_params.{sorted(clash)[0]} and 'monotone' both set "
                                "monotone constraints; keep 'monotone' (by feature name)")
        learners.check_regressor(params["learner"], learner_params, dry_run=dry_run)

    def _learner_params(self, feature_names: Sequence[str]) -> dict[str, Any]:
        """The learner's params, with ``monotone`` turned into LightGBM's per-column list."""
        params = dict(self.params_["learner_params"] or {})
        monotone = self.params_["monotone"]
        if monotone:
            monotone = {_canonical(name): sign for name, sign in monotone.items()}
            unknown = sorted(set(monotone) - set(feature_names))
            if unknown:
                raise SpecError(
                    f"stepshifter hyperparameter 'monotone' names "
                    f"{', '.join(repr(u) for u in unknown)}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not among the model's features"
                    f"{did_you_mean(unknown[0], list(feature_names))}; use the expressions "
                    "exactly as the features list writes them")
            params["monotone_constraints"] = [int(monotone.get(n, 0)) for n in feature_names]
            params.setdefault("monotone_constraints_method", "advanced")
        return params

    def _keep_fitted(self, fitted: dict[int, tuple[Any, ResidualTable | None, int, float]]
                     ) -> None:
        self.models_ = {step: model for step, (model, _, _, _) in fitted.items()}
        self.residuals_ = {
            step: table for step, (_, table, _, _) in fitted.items() if table is not None
        }
        self.n_pairs_ = {step: n for step, (_, _, n, _) in fitted.items()}
        self.target_max_ = {step: top for step, (_, _, _, top) in fitted.items()}

    def _fit_step(
        self, design: Design, train_last: int, step: int
    ) -> tuple[Any, ResidualTable | None, int, float]:
        params = self.params_
        name, seed = params["learner"], params["seed"]
        share = params["zero_downsample"]
        weight: npt.NDArray[np.float64] | None = None
        if share < 1.0:  # block by block: never every candidate pair's arrays at once
            pairs, target, weight, n, top = downsampled_pairs(
                design, train_last=train_last, step=step, window=params["train_window"],
                share=share, seed=seed)
            self._check_pairs(design, train_last, step, n)
        else:
            pairs = self._pairs(design, train_last, step)
            target = design.y[pairs.targets]
            top = self._target_max(target)
        X = pairs.rows_of(design.X)
        y_model = self._to_model_scale(target)
        model = learners.make_regressor(name, self._learner_params(design.feature_names),
                                        seed=step_seed(seed, step))
        try:
            learners.fit_learner(model, X, y_model, weight)
        except Exception as exc:
            raise self._fit_error(step, "learner", name, len(pairs), exc) from exc
        table = None
        if params["n_samples"] > 1:
            if params["sampling"] == "holdout":
                table = self._holdout_table(design, pairs, X, y_model, weight, train_last)
            else:
                table = self._residual_table(model, X, y_model, weight, step)
        return model, table, len(pairs), top

    def _holdout_table(
        self,
        design: Design,
        pairs: TrainingPairs,
        X: npt.NDArray[np.float64],
        y_model: npt.NDArray[np.float64],
        weight: npt.NDArray[np.float64] | None,
        train_last: int,
    ) -> ResidualTable:
        """Out-of-sample residuals of one step (``sampling = "holdout"``).

        A residual sub-model (same learner and parameters, its own seed) is fitted on the
        step's pairs whose target month is <= train_last - ``holdout_months`` and predicts the
        pairs whose target falls in the last ``holdout_months`` months; their residuals, binned
        by that prediction, make the table. In-sample residuals are too small for a flexible
        learner and blind to change over time; these are the errors of a forecast made
        ``holdout_months`` months before the pairs it is scored on, like the test windows. The
        point forecast stays the sub-model fitted on all pairs. The extra fit costs about one
        more fit of the step.

        Raises:
            ValueError: no pair before or inside the held-out months (names the step and
                how to fix it).
        """
        params, step = self.params_, pairs.step
        holdout = params["holdout_months"]
        target_month = design.months[pairs.features] + step
        late = target_month > train_last - holdout
        if late.all() or not late.any():
            raise ValueError(
                f"{self.algorithm}: sampling = 'holdout' needs training pairs of step {step} "
                f"both before and inside the last holdout_months = {holdout} months up to "
                f"train_last {train_last} (got {int((~late).sum())} before, {int(late.sum())} "
                "inside); lower 'holdout_months', widen 'train_window' or add history"
            )
        early = np.flatnonzero(~late)
        name = params["learner"]
        model = learners.make_regressor(name, self._learner_params(design.feature_names),
                                        seed=step_seed(params["seed"], step, _HOLDOUT_PURPOSE))
        try:
            learners.fit_learner(model, np.take(X, early, axis=0), y_model[early],
                                 None if weight is None else weight[early])
        except Exception as exc:
            raise self._fit_error(step, "holdout learner", name, len(early), exc) from exc
        held = np.flatnonzero(late)
        return self._residual_table(model, np.take(X, held, axis=0), y_model[held],
                                    None if weight is None else weight[held], step)

    def _step_parts(
        self, X: npt.NDArray[np.float64], step: int
    ) -> tuple[npt.NDArray[np.float64], Draw | None]:
        """Sub-model ``step`` applied to the features at the origin; draws add its binned
        residuals (:meth:`ResidualTable.draw`)."""
        n_samples = self.params_["n_samples"]
        spread = float(self.params_.get("spread", 1.0))  # absent from older artifacts
        with single_threaded_blas():  # the same sums for any thread budget, as in fit
            predicted = np.asarray(self.models_[step].predict(X), dtype=np.float64)
        if n_samples <= 1:
            return self._to_counts(predicted, step), None
        table = self.residuals_[step]

        def draw(block: slice, rng: np.random.Generator) -> npt.NDArray[np.float64]:
            return self._to_counts(table.draw(predicted[block], n_samples, rng, spread=spread),
                                   step)

        return self._to_counts(predicted, step), draw

    # ---------------------------------------------------------------- persistence hooks ---

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        meta, arrays = self._export_common()
        estimators = {f"step{s:02d}": model for s, model in self.models_.items()}
        return meta, arrays, estimators

    def _import_state(
        self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray], estimators: Mapping[str, Any]
    ) -> None:
        steps = sorted(int(s) for s in meta["n_pairs_"])
        self._import_common(meta, arrays, steps)
        self.models_ = {s: estimators[f"step{s:02d}"] for s in steps}
