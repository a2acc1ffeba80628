"""The output side every forecaster shares: steps, entity set, samples, the Forecast.

Three parts, all used by baselines, the stepshifter and the hurdle:

- **Hyperparameter rules** (:func:`check_params` and the rule constructors): validate a
  params dict once, without data, raising :class:`~ewspipe.errors.SpecError` (a ValueError)
  that names the algorithm, the key, what was expected and what was got.
- **Protocol mechanics**: :func:`check_steps`, :func:`entity_rows` and :func:`assemble`, which
  turns per-step predictions for the origin's units into a :class:`Forecast` in raw counts.
- **Probabilistic output**: :class:`ResidualTable` (binned residual bootstrap for learned
  models, see its docstring for the method) and :func:`bootstrap_history` (draws from each
  unit's own recent history, for the conflictology baseline).

Random draws are seeded per (seed, origin, step, unit block) with :func:`block_rng` and drawn
block by block (:func:`blocked_draws`, :data:`UNIT_BLOCK` units a block), so a forecast does not
depend on which other steps, origins or units were requested alongside it.
"""

from __future__ import annotations

import difflib
import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import SpecError
from ewspipe.features.design import Design
from ewspipe.models.forecast import Forecast

__all__ = [
    "DEFAULT_STEPS",
    "UNIT_BLOCK",
    "Draw",
    "ResidualTable",
    "Rule",
    "assemble",
    "block_rng",
    "blocked_draws",
    "boolean",
    "bootstrap_history",
    "check_feature_names",
    "check_params",
    "check_steps",
    "check_train_last",
    "entity_rows",
    "float_in",
    "integer",
    "mapping",
    "one_of",
    "optional",
    "step_rng",
    "step_seed",
]

_log = logging.getLogger(__name__)

DEFAULT_STEPS: range = range(1, 37)
"""Steps 1..36: step s predicts month origin + s."""

UNIT_BLOCK = 8192
"""Units of one (origin, step) drawn from one generator (in the origin's sorted unit order):
fixed, so the draws are the same whatever the chunking; a grid of at most this many units is
one block, seeded as before blocks existed (:func:`block_rng`)."""

Rule = Callable[[Any], str | None]
"""A hyperparameter rule: returns None when the value is valid, else what was expected."""

Draw = Callable[[slice, np.random.Generator], npt.NDArray[np.float64]]
"""Draws of one unit block (positions in the origin's unit order) from its generator."""


# --------------------------------------------------------------------------------------------
# Hyperparameter rules
# --------------------------------------------------------------------------------------------


def integer(minimum: int | None = None, maximum: int | None = None) -> Rule:
    """An int (not a bool) within the inclusive bounds."""
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    expected = f"an integer{lo}{' and' if lo and hi else ''}{hi}"

    def rule(value: Any) -> str | None:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            return expected
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            return expected
        return None

    return rule


def float_in(low: float, high: float, *, low_open: bool = False) -> Rule:
    """A real number in (low, high] when ``low_open`` else [low, high]."""
    expected = f"a number in {'(' if low_open else '['}{low}, {high}]"

    def rule(value: Any) -> str | None:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return expected
        ok = (value > low if low_open else value >= low) and value <= high
        return None if ok else expected

    return rule


def boolean() -> Rule:
    def rule(value: Any) -> str | None:
        return None if isinstance(value, bool) else "true or false"

    return rule


def one_of(*choices: str) -> Rule:
    expected = f"one of {', '.join(repr(c) for c in choices)}"

    def rule(value: Any) -> str | None:
        if isinstance(value, str) and value in choices:
            return None
        close = difflib.get_close_matches(str(value), choices, n=1)
        return f"{expected} (did you mean {close[0]!r}?)" if close else expected

    return rule


def mapping() -> Rule:
    def rule(value: Any) -> str | None:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return None
        return "a table (dict) with string keys"

    return rule


def optional(inner: Rule) -> Rule:
    """``None`` or a value ``inner`` accepts."""

    def rule(value: Any) -> str | None:
        if value is None:
            return None
        problem = inner(value)
        return None if problem is None else f"{problem}, or omitted (None)"

    return rule


