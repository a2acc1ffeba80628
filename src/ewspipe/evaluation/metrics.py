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
    "TwCRPS",
    "YHatBar",
    "accumulate",
    "finish",
    "get_metric",
    "names",
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
        return (ordered[:, : s - half - 1 : -1] - ordered[:, :half]) @ weights

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
            "(ewspipe.evaluation.names())"
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


def accumulate(
    metrics: Sequence[Metric],
    actual: Floats,
    point: Floats | None,
    samples: Floats | None,
    cell: npt.NDArray[np.intp] | Ints | None = None,
    n_cells: int = 1,
) -> CellSums:
    """Sum every term the metrics need per cell, in row chunks (no rows x S x S intermediate).

    ``cell`` holds a code in 0 .. n_cells-1 per row (None: one cell). ``point`` is needed when
    a point metric is asked, ``samples`` (n, S) when a sample metric is.

    Raises:
        InputError: no rows; NaN/inf anywhere used; negative actuals; negative predictions for
            a log-scale metric. The message names the metrics and counts the rows.
    """
    n = int(actual.shape[0])
    if n == 0:
        raise InputError(
            f"{', '.join(m.label for m in metrics)}: no rows to score (0 rows); "
            "check that the forecast and the actuals overlap"
        )
    point_users = [m for m in metrics if m.input == "point"]
    sample_users = [m for m in metrics if m.input == "samples"]
    log_users = [m for m in point_users if m.log_scale]
    terms = list(dict.fromkeys(t for m in metrics for t in m.terms()))
    collected = list(dict.fromkeys(t for m in metrics for t in m.collected()))
    if (point_users and point is None) or (sample_users and samples is None):
        raise InputError("point or sample predictions missing for the metrics asked")
    if samples is not None and sample_users and samples.shape[1] == 0:
        raise InputError(
            f"{', '.join(m.label for m in sample_users)}: the forecast has 0 samples per row"
        )

    refs = None
    if any(t.kind in _REF_KINDS for t in terms):  # Pearson: one value of each cell to shift by
        assert point is not None  # Pearson is a point metric, checked just above
        if cell is None:
            refs = (point[:1].copy(), actual[:1].copy())
        else:
            refs = (np.zeros(n_cells), np.zeros(n_cells))
            refs[0][cell], refs[1][cell] = point, actual  # any row of a cell will do

    counts = np.zeros(n_cells, dtype=np.int64)
    sums = {t: np.zeros(n_cells) for t in terms}
    rows_of = {t: np.empty(n) for t in collected}
    checks = _Checks()
    if sample_users:
        assert samples is not None
        chunk = _sample_chunk_rows(samples.shape[1])
        ordered_buf = np.empty((min(chunk, n), samples.shape[1]))
        scratch_buf = np.empty_like(ordered_buf)
    else:
        chunk = POINT_CHUNK_ROWS

    with np.errstate(invalid="ignore"):  # only NaN/inf input gets here, and that raises below
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            y = actual[lo:hi]
            checks.add("actual_bad", ~np.isfinite(y), lo)
            checks.add("actual_neg", y < 0, lo)
            x = None
            if point_users:
                assert point is not None
                x = point[lo:hi]
                checks.add("point_bad", ~np.isfinite(x), lo)
                if log_users:
                    checks.add("point_neg", x < 0, lo)
            ordered = scratch = None
            if sample_users:
                assert samples is not None
                ordered, scratch = ordered_buf[: hi - lo], scratch_buf[: hi - lo]
                np.copyto(ordered, samples[lo:hi])
                ordered.sort(axis=1)  # NaN sorts last, -inf first: two columns tell finiteness
                checks.add("samples_bad",
                           ~(np.isfinite(ordered[:, 0]) & np.isfinite(ordered[:, -1])), lo)
            codes = None if cell is None else cell[lo:hi]
            rows = _Rows(y, x, ordered, scratch, codes, refs)
            if codes is None:
                counts[0] += hi - lo
            else:
                counts += np.bincount(codes, minlength=n_cells)
            for term in terms:
                values = _KERNELS[term.kind](rows, term.param)
                if codes is None:
                    sums[term][0] += values.sum()
                else:
                    sums[term] += np.bincount(codes, weights=values, minlength=n_cells)
            for term in collected:
                rows_of[term][lo:hi] = _KERNELS[term.kind](rows, term.param)

    _raise_bad_rows(checks, n, metrics, point_users, sample_users, log_users)
    keep = np.flatnonzero(counts)
    return CellSums(
        cells=keep,
        n=counts[keep],
        sums={t: v[keep] for t, v in sums.items()},
        refs=None if refs is None else (refs[0][keep], refs[1][keep]),
        collected=rows_of,
        actual=actual,
        row_cell=None if cell is None else np.asarray(cell, dtype=np.intp),
    )


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
