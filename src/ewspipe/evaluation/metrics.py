"""Evaluation metrics (DOMAIN.md section 5, formulas of views-evaluation 2.0.0), selected by name.

Every metric is written as per-row *terms* that are summed per cell, then *finished* per group of
cells. That one shape lets ``schemes.evaluate`` score step-, month- and sequence-wise plus pooled
from a single pass of ``np.bincount`` over (origin, step) cells, and a direct call such as
``get_metric("mse")(actual, point)`` runs the same code with one cell, so the two cannot drift.

Inputs are raw counts; metrics that need a log scale apply ``log1p`` themselves (DOMAIN.md 1).

Decisions (also in the docstrings of the classes concerned):

* Non-finite input (NaN or inf in actuals or predictions) raises ``InputError`` naming the metrics
  and the number of rows: a metric never returns a silent NaN. Negative actuals raise too, and so
  do negative predictions for the log-scale metrics (clip them upstream, DOMAIN.md 4).
* A metric that is undefined for valid input (Pearson with a constant side, MCR with all-zero
  actuals, AP / ROC AUC with one class only) raises ``MetricUndefined`` (an ``InputError``) from a
  direct call; inside ``evaluate`` it becomes a missing value with the reason next to it.
* Interval bounds are sample quantiles with numpy's default method (``"linear"``, Hyndman & Fan
  type 7), read off the sorted samples; bit-compatible with ``np.quantile``.
* twCRPS uses the chaining function ``v(z) = max(z, threshold)``; default threshold 25 deaths.
* Point metrics take the point prediction; ``evaluate(point_source="sample_mean")`` feeds them the
  mean of the samples instead.
* The engine (``Accumulator``) takes rows part by part and sums them in fixed row blocks, so a
  forecast scored chunk by chunk (``evaluation.streamed``) gets the same bits as scored whole.
  Rows whose draws are all equal (most pgm rows: all zeros) skip the sort: closed forms that
  give the sorted-draws formula's very bits.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from itertools import pairwise
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from ewspipe.arrays import Floats, Ints
from ewspipe.errors import InputError

__all__ = [
    "CRPS",
    "MAE",
    "MCR",
    "MIS",
    "MSE",
    "MSLE",
    "RMSLE",
    "Accumulator",
    "AveragePrecision",
    "Brier",
    "CellSums",
    "Coverage",
    "Coverage50",
    "Coverage90",
    "Grouping",
    "Metric",
    "MetricUndefined",
    "Pearson",
    "PitCoverage50",
    "PitCoverage90",
    "RankMetric",
    "RocAuc",
    "Totals",
    "TwCRPS",
    "YHatBar",
    "accumulate",
    "block_rows",
    "finish",
    "get_metric",
    "names",
    "pearson_refs",
]

Input = Literal["point", "samples"]
Finished = tuple[Floats, list[str]]  # value per group (NaN where undefined), reason ("" if defined)

POINT_CHUNK_ROWS = 1 << 16  # about 0.5 MiB per float column: temporaries stay in cache
SAMPLE_CHUNK_BYTES = 1 << 21  # sorted copy of a chunk of samples, reused for every chunk


class MetricUndefined(InputError):
    """The metric has no value for this (valid) input, e.g. Pearson with constant predictions."""


# --- per-row terms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    """A per-row statistic, summed per cell; equal terms are computed once for all metrics."""

    kind: str
    param: float = 0.0


@dataclass(eq=False)
class _Rows:
    """One chunk of rows, with the derived arrays that several terms share computed once:
    actuals, point predictions, sorted samples, a scratch buffer, cell codes, references."""

    y: Floats
    _x: Floats | None
    _sorted: Floats | None
    _scratch: Floats | None
    cell: npt.NDArray[np.intp] | None
    _refs: tuple[Floats, Floats] | None
    block_pos: npt.NDArray[np.intp] | None = None  # these rows' places in their block, if a subset
    block_len: int = 0

    @property
    def x(self) -> Floats:
        assert self._x is not None  # the engine passes point rows whenever a point term is asked
        return self._x

    @property
    def sorted(self) -> Floats:
        assert self._sorted is not None
        return self._sorted

    @property
    def scratch(self) -> Floats:
        assert self._scratch is not None
        return self._scratch

    @cached_property
    def log_y(self) -> Floats:
        return np.log1p(self.y)

    @cached_property
    def log_x(self) -> Floats:
        return np.log1p(self.x)

    def spread(self, ordered: Floats) -> Floats:
        """1/(2 S^2) sum_ij |X_i - X_j| per row of sorted samples, in O(S).

        sum_ij |X_i - X_j| = 2 sum_k (2k - S - 1) x_(k); pairing k with S + 1 - k turns it into
        sum_k (S + 1 - 2k) (x_(S+1-k) - x_(k)) over k <= S/2: a sum of non-negative parts, so
        the result is never negative and exactly 0 for a constant row.
        """
        s = ordered.shape[1]
        half = s // 2
        if half == 0:
            return np.zeros(ordered.shape[0])
        weights = (s + 1.0 - 2.0 * np.arange(1, half + 1)) / (s * s)
        diff = ordered[:, : s - half - 1 : -1] - ordered[:, :half]
        if self.block_pos is None:
            return diff @ weights
        # BLAS gemv rounds a row differently by its place in the call: keep every row at its
        # place in the whole block (the constant rows' zeros add nothing), so the spread is
        # the same bits whether or not the block's constant rows took the fast path.
        whole = np.zeros((self.block_len, half))
        whole[self.block_pos] = diff
        return (whole @ weights)[self.block_pos]

    def _ref(self, side: int) -> Floats:
        assert self._refs is not None
        ref = self._refs[side]
        return ref[self.cell] if self.cell is not None else ref[:1]

    @cached_property
    def dx(self) -> Floats:
        return self.x - self._ref(0)

    @cached_property
    def dy(self) -> Floats:
        return self.y - self._ref(1)

    def quantile(self, q: float) -> Floats:
        """Row quantiles of the sorted samples, as ``np.quantile(method="linear")`` computes."""
        s = self.sorted
        virtual = (s.shape[1] - 1) * q
        below = math.floor(virtual)
        above = min(below + 1, s.shape[1] - 1)
        gamma = virtual - below
        a, b = s[:, below], s[:, above]
        diff = b - a
        if gamma >= 0.5:  # numpy's _lerp switches ends here for accuracy; so do we
            return b - diff * (1 - gamma)
        return a + diff * gamma

    def mean_abs_deviation(self, values: Floats, target: Floats) -> Floats:
        """mean_j |values_j - target| per row, using the scratch buffer."""
        buf = self.scratch
        np.subtract(values, target[:, None], out=buf)
        np.abs(buf, out=buf)
        return buf.mean(axis=1)


def _crps(rows: _Rows, _: float) -> Floats:
    return rows.mean_abs_deviation(rows.sorted, rows.y) - rows.spread(rows.sorted)


def _twcrps(rows: _Rows, threshold: float) -> Floats:
    # v(z) = max(z, t) is monotone, so the chained samples stay sorted.
    chained = np.maximum(rows.sorted, threshold)
    spread = rows.spread(chained)
    return rows.mean_abs_deviation(chained, np.maximum(rows.y, threshold)) - spread


def _interval_score(rows: _Rows, alpha: float) -> Floats:
    low, high = rows.quantile(alpha / 2), rows.quantile(1 - alpha / 2)
    y = rows.y
    below = np.where(y < low, low - y, 0.0)
    above = np.where(y > high, y - high, 0.0)
    return (high - low) + (2.0 / alpha) * (below + above)


def _covered(rows: _Rows, alpha: float) -> Floats:
    low, high = rows.quantile(alpha / 2), rows.quantile(1 - alpha / 2)
    return ((low <= rows.y) & (rows.y <= high)).astype(np.float64)


def _pit_covered(rows: _Rows, alpha: float) -> Floats:
    """P(alpha/2 <= U <= 1 - alpha/2) for the randomised PIT U ~ Uniform(F(y-), F(y))."""
    below = np.count_nonzero(rows.sorted < rows.y[:, None], axis=1) / rows.sorted.shape[1]
    upto = np.count_nonzero(rows.sorted <= rows.y[:, None], axis=1) / rows.sorted.shape[1]
    return _pit_inside(below, upto, alpha)


def _pit_inside(below: Floats, upto: Floats, alpha: float) -> Floats:
    """The PIT term from F(y-) (``below``) and F(y) (``upto``)."""
    lo, hi = alpha / 2, 1 - alpha / 2
    inside = np.clip(np.minimum(upto, hi) - np.maximum(below, lo), 0.0, None)
    width = upto - below
    tie = width > 0
    return np.where(tie, inside / np.where(tie, width, 1.0),
                    ((lo <= below) & (below <= hi)).astype(np.float64))


def _p_exceed(rows: _Rows, tau: float) -> Floats:
    return np.count_nonzero(rows.sorted > tau, axis=1) / rows.sorted.shape[1]

def _brier(rows: _Rows, tau: float) -> Floats:
    return (_p_exceed(rows, tau) - (rows.y > tau)) ** 2


def _sq(values: Floats) -> Floats:
    return values * values


_KERNELS: dict[str, Callable[[_Rows, float], Floats]] = {
    "sq_err": lambda r, _: _sq(r.y - r.x),
    "sq_log_err": lambda r, _: _sq(r.log_y - r.log_x),
    "abs_err": lambda r, _: np.abs(r.y - r.x),
    "x": lambda r, _: r.x,
    "y": lambda r, _: r.y,
    "dx": lambda r, _: r.dx,
    "dy": lambda r, _: r.dy,
    "dxx": lambda r, _: _sq(r.dx),
    "dyy": lambda r, _: _sq(r.dy),
    "dxy": lambda r, _: r.dx * r.dy,
    "crps": _crps,
    "twcrps": _twcrps,
    "interval_score": _interval_score,
    "covered": _covered,
    "pit_covered": _pit_covered,
    "brier": _brier,
    "p_exceed": _p_exceed,
}
_REF_KINDS = frozenset({"dx", "dy", "dxx", "dyy", "dxy"})


@dataclass(eq=False)
class _ConstRows:
    """Rows whose S draws all equal ``c`` (at pgm most rows: all zeros). Every sample term has
    a closed form here, with no sort and no pass over the draws, and it is the very value the
    sorted-draws formula gives: the spread is exactly 0, quantiles are c, counts 0 or S."""

    y: Floats
    c: Floats
    s: int

    def mean_of_copies(self, values: Floats) -> Floats:
        """mean_j v over S copies of v, bit for bit as the general path's row mean: a pairwise
        sum of S copies is not S * v in floating point, so each distinct v is averaged once.
        Integers below 2**53 / S are the exception (every partial sum is exact): they are
        their own mean, which is the usual case (counts)."""
        if len(values) and np.array_equal(values, np.floor(values)) and \
                float(np.abs(values).max()) * self.s < 2.0**53:
            return values.copy()
        uniq, inverse = np.unique(values, return_inverse=True)
        out = np.empty(len(uniq))
        step = _sample_chunk_rows(self.s)
        for lo in range(0, len(uniq), step):
            part = uniq[lo:lo + step]
            copies = np.empty((len(part), self.s))
            copies[:] = part[:, None]
            out[lo:lo + step] = copies.mean(axis=1)
        return out[inverse.reshape(-1)]


def _const_pit(rows: _ConstRows, alpha: float) -> Floats:
    return _pit_inside((rows.c < rows.y).astype(np.float64),
                       (rows.c <= rows.y).astype(np.float64), alpha)


def _const_interval(rows: _ConstRows, alpha: float) -> Floats:
    c, y = rows.c, rows.y
    below = np.where(y < c, c - y, 0.0)
    above = np.where(y > c, y - c, 0.0)
    return (c - c) + (2.0 / alpha) * (below + above)


def _const_p_exceed(rows: _ConstRows, tau: float) -> Floats:
    return (rows.c > tau).astype(np.float64)


_CONST_KERNELS: dict[str, Callable[[_ConstRows, float], Floats]] = {
    "crps": lambda r, _: r.mean_of_copies(np.abs(r.c - r.y)),
    "twcrps": lambda r, t: r.mean_of_copies(np.abs(np.maximum(r.c, t) - np.maximum(r.y, t))),
    "interval_score": _const_interval,
    "covered": lambda r, _: ((r.c <= r.y) & (r.y <= r.c)).astype(np.float64),
    "pit_covered": _const_pit,
    "brier": lambda r, tau: (_const_p_exceed(r, tau) - (r.y > tau)) ** 2,
    "p_exceed": _const_p_exceed,
}


# --- cells and groups ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellSums:
    """Term sums per non-empty cell, plus what rank metrics need row by row.

    ``cells`` are the cell codes that hold rows (ascending), ``n`` their row counts. ``refs`` are
    one prediction and one actual of each cell (Pearson's shift). ``collected`` holds per-row
    values of the terms that cannot be summed (AP, ROC AUC), with ``actual`` and ``row_cell``.
    """

    cells: Ints
    n: Ints
    sums: Mapping[_Term, Floats]
    refs: tuple[Floats, Floats] | None
    collected: Mapping[_Term, Floats]
    actual: Floats
    row_cell: npt.NDArray[np.intp] | None


@dataclass(frozen=True, eq=False)
class Grouping:
    """Which group (0 .. size-1) each non-empty cell of a ``CellSums`` belongs to."""

    index: npt.NDArray[np.intp]
    size: int

    @staticmethod
    def single(n_cells: int) -> Grouping:
        return Grouping(np.zeros(n_cells, dtype=np.intp), 1)

    def add(self, per_cell: npt.ArrayLike) -> Floats:
        return np.bincount(self.index, weights=np.asarray(per_cell, np.float64),
                           minlength=self.size)

    def all_equal(self, per_cell: Floats) -> npt.NDArray[np.bool_]:
        """Per group: do all its cells hold the same value?"""
        lo = np.full(self.size, np.inf)
        hi = np.full(self.size, -np.inf)
        np.minimum.at(lo, self.index, per_cell)
        np.maximum.at(hi, self.index, per_cell)
        return lo == hi


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric(ABC):
    """A named metric: which terms it sums per row and how it turns group sums into a value."""

    name: ClassVar[str]
    input: ClassVar[Input]
    summary: ClassVar[str]
    log_scale: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """The name, plus any non-default parameter: ``mis``, ``mis(alpha=0.1)``."""
        changed = [
            f"{f.name}={getattr(self, f.name):g}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"{self.name}({', '.join(changed)})" if changed else self.name

    def __post_init__(self) -> None:
        for f in fields(self):  # every parameter is an alpha or a finite number (tau, threshold)
            value = getattr(self, f.name)
            if f.name == "alpha":
                _validate_alpha(self, value)
            else:
                _validate_finite(self, f.name, value)

    def terms(self) -> tuple[_Term, ...]:
        return ()

    def collected(self) -> tuple[_Term, ...]:
        return ()

    @abstractmethod
    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        """Values per group from the cell sums; NaN only where the reason is non-empty."""

    def __call__(self, actual: npt.ArrayLike, prediction: npt.ArrayLike) -> float:
        """Score one set of rows: ``prediction`` is (n,) points or (n, S) samples, raw counts.

        Raises:
            InputError: empty or mismatched input, NaN/inf, negative counts.
            MetricUndefined: the metric has no value here (the message says why).
        """
        y = np.asarray(actual, dtype=np.float64)
        pred = np.asarray(prediction, dtype=np.float64)
        if y.ndim != 1:
            raise InputError(f"{self.label}: actuals must be 1-D (n,), got shape {y.shape}")
        if self.input == "point" and pred.ndim != 1:
            raise InputError(
                f"{self.label} takes point predictions of shape (n,), got {pred.shape}; for a "
                "sample forecast pass samples.mean(axis=1), or use "
                "evaluate(..., point_source='sample_mean')"
            )
        if pred.ndim == 1:
            pred = pred[:, None] if self.input == "samples" else pred
        elif pred.ndim != 2:
            raise InputError(f"{self.label}: predictions must be (n,) or (n, S), got {pred.shape}")
        if pred.shape[0] != y.shape[0]:
            raise InputError(
                f"{self.label}: {y.shape[0]} actuals but {pred.shape[0]} prediction rows; "
                "they must be aligned row by row"
            )
        point, samples = (pred, None) if self.input == "point" else (None, pred)
        sums = accumulate([self], y, point, samples)
        value, reason = finish(self, sums, Grouping.single(len(sums.cells)))
        if reason[0]:
            raise MetricUndefined(f"{self.label} is undefined here: {reason[0]}")
        return float(value[0])


def _validate_alpha(metric: Metric, alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InputError(f"{metric.name}: alpha must be in (0, 1), got {alpha!r}")


def _validate_finite(metric: Metric, name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InputError(f"{metric.name}: {name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class _MeanOfTerm(Metric):
    """Mean over rows of one per-row term."""

    kind: ClassVar[str]

    def _term(self) -> _Term:
        return _Term(self.kind, self._param())

    def _param(self) -> float:
        """The metric's one parameter (alpha, tau or threshold); 0.0 for a metric without."""
        own = fields(self)
        return float(getattr(self, own[0].name)) if own else 0.0

    def terms(self) -> tuple[_Term, ...]:
        return (self._term(),)

    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        value = groups.add(sums.sums[self._term()]) / groups.add(sums.n)
        return value, [""] * groups.size


@dataclass(frozen=True)
class MSE(_MeanOfTerm):
    """mean((y - x)^2)."""

    name = "mse"
    input = "point"
    summary = "mean squared error, raw counts"
    kind = "sq_err"


@dataclass(frozen=True)
class MSLE(_MeanOfTerm):
    """mean((log1p y - log1p x)^2); log1p applied here, inputs stay raw counts."""

    name = "msle"
    input = "point"
    summary = "mean squared error of log1p counts"
    log_scale = True
    kind = "sq_log_err"


@dataclass(frozen=True)
class RMSLE(MSLE):
    """sqrt(MSLE), of the pooled MSLE of each group (not a mean of per-row roots)."""

    name = "rmsle"
    summary = "root of the mean squared error of log1p counts"

    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        value, reason = super().finish(sums, groups)
        return np.sqrt(value), reason


@dataclass(frozen=True)
class MAE(_MeanOfTerm):
    """mean|y - x|."""

    name = "mae"
    input = "point"
    summary = "mean absolute error, raw counts"
    kind = "abs_err"


@dataclass(frozen=True)
class YHatBar(_MeanOfTerm):
    """mean(x): with MCR, shows whether a model predicts the right amount of violence at all."""

    name = "y_hat_bar"
    input = "point"
    summary = "mean prediction"
    kind = "x"


@dataclass(frozen=True)
class MCR(Metric):
    """mean(x) / mean(y); undefined (not inf) when every actual is 0."""

    name = "mcr"
    input = "point"
    summary = "mean calibration ratio mean(x) / mean(y)"

    def terms(self) -> tuple[_Term, ...]:
        return (_Term("x"), _Term("y"))

    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        sx, sy = groups.add(sums.sums[_Term("x")]), groups.add(sums.sums[_Term("y")])
        zero = sy == 0
        value = np.divide(sx, sy, out=np.full(groups.size, np.nan), where=~zero)
        why = "every actual is 0, so mean(x) / mean(y) has no value"
        return value, [why if z else "" for z in zero]


@dataclass(frozen=True)
class Pearson(Metric):
    """Pearson r of y and x, from per-cell moments combined exactly (Chan et al.).

    Each cell's values are shifted by one of its own values before summing, so a constant side
    sums to exactly 0 and "zero variance" is detected exactly rather than by a tolerance. With
    fewer than 2 rows or a constant side r is undefined: a reason, never a silent NaN.
    """

    name = "pearson"
    input = "point"
    summary = "Pearson correlation of actuals and predictions"

    def terms(self) -> tuple[_Term, ...]:
        return tuple(_Term(k) for k in ("dx", "dy", "dxx", "dyy", "dxy"))

    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        assert sums.refs is not None
        s = {k: sums.sums[_Term(k)] for k in ("dx", "dy", "dxx", "dyy", "dxy")}
        n = sums.n.astype(np.float64)
        ref_x, ref_y = sums.refs
        mean_x, mean_y = ref_x + s["dx"] / n, ref_y + s["dy"] / n
        n_g = groups.add(n)
        gmean_x = groups.add(n * mean_x) / n_g
        gmean_y = groups.add(n * mean_y) / n_g
        ex, ey = mean_x - gmean_x[groups.index], mean_y - gmean_y[groups.index]
        m2x = groups.add(s["dxx"] - s["dx"] ** 2 / n + n * ex * ex)
        m2y = groups.add(s["dyy"] - s["dy"] ** 2 / n + n * ey * ey)
        cov = groups.add(s["dxy"] - s["dx"] * s["dy"] / n + n * ex * ey)
        const_x = ~groups.add(s["dxx"] != 0).astype(bool) & groups.all_equal(ref_x)
        const_y = ~groups.add(s["dyy"] != 0).astype(bool) & groups.all_equal(ref_y)
        reasons = [
            "fewer than 2 rows" if k < 2
            else "predictions and actuals are both constant (zero variance)" if cx and cy
            else "predictions are constant (zero variance)" if cx
            else "actuals are constant (zero variance)" if cy
            else ""
            for k, cx, cy in zip(n_g, const_x, const_y, strict=True)
        ]
        tiny = (m2x <= 0) | (m2y <= 0)  # distinct values whose spread rounds away
        reasons = [r or ("variance vanishes in floating point" if t else "")
                   for r, t in zip(reasons, tiny, strict=True)]
        ok = np.array([not r for r in reasons])
        value = np.full(groups.size, np.nan)
        value[ok] = np.clip(cov[ok] / np.sqrt(m2x[ok] * m2y[ok]), -1.0, 1.0)
        return value, reasons


@dataclass(frozen=True)
class CRPS(_MeanOfTerm):
    """mean_j |X_j - y| - 1/(2 S^2) sum_ij |X_i - X_j|; the second term in O(S log S) per row.

    With sorted samples x_(1) <= ... <= x_(S), sum_ij |X_i - X_j| = 2 sum_k (2k - S - 1) x_(k),
    so no rows x S x S array exists. A point forecast (S = 1) gives CRPS = MAE.
    """

    name = "crps"
    input = "samples"
    summary = "continuous ranked probability score (sample estimator)"
    kind = "crps"


@dataclass(frozen=True)
class TwCRPS(_MeanOfTerm):
    """Threshold-weighted CRPS: the CRPS of v(X) against v(y) with v(z) = max(z, threshold).

    Equivalent to weighting the CRPS integral by 1{z > threshold}: only how the forecast spreads
    mass above the threshold counts. Default 25 deaths, the UCDP armed-conflict threshold taken
    per unit-month, so the score focuses on escalations; ``threshold=0`` gives CRPS on counts.
    """

    name = "twcrps"
    input = "samples"
    summary = "threshold-weighted CRPS, chaining v(z) = max(z, threshold)"
    kind = "twcrps"
    threshold: float = 25.0


@dataclass(frozen=True)
class MIS(_MeanOfTerm):
    """Mean interval score: (u - l) + (2/alpha)(l - y)[y < l] + (2/alpha)(y - u)[y > u].

    l and u are the alpha/2 and 1 - alpha/2 sample quantiles, numpy's default "linear" method.
    """

    name = "mis"
    input = "samples"
    summary = "mean interval score of the central (1 - alpha) sample interval"
    kind = "interval_score"
    alpha: float = 0.05


@dataclass(frozen=True)
class Coverage(_MeanOfTerm):
    """Share of rows with l <= y <= u, the same interval as MIS (alpha 0.05 by default).

    views-evaluation's own coverage default is alpha = 0.1; pass ``alpha=0.1`` to match it.
    """

    name = "coverage"
    input = "samples"
    summary = "share of actuals inside the central (1 - alpha) sample interval"
    kind = "covered"
    alpha: float = 0.05


@dataclass(frozen=True)
class Coverage50(Coverage):
    """Coverage of the central 50 % interval (quartiles of the samples): about 0.5 when the
    forecast is calibrated.

    Counts are discrete with many zeros, so both quantiles are often 0: an actual 0 inside
    [0, u] counts as covered (the bounds are inclusive), which puts the coverage of a zero-heavy
    panel above 0.5 for a forecast that is right about the zeros. Read it with the 90 % one.
    """

    name = "coverage_50"
    summary = "share of actuals inside the central 50 % sample interval (quartiles)"
    alpha: float = 0.5


@dataclass(frozen=True)
class Coverage90(Coverage):
    """Coverage of the central 90 % interval (5 % and 95 % sample quantiles); the same rules
    as :class:`Coverage50` (inclusive bounds, so a 0 in [0, u] is covered)."""

    name = "coverage_90"
    summary = "share of actuals inside the central 90 % sample interval (5 % - 95 %)"
    alpha: float = 0.1


@dataclass(frozen=True)
class PitCoverage50(_MeanOfTerm):
    """Expected share of randomised PIT values in [0.25, 0.75]: the calibration of the central
    50 % for counts.

    The PIT of an actual y under the samples' distribution F is drawn uniformly from
    [F(y-), F(y)] (Czado, Gneiting & Held 2009); the row scores the probability that it falls in
    the central 1 - alpha, exactly (no random draw). A calibrated forecast scores 1 - alpha
    even when most actuals and most samples are 0, where the interval coverage
    (``coverage_50``) is pushed towards 1 by the mass at zero.
    """

    name = "pit_coverage_50"
    input = "samples"
    summary = "expected share of randomised PIT values in the central 50 % (counts-calibrated)"
    kind = "pit_covered"
    alpha: float = 0.5


@dataclass(frozen=True)
class PitCoverage90(PitCoverage50):
    """As :class:`PitCoverage50` for the central 90 % (PIT values in [0.05, 0.95])."""

    name = "pit_coverage_90"
    summary = "expected share of randomised PIT values in the central 90 % (counts-calibrated)"
    alpha: float = 0.1


@dataclass(frozen=True)
class Brier(_MeanOfTerm):
    """mean((p - [y > tau])^2) with p = share of samples > tau (a point forecast: p is 0 or 1)."""

    name = "brier"
    input = "samples"
    summary = "Brier score of P(y > tau) from the samples"
    kind = "brier"
    tau: float = 0.0


@dataclass(frozen=True)
class RankMetric(Metric):
    """A classification metric on P(y > tau) that needs whole groups (sorted), not sums."""

    input = "samples"
    tau: float = 0.0

    def collected(self) -> tuple[_Term, ...]:
        return (_Term("p_exceed", float(self.tau)),)

    @abstractmethod
    def score(self, event: npt.NDArray[np.bool_], p: Floats) -> tuple[float, str]:
        """(value, "") or (nan, reason) for one group."""

    def finish(self, sums: CellSums, groups: Grouping) -> Finished:
        p = sums.collected[self.collected()[0]]
        event = sums.actual > self.tau
        if groups.size == 1:
            value, reason = self.score(event, p)
            return np.array([value]), [reason]
        assert sums.row_cell is not None
        lookup = np.zeros(int(sums.cells.max()) + 1, dtype=np.intp)
        lookup[sums.cells] = groups.index
        row_group = lookup[sums.row_cell]
        order = np.argsort(row_group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(row_group, minlength=groups.size))])
        out = [self.score(event[order[a:b]], p[order[a:b]]) for a, b in pairwise(bounds)]
        return np.array([v for v, _ in out]), [r for _, r in out]