def check_params(
    algorithm: str,
    params: Mapping[str, Any],
    defaults: Mapping[str, Any],
    rules: Mapping[str, Rule],
) -> dict[str, Any]:
    """Validate ``params`` (a partial dict is completed with ``defaults``) against ``rules``.

    Args:
        algorithm: registered name, used in messages.
        params: hyperparameters as given (e.g. a model file's params table).
        defaults: the algorithm's defaults; keys define the valid names.
        rules: one rule per key.

    Returns:
        The complete, validated params dict (defaults filled in).

    Raises:
        SpecError: naming the first unknown key, or the first key whose value breaks its rule
            (with the value and what was expected).
    """
    unknown = sorted(set(params) - set(rules))
    if unknown:
        raise SpecError(
            f"unknown hyperparameter {unknown[0]!r} for algorithm {algorithm!r}; valid: "
            f"{', '.join(sorted(rules))}"
        )
    merged = {**defaults, **params}
    for key, rule in rules.items():
        if key not in merged:
            raise SpecError(f"hyperparameter {key!r} of algorithm {algorithm!r} is required")
        problem = rule(merged[key])
        if problem is not None:
            raise SpecError(
                f"hyperparameter {key!r} of algorithm {algorithm!r} must be {problem}; "
                f"got {merged[key]!r}"
            )
    return merged


# --------------------------------------------------------------------------------------------
# Protocol mechanics
# --------------------------------------------------------------------------------------------


def check_steps(steps: Sequence[int] | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Sorted unique steps as int64; each must be an integer >= 1.

    Raises:
        ValueError: empty steps, or a step that is not an integer >= 1 (named).
    """
    values = list(np.atleast_1d(np.asarray(steps, dtype=object)))
    if not values:
        raise ValueError("steps is empty; pass e.g. range(1, 37)")
    for s in values:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
            raise ValueError(f"steps must be integers >= 1 (step s predicts origin + s); got {s!r}")
    return np.unique(np.asarray(values, dtype=np.int64))


def check_train_last(design: Design, train_last: int) -> int:
    """Number of rows with month <= train_last (a prefix of the design), which must be > 0."""
    if not isinstance(train_last, numbers.Integral) or isinstance(train_last, bool):
        raise ValueError(f"train_last must be an integer month_id; got {train_last!r}")
    end = int(np.searchsorted(design.months, train_last, side="right"))
    if end == 0:
        first = design.first_month if len(design) else None
        raise ValueError(
            f"no design rows with month <= train_last {train_last}; the design starts at month "
            f"{first}"
        )
    return end


def entity_rows(design: Design, origin: int) -> slice:
    """The rows of month ``origin``: the units present there are the entity set.

    Raises:
        ValueError: the design has no row for ``origin`` (names the months it has).
    """
    if not isinstance(origin, numbers.Integral) or isinstance(origin, bool):
        raise ValueError(f"origin must be an integer month_id; got {origin!r}")
    rows = design.month_rows(int(origin))
    if rows.stop == rows.start:
        span = f"{design.first_month}..{design.last_month}" if len(design) else "none"
        raise ValueError(
            f"origin month {origin} has no rows in the design (months {span}); the forecast "
            "covers the units present at the origin, so the origin must be an observed month"
        )
    return rows


def check_feature_names(fitted: tuple[str, ...], design: Design, algorithm: str) -> None:
    """The design must have the features the model was fitted on, in the same order."""
    got = tuple(design.feature_names)
    if got == tuple(fitted):
        return
    missing = [f for f in fitted if f not in got]
    extra = [f for f in got if f not in fitted]
    detail = (
        f"missing {missing[:5]}, unexpected {extra[:5]}" if missing or extra else "order differs"
    )
    raise ValueError(
        f"{algorithm} was fitted on {len(fitted)} features and the design has {len(got)} "
        f"({detail}); build the design with the model's feature set"
    )


def assemble(
    design: Design,
    origin: int,
    steps: npt.NDArray[np.int64],
    units: npt.NDArray[np.int64],
    point: npt.NDArray[np.float64],
    samples: npt.NDArray[np.float64] | None = None,
    *,
    algorithm: str,
) -> Forecast:
    """Build the Forecast for ``len(steps)`` x ``len(units)`` predictions.

    Args:
        design: supplies the unit column name.
        origin: the origin month.
        steps: sorted steps (from :func:`check_steps`).
        units: the origin's units, sorted (rows of one month of a design are).
        point: (len(steps), len(units)) raw counts.
        samples: (len(steps), len(units), S) raw counts, or None for a point model (S = 1).
        algorithm: named in errors.

    Returns:
        A Forecast sorted by (origin, step, unit); negatives (e.g. a ridge extrapolating below
        zero) are set to 0, counted in a debug log.

    Raises:
        FloatingPointError: a prediction is NaN or infinite (names the first step and unit).
    """
    k, m = len(steps), len(units)
    point = np.asarray(point, dtype=np.float64).reshape(k, m)
    if samples is None:
        samples = point[:, :, None]
    samples = np.asarray(samples, dtype=np.float64).reshape(k, m, -1)
    for name, values in (("point", point), ("samples", samples)):
        bad = ~np.isfinite(values)
        if bad.any():
            s_idx, u_idx = np.argwhere(bad)[0][:2]
            raise FloatingPointError(
                f"{algorithm} produced {int(bad.sum())} non-finite {name} values (first: step "
                f"{int(steps[s_idx])}, {design.unit_column} {int(units[u_idx])}); this is a "
                "model bug or an overflow of expm1 on a log-scale prediction"
            )
    negative = int((point < 0).sum() + (samples < 0).sum())
    if negative:
        _log.debug("%s: set %d negative predictions to 0", algorithm, negative)
        point = np.maximum(point, 0.0)
        samples = np.maximum(samples, 0.0)
    frame = pd.DataFrame(
        {
            "origin": np.full(k * m, origin, dtype=np.int64),
            "step": np.repeat(steps, m),
            "month_id": np.repeat(origin + steps, m),
            design.unit_column: np.tile(np.asarray(units, dtype=np.int64), k),
        }
    )
    return Forecast(
        frame=frame,
        point=point.reshape(k * m),
        samples=samples.reshape(k * m, -1),
        unit_column=design.unit_column,
    )


def step_seed(seed: int, step: int, purpose: int = 0) -> int:
    """A 31-bit seed for a learner of one step, derived from the model seed."""
    state = np.random.SeedSequence([seed, step, purpose]).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def step_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one (seed, key...) cell, e.g. (seed, origin, step)."""
    return np.random.default_rng([seed, *(int(k) for k in key)])


def block_rng(seed: int, origin: int, step: int, block: int) -> np.random.Generator:
    """The generator of unit block ``block`` of (origin, step): block 0 keeps the key
    (seed, origin, step) of a whole step, so forecasts of at most :data:`UNIT_BLOCK` units
    draw what they drew before unit blocks; later blocks add theirs to the key."""
    return step_rng(seed, origin, step) if block == 0 else step_rng(seed, origin, step, block)


def blocked_draws(
    units: slice,
    n_units: int,
    n_samples: int,
    draw: Draw,
    *,
    seed: int,
    origin: int,
    step: int,
) -> npt.NDArray[np.float64]:
    """(len(units), n_samples) draws of the units ``units`` (positions 0..n_units-1 in the
    origin's unit order) of one step: ``draw(block_units, rng)`` is called once per
    :data:`UNIT_BLOCK`-unit block overlapping ``units`` with that block's :func:`block_rng`,
    so a unit's draws do not depend on which others are drawn (only the overlapping blocks
    are ever alive)."""
    size = UNIT_BLOCK  # read at call time (tests shrink it)
    start, stop = units.indices(n_units)[:2]
    out = np.empty((max(stop - start, 0), n_samples))
    for block in range(start // size, -(-stop // size)):
        lo, hi = block * size, min((block + 1) * size, n_units)
        values = draw(slice(lo, hi), block_rng(seed, origin, step, block))
        a, b = max(start, lo), min(stop, hi)
        out[a - start:b - start] = values[a - lo:b - lo]
    return out


# --------------------------------------------------------------------------------------------
# Probabilistic output
# --------------------------------------------------------------------------------------------

_TABLE_SIZE = 500  # residual quantiles kept per bin


def _weighted_quantiles(
    values: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    probs: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Inverse of the weighted empirical distribution function at ``probs``."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    pos = np.searchsorted(cum, probs * cum[-1], side="left")
    return values[order][np.minimum(pos, len(values) - 1)]


@dataclass(frozen=True, eq=False)
class ResidualTable:
    """Binned residual bootstrap: the sampling method of the learned models.

    Method ("residual"): for one step's sub-model, the training residuals
    ``r = y - f(x)`` on the model's scale (log1p counts when the model fits on logs) are
    grouped into bins by the size of the prediction ``f(x)`` (quantile bins, weighted when the
    training pairs were down-sampled). A bin's residual distribution is summarised by 500 of its
    quantiles. A sample for a new prediction ``p`` is ``p + r`` with ``r`` drawn uniformly from
    the bin ``p`` falls into; the caller maps it back to raw counts and clips at 0.

    Binning makes the spread conditional on the level: units predicted near zero get the
    residuals of other near-zero predictions (mostly 0, sometimes an onset), high predictions get
    the wider spread of high predictions. With ``bins = 1`` this is the plain empirical residual
    bootstrap. With ``sampling = "residual"`` the residuals are in-sample, so intervals tend to
    be narrow for flexible learners (boosting with many trees); the stepshifter's
    ``sampling = "holdout"`` fits the table on out-of-sample residuals instead (same table,
    same draws), and its ``spread`` scales the residuals of positive draws (:meth:`draw`).

    Attributes:
        edges: (B - 1,) inner bin edges on the model scale, increasing.
        table: (B, 500) residual quantiles per bin.
    """

    edges: npt.NDArray[np.float64]
    table: npt.NDArray[np.float64]

    @classmethod
    def fit(
        cls,
        predicted: npt.NDArray[np.float64],
        residuals: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float64] | None = None,
        *,
        bins: int = 10,
    ) -> ResidualTable:
        """Summarise residuals of training pairs; ``weights`` undo down-sampling."""
        predicted = np.asarray(predicted, dtype=np.float64)
        residuals = np.asarray(residuals, dtype=np.float64)
        w = np.ones_like(predicted) if weights is None else np.asarray(weights, np.float64)
        if len(predicted) == 0:
            return cls(edges=np.empty(0), table=np.zeros((1, _TABLE_SIZE)))
        probs = (np.arange(_TABLE_SIZE) + 0.5) / _TABLE_SIZE
        inner = np.arange(1, bins) / bins
        edges = np.unique(_weighted_quantiles(predicted, w, inner)) if bins > 1 else np.empty(0)
        member = np.searchsorted(edges, predicted, side="left")  # bin b: (e[b-1], e[b]]
        overall = _weighted_quantiles(residuals, w, probs)
        table = np.empty((len(edges) + 1, _TABLE_SIZE))
        for b in range(len(edges) + 1):  # over bins (<= `bins`), not units
            inside = member == b
            table[b] = _weighted_quantiles(residuals[inside], w[inside], probs) if inside.any() \
                else overall
        return cls(edges=edges, table=table)

    def draw(
        self,
        predicted: npt.NDArray[np.float64],
        n_samples: int,
        rng: np.random.Generator,
        *,
        spread: float = 1.0,
    ) -> npt.NDArray[np.float64]:
        """(n, n_samples) draws ``predicted + residual`` on the model scale.

        ``spread`` scales the residual of every draw above zero (a positive count):
        ``predicted + spread * residual``. Draws at or below zero (a zero count) stay as
        they are, so the probability of zero is the bootstrap's whatever the spread: scaling
        them too would turn the zeros of a unit predicted slightly above zero into fractions
        of a death (on real cm data that uncovered a third of the zero outcomes).
        """
        predicted = np.asarray(predicted, dtype=np.float64)
        member = np.searchsorted(self.edges, predicted, side="left")
        pick = rng.integers(0, self.table.shape[1], size=(len(predicted), n_samples))
        residual = self.table[member[:, None], pick]
        draws = predicted[:, None] + residual
        if spread != 1.0:
            draws = np.where(draws > 0, predicted[:, None] + spread * residual, draws)
        return draws


def bootstrap_history(
    values: npt.NDArray[np.float64],
    group: npt.NDArray[np.int64],
    n_groups: int,
    n_samples: int,
    rng: np.random.Generator,
    *,
    groups: slice | None = None,
) -> npt.NDArray[np.float64]:
    """(n_groups, n_samples) draws with replacement from each group's own values.

    Args:
        values: observed values, any order (sorted by group is cheapest).
        group: the group (entity index 0..n_groups-1) of each value.
        n_groups: number of groups; every group must have at least one value.
        n_samples: draws per group.
        rng: the generator to draw from.
        groups: draw for these groups only (a unit block): (len(groups), n_samples).
    """
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    part = slice(0, n_groups) if groups is None else groups
    counts, starts = counts[part], starts[part]
    offset = np.floor(rng.random((len(counts), n_samples)) * counts[:, None]).astype(np.int64)
    return values[order[starts[:, None] + offset]]