def _one_class(event: npt.NDArray[np.bool_], tau: float) -> str:
    if event.all():
        return f"every actual is above {tau:g}: only one class"
    if not event.any():
        return f"no actual is above {tau:g}: only one class"
    return ""


@dataclass(frozen=True)
class AveragePrecision(RankMetric):
    """Average precision (sklearn) of P(y > tau); undefined without any actual above tau."""

    name = "ap"
    summary = "average precision of P(y > tau) from the samples"

    def score(self, event: npt.NDArray[np.bool_], p: Floats) -> tuple[float, str]:
        if not event.any():
            return math.nan, f"no actual is above {self.tau:g}, so precision has no positives"
        from sklearn.metrics import average_precision_score  # heavy import, only when used

        return float(average_precision_score(event, p)), ""


@dataclass(frozen=True)
class RocAuc(RankMetric):
    """ROC AUC (sklearn) of P(y > tau); undefined when the actuals hold one class only."""

    name = "roc_auc"
    summary = "area under the ROC curve of P(y > tau) from the samples"

    def score(self, event: npt.NDArray[np.bool_], p: Floats) -> tuple[float, str]:
        reason = _one_class(event, self.tau)
        if reason:
            return math.nan, reason
        from sklearn.metrics import roc_auc_score  # heavy import, only when used

        return float(roc_auc_score(event, p)), ""


_REGISTRY: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (MSE, MSLE, RMSLE, MAE, Pearson, MCR, YHatBar, CRPS, TwCRPS, MIS, Coverage,
                Coverage50, Coverage90, PitCoverage50, PitCoverage90, Brier, AveragePrecision,
                RocAuc)
}


def names() -> list[str]:
    """The registered metric names, sorted (the names TOML files and ``evaluate`` accept)."""
    return sorted(_REGISTRY)


def get_metric(name: str, **params: float) -> Metric:
    """The metric registered as ``name``, with non-default parameters if given.

    Raises:
        InputError: unknown name (the message lists the valid ones) or unknown parameter.
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"{name!r} is not a metric; valid names: {', '.join(names())} "
            "(ewspipe.evaluation.names())", parameter="metric"
        ) from None
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(
            f"metric {name!r} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(allowed) or 'none'}"
        )
    return cls(**params)


# --- the engine ------------------------------------------------------------------------------


def _bad_rows(
    what: str, users: Sequence[Metric], bad: int, n: int, first: int, fix: str
) -> InputError:
    labels = ", ".join(m.label for m in users)
    return InputError(
        f"{labels}: {bad:,} of {n:,} rows have {what} (first at row {first}); {fix}"
    )


class _Checks:
    """Counts invalid rows chunk by chunk, so the error can give the total and the first one."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.first: dict[str, int] = {}

    def add(self, key: str, mask: npt.NDArray[np.bool_], offset: int) -> None:
        bad = int(np.count_nonzero(mask))
        if bad:
            self.count[key] = self.count.get(key, 0) + bad
            self.first.setdefault(key, offset + int(np.argmax(mask)))


def _sample_chunk_rows(n_samples: int) -> int:
    return max(256, SAMPLE_CHUNK_BYTES // (8 * n_samples))


def block_rows(metrics: Sequence[Metric], n_samples: int) -> int:
    """Rows per block of the engine: term sums are added per cell block by block, so the block
    is part of the rounding, and every path that must agree bit for bit uses this one."""
    if any(m.input == "samples" for m in metrics):
        return _sample_chunk_rows(n_samples)
    return POINT_CHUNK_ROWS


def pearson_refs(
    point: Floats, actual: Floats, cell: npt.NDArray[np.intp] | Ints | None, n_cells: int
) -> tuple[Floats, Floats]:
    """One prediction and one actual of each cell (Pearson's shift), from all rows at once."""
    if cell is None:
        return point[:1].copy(), actual[:1].copy()
    refs = (np.zeros(n_cells), np.zeros(n_cells))
    refs[0][cell], refs[1][cell] = point, actual  # any row of a cell will do
    return refs


#: where in a row's draws (as a share of them) the probes compared with the first draw are:
#: with draws that are zero 70 % of the time, first == last alone leaves half of the rows as
#: candidates, eight probes ~6 %
_PROBES = (0.5, 0.11, 0.89, 0.27, 0.71, 0.37, 0.03)


@dataclass(eq=False)
class Totals:
    """Per-cell row counts and term sums of an ``Accumulator``, per-row collected values, and
    the invalid rows it counted; ``cell_sums`` checks them and keeps the non-empty cells."""

    counts: Ints
    sums: dict[_Term, Floats]
    collected: dict[_Term, Floats]
    refs: tuple[Floats, Floats] | None
    checks: _Checks
    n: int

    def cell_sums(
        self, metrics: Sequence[Metric], actual: Floats,
        row_cell: npt.NDArray[np.intp] | Ints | None,
    ) -> CellSums:
        """The ``CellSums`` of these totals; raises the first invalid input found."""
        point_users = [m for m in metrics if m.input == "point"]
        sample_users = [m for m in metrics if m.input == "samples"]
        log_users = [m for m in point_users if m.log_scale]
        _raise_bad_rows(self.checks, self.n, metrics, point_users, sample_users, log_users)
        keep = np.flatnonzero(self.counts)
        return CellSums(
            cells=keep,
            n=self.counts[keep],
            sums={t: v[keep] for t, v in self.sums.items()},
            refs=None if self.refs is None else (self.refs[0][keep], self.refs[1][keep]),
            collected=self.collected,
            actual=actual,
            row_cell=None if row_cell is None else np.asarray(row_cell, dtype=np.intp),
        )


class Accumulator:
    """Sums every term the metrics need per cell, fed rows part by part in row order: a whole
    forecast in one part, or its chunks one after the other (draws never all in memory).

    Rows are summed in blocks of ``block`` rows counted from the first row fed, whatever the
    parts (a part's tail waits for the next part), so any partition of the same rows gives
    the same bits. Cell codes (``cell``, None: one cell) may grow from part to part. Point
    metrics need ``refs`` (:func:`pearson_refs`) when Pearson is asked. Rows whose draws are
    all equal take a closed form instead of a sort (:class:`_ConstRows`), with equal bits.
    """

    def __init__(self, metrics: Sequence[Metric], *, block: int,
                 refs: tuple[Floats, Floats] | None = None, n_cells: int = 1) -> None:
        self.metrics = list(metrics)
        self.block = block
        self.refs = refs
        self._points = any(m.input == "point" for m in self.metrics)
        self._draws = any(m.input == "samples" for m in self.metrics)
        self._log = any(m.log_scale for m in self.metrics if m.input == "point")
        self.terms = list(dict.fromkeys(t for m in self.metrics for t in m.terms()))
        self.collect = list(dict.fromkeys(t for m in self.metrics for t in m.collected()))
        if any(t.kind in _REF_KINDS for t in self.terms) and refs is None:
            raise InputError("Pearson needs refs: pass pearson_refs(point, actual, ...)")
        self.counts = np.zeros(n_cells, dtype=np.int64)
        self.sums = {t: np.zeros(n_cells) for t in self.terms}
        self._collected: dict[_Term, list[Floats]] = {t: [] for t in self.collect}
        self.checks = _Checks()
        self.rows = 0
        self._width: int | None = None
        self._pending: list[tuple[Floats, Floats | None, Floats | None, Ints | None]] = []
        self._pending_rows = 0
        self._bufs: tuple[Floats, Floats] | None = None

    def add(self, actual: Floats, point: Floats | None, samples: Floats | None,
            cell: npt.NDArray[np.intp] | Ints | None = None) -> None:
        """Feed the next rows (in row order); ``cell`` codes per row, None for one cell."""
        n = int(actual.shape[0])
        if n == 0:
            return
        self._check_inputs(point, samples)
        if cell is not None and len(cell) and int(cell.max()) >= len(self.counts):
            self._grow(int(cell.max()) + 1)
        start = 0
        if self._pending_rows:
            start = min(self.block - self._pending_rows, n)
            self._keep(actual, point, samples, cell, 0, start)
            if self._pending_rows == self.block:
                self._flush()
        while n - start >= self.block:
            self._block(*_part(actual, point, samples, cell, start, start + self.block))
            start += self.block
        if start < n:
            self._keep(actual, point, samples, cell, start, n)

    def close(self) -> Totals:
        """Sum the last (partial) block and return the totals."""
        if self._pending_rows:
            self._flush()
        if self.rows == 0:
            raise InputError(
                f"{', '.join(m.label for m in self.metrics)}: no rows to score (0 rows); "
                "check that the forecast and the actuals overlap"
            )
        collected = {t: np.concatenate(v) for t, v in self._collected.items()}
        return Totals(self.counts, self.sums, collected, self.refs, self.checks, self.rows)

    def _check_inputs(self, point: Floats | None, samples: Floats | None) -> None:
        if (self._points and point is None) or (self._draws and samples is None):
            raise InputError("point or sample predictions missing for the metrics asked")
        if not self._draws:
            return
        assert samples is not None
        width = int(samples.shape[1])
        if width == 0:
            users = ", ".join(m.label for m in self.metrics if m.input == "samples")
            raise InputError(f"{users}: the forecast has 0 samples per row")
        if self._width is None:
            self._width = width
        elif width != self._width:
            raise InputError(f"rows come with {width} samples after rows with {self._width}; "
                             "every chunk of a forecast has the same number of samples")

    def _grow(self, n_cells: int) -> None:
        size = max(n_cells, 2 * len(self.counts))
        self.counts = np.concatenate([self.counts, np.zeros(size - len(self.counts), np.int64)])
        for t, v in self.sums.items():
            self.sums[t] = np.concatenate([v, np.zeros(size - len(v))])

    def _keep(self, actual: Floats, point: Floats | None, samples: Floats | None,
              cell: npt.NDArray[np.intp] | Ints | None, lo: int, hi: int) -> None:
        """Hold rows lo:hi (copied: the caller may reuse its arrays) for the next block."""
        y, x, draws, codes = _part(actual, point, samples, cell, lo, hi)
        self._pending.append((y.copy(), None if x is None else x.copy(),
                              None if draws is None else draws.copy(),
                              None if codes is None else codes.copy()))
        self._pending_rows += hi - lo

    def _flush(self) -> None:
        parts, self._pending, self._pending_rows = self._pending, [], 0
        y, x, draws, codes = parts[0]
        if len(parts) > 1:
            y = np.concatenate([p[0] for p in parts])
            x = None if x is None else np.concatenate([p[1] for p in parts if p[1] is not None])
            draws = None if draws is None else np.concatenate(
                [p[2] for p in parts if p[2] is not None])
            codes = None if codes is None else np.concatenate(
                [p[3] for p in parts if p[3] is not None])
        self._block(y, x, draws, codes)

    def _block(self, y: Floats, x: Floats | None, samples: Floats | None,
               codes: npt.NDArray[np.intp] | Ints | None) -> None:
        """Sum one block of rows into the cells (today's rounding: one bincount per block)."""
        lo, b = self.rows, int(y.shape[0])
        checks = self.checks
        with np.errstate(invalid="ignore"):  # only NaN/inf input gets here; that raises later
            checks.add("actual_bad", ~np.isfinite(y), lo)
            checks.add("actual_neg", y < 0, lo)
            if x is not None and self._points:
                checks.add("point_bad", ~np.isfinite(x), lo)
                if self._log:
                    checks.add("point_neg", x < 0, lo)
            rows = _Rows(y, x, None, None, None if codes is None else np.asarray(codes),
                         self.refs)
            draws = None
            if self._draws:
                assert samples is not None
                draws = self._draw_rows(y, samples, lo)
            if codes is None:
                self.counts[0] += b
            else:
                self.counts += np.bincount(codes, minlength=len(self.counts))
            for term in self.terms:
                values = self._values(term, rows, draws, b)
                if codes is None:
                    self.sums[term][0] += values.sum()
                else:
                    self.sums[term] += np.bincount(codes, weights=values,
                                                   minlength=len(self.counts))
            for term in self.collect:
                self._collected[term].append(self._values(term, rows, draws, b))
        self.rows += b

    def _draw_rows(self, y: Floats, samples: Floats, lo: int) -> tuple[
            _Rows | None, _ConstRows | None, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The block's rows split into sorted-draws rows and constant rows (closed form)."""
        b, width = samples.shape
        first = samples[:, 0]
        # first == last and a few probe draws (_PROBES) pick the candidates in O(1) a row,
        # so varying rows pay no extra pass. Only a block of mostly candidates takes the
        # closed form (two passes over it tell which are constant): in a block of mostly
        # varying rows, gathering the few constant ones out costs more than the sort it
        # saves, and the sorted formula gives the same bits for them.
        candidates = samples[:, -1] == first
        for j in dict.fromkeys(int(f * (width - 1)) for f in _PROBES):
            if 0 < j < width - 1:
                candidates &= samples[:, j] == first
        if 2 * int(np.count_nonzero(candidates)) >= b:
            const = candidates & (samples.min(axis=1) == first) & (samples.max(axis=1) == first)
        else:
            const = np.zeros(b, dtype=bool)
        bad = const & ~np.isfinite(first)  # a row holding NaN is never constant
        slow_idx = np.flatnonzero(~const)
        const_idx = np.flatnonzero(const)
        slow = fast = None
        if len(const_idx):
            fast = _ConstRows(y[const_idx], first[const_idx], samples.shape[1])
        if len(slow_idx):
            k = len(slow_idx)
            ordered, scratch = self._buffers(k, samples.shape[1])
            if k == b:
                np.copyto(ordered, samples)
            else:
                np.take(samples, slow_idx, axis=0, out=ordered)
            ordered.sort(axis=1)  # NaN sorts last, -inf first: two columns tell finiteness
            bad[slow_idx] = ~(np.isfinite(ordered[:, 0]) & np.isfinite(ordered[:, -1]))
            partial = k < b
            slow = _Rows(y[slow_idx] if partial else y, None, ordered, scratch, None, None,
                         slow_idx if partial else None, b)
        self.checks.add("samples_bad", bad, lo)
        return slow, fast, slow_idx, const_idx

    def _buffers(self, k: int, width: int) -> tuple[Floats, Floats]:
        """Sorted draws and scratch for k rows, reused from block to block."""
        if self._bufs is None or len(self._bufs[0]) < k:
            rows = min(self.block, max(k, 2 * (0 if self._bufs is None else len(self._bufs[0]))))
            self._bufs = (np.empty((rows, width)), np.empty((rows, width)))
        return self._bufs[0][:k], self._bufs[1][:k]

    @staticmethod
    def _values(term: _Term, rows: _Rows, draws: tuple[
            _Rows | None, _ConstRows | None, npt.NDArray[np.intp], npt.NDArray[np.intp]] | None,
                b: int) -> Floats:
        if term.kind not in _CONST_KERNELS:
            return _KERNELS[term.kind](rows, term.param)
        assert draws is not None
        slow, fast, slow_idx, const_idx = draws
        if fast is None:
            assert slow is not None
            return _KERNELS[term.kind](slow, term.param)
        if slow is None:
            return _CONST_KERNELS[term.kind](fast, term.param)
        out = np.empty(b)
        out[slow_idx] = _KERNELS[term.kind](slow, term.param)
        out[const_idx] = _CONST_KERNELS[term.kind](fast, term.param)
        return out


def _part(actual: Floats, point: Floats | None, samples: Floats | None,
          cell: npt.NDArray[np.intp] | Ints | None, lo: int, hi: int,
          ) -> tuple[Floats, Floats | None, Floats | None, npt.NDArray[np.intp] | Ints | None]:
    return (actual[lo:hi], None if point is None else point[lo:hi],
            None if samples is None else samples[lo:hi], None if cell is None else cell[lo:hi])


def accumulate(
    metrics: Sequence[Metric],
    actual: Floats,
    point: Floats | None,
    samples: Floats | None,
    cell: npt.NDArray[np.intp] | Ints | None = None,
    n_cells: int = 1,
) -> CellSums:
    """Sum every term the metrics need per cell, in row blocks (no rows x S x S intermediate).

    ``cell`` holds a code in 0 .. n_cells-1 per row (None: one cell). ``point`` is needed when
    a point metric is asked, ``samples`` (n, S) when a sample metric is. One
    :class:`Accumulator` fed all rows at once.

    Raises:
        InputError: no rows; NaN/inf anywhere used; negative actuals; negative predictions for
            a log-scale metric. The message names the metrics and counts the rows.
    """
    if int(actual.shape[0]) == 0:
        raise InputError(
            f"{', '.join(m.label for m in metrics)}: no rows to score (0 rows); "
            "check that the forecast and the actuals overlap"
        )
    refs = None
    if any(t.kind in _REF_KINDS for m in metrics for t in m.terms()):
        if point is None:
            raise InputError("point or sample predictions missing for the metrics asked")
        refs = pearson_refs(point, actual, cell, n_cells)
    width = 1 if samples is None else int(samples.shape[1])
    acc = Accumulator(metrics, block=block_rows(metrics, max(width, 1)), refs=refs,
                      n_cells=n_cells)
    acc.add(actual, point, samples, cell)
    return acc.close().cell_sums(metrics, actual, cell)


def _raise_bad_rows(
    checks: _Checks, n: int, metrics: Sequence[Metric], point_users: Sequence[Metric],
    sample_users: Sequence[Metric], log_users: Sequence[Metric],
) -> None:
    """The first problem found, as an InputError; NaN is never passed on as a score."""
    cases = [
        ("actual_bad", metrics, "a NaN or infinite actual",
         "actuals are observed counts; drop rows that were not observed instead"),
        ("actual_neg", metrics, "a negative actual", "actuals are counts and must be >= 0"),
        ("point_bad", point_users, "a NaN or infinite point prediction",
         "NaN/inf predictions are model errors (DOMAIN.md 4); fix the model output"),
        ("samples_bad", sample_users, "a NaN or infinite sample",
         "NaN/inf predictions are model errors (DOMAIN.md 4); fix the model output"),
        ("point_neg", log_users, "a negative point prediction",
         "log1p is applied inside these metrics and predictions are raw counts >= 0; clip "
         "negatives to 0 upstream (DOMAIN.md 4)"),
    ]
    for key, users, what, fix in cases:
        if key in checks.count:
            raise _bad_rows(what, users, checks.count[key], n, checks.first[key], fix)


def finish(metric: Metric, sums: CellSums, groups: Grouping) -> Finished:
    """``metric.finish`` with its contract checked: NaN only together with a reason."""
    value, reason = metric.finish(sums, groups)
    silent = np.isnan(value) & ~np.array([bool(r) for r in reason])
    if silent.any():  # a bug in a metric, never a user error
        raise RuntimeError(f"{metric.label} produced NaN without a reason in {silent.sum()} groups")
    return value, reason
