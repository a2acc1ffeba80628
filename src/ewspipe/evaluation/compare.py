"""Paired comparison of two forecasts of the same rows: metric deltas and a Diebold-Mariano test.

Two forecasts (A and B) are matched row by row on (origin, step, month_id, unit); rows only in
one of them are counted and reported, never scored against nothing. Both are then scored on
the common rows only, so the values, their difference and the test all speak about the same
rows (with no unmatched rows they equal each forecast's own evaluation).

The test is the Diebold-Mariano test of equal expected loss on the per-row loss differences
``d = loss_B - loss_A`` (the metric's per-row term: squared log error for MSLE and RMSLE,
squared error for MSE, absolute error for MAE, the row's CRPS, ...). Rows of one period are
not independent, and neither are consecutive periods (one origin predicts 36 consecutive
months), so:

1. the differences are averaged per period (target month by default, or origin) into a time
   series ``d_1 .. d_T``; its mean is therefore exactly the difference (B - A) of the
   month-wise (or sequence-wise) mean of the metric's per-row term;
2. the variance of its mean is a Newey-West (Bartlett kernel) HAC estimate
   ``(gamma_0 + 2 sum_{j=1..L} (1 - j/(L+1)) gamma_j) / T`` with autocovariances
   ``gamma_j = (1/T) sum_t (d_t - d_bar)(d_{t-j} - d_bar)``; it is never negative.
   The default lag is ``L = floor(T^(1/3))`` (3 for the 48 target months of a rolling-origin
   window, 2 for its 13 origins). The textbook DM lag h - 1 = 35 is not usable here: it would
   need far more periods than the 48 a test window holds;
3. the statistic gets the Harvey-Leybourne-Newbold (1997) small-sample factor
   ``sqrt((T + 1 - 2h + h(h - 1)/T) / T)`` with ``h = L + 1`` and is compared with a t
   distribution with T - 1 degrees of freedom (two-sided), as ``forecast::dm.test`` does with
   ``varestimator = "bartlett"``.

Signs: every difference is B - A. Losses are "lower is better", so a negative mean difference
means B has the lower loss; the verdict says it in words ("B better", "A better", "no
significant difference" at ``alpha``, default 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.arrays import Floats
from ewspipe.errors import InputError
from ewspipe.evaluation.metrics import Metric, accumulate, get_metric
from ewspipe.evaluation.schemes import SCHEMES, Evaluation, PointSource, Scored, evaluate

__all__ = [
    "LOSS_METRICS",
    "Comparison",
    "DMResult",
    "PairedValue",
    "TimeIndex",
    "compare_forecasts",
    "default_lag",
    "diebold_mariano",
    "hac_variance",
    "row_losses",
]

TimeIndex = Literal["month", "origin"]
Verdict = Literal["B better", "A better", "no significant difference"]

#: Metrics that are a mean of a per-row loss (lower is better), so a DM test applies to them.
#: RMSLE is tested on its per-row term, the squared log error (the same test as MSLE).
LOSS_METRICS = frozenset({"mse", "msle", "rmsle", "mae", "crps", "twcrps", "mis", "brier"})

_CHUNK = 1 << 16


# --- the test --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DMResult:
    """A Diebold-Mariano test of equal expected loss of A and B (differences are B - A).

    ``statistic`` is the HLN-corrected statistic, t distributed with ``df`` = T - 1 under the
    null; ``p_value`` is two-sided. ``mean_difference`` is the mean of the per-period mean
    loss differences (negative: B has the lower loss) and ``variance`` the HAC variance of that
    mean. ``correction`` is the HLN factor that multiplied the plain DM statistic.
    """

    statistic: float
    p_value: float
    mean_difference: float
    variance: float
    n_periods: int
    n_rows: int
    max_lag: int
    correction: float
    df: int
    alpha: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def default_lag(n_periods: int) -> int:
    """floor(T^(1/3)), computed in integers (floating cube roots of 64, 125, ... fall short)."""
    lag = round(n_periods ** (1.0 / 3.0))
    while lag**3 > n_periods:
        lag -= 1
    while (lag + 1) ** 3 <= n_periods:
        lag += 1
    return lag


def _as_1d(name: str, values: npt.ArrayLike) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"diebold_mariano: {name} must be 1-D, got shape {array.shape}")
    return array


def diebold_mariano(
    loss_a: npt.ArrayLike,
    loss_b: npt.ArrayLike,
    time_index: npt.ArrayLike,
    *,
    max_lag: int | None = None,
    alpha: float = 0.05,
) -> DMResult:
    """Test whether A and B have equal expected loss, robust to autocorrelation.

    Args:
        loss_a, loss_b: per-row losses of A and B on the same rows (lower is better).
        time_index: the period of each row (e.g. target month_id); the loss differences are
            averaged per period, in ascending period order, into the series that is tested.
        max_lag: HAC truncation lag L (default ``floor(T^(1/3))`` for T periods).
        alpha: significance level of the verdict (default 0.05).

    Returns:
        The HLN-corrected statistic, its two-sided p-value (t, T - 1 df), the mean difference
        (B - A), the HAC variance and a verdict. Identical losses give statistic 0 and p 1; a
        constant non-zero difference has zero variance and gives +-inf and p 0.

    Raises:
        InputError: mismatched or empty input, non-finite losses, fewer than 3 periods, a lag
            outside 0 .. T - 2 or so large that the HLN factor is not positive, bad alpha.
    """
    a = _as_1d("loss_a", loss_a).astype(np.float64)
    b = _as_1d("loss_b", loss_b).astype(np.float64)
    t = _as_1d("time_index", time_index)
    if not (a.shape == b.shape == t.shape):
        raise InputError(
            f"diebold_mariano: loss_a {a.shape}, loss_b {b.shape} and time_index {t.shape} "
            "must have the same length (one entry per matched row)"
        )
    if len(a) == 0:
        raise InputError("diebold_mariano: no rows to compare")
    bad = ~(np.isfinite(a) & np.isfinite(b))
    if bad.any():
        raise InputError(
            f"diebold_mariano: {int(bad.sum()):,} rows have a NaN or infinite loss (first at "
            f"row {int(np.argmax(bad))}); losses must be finite"
        )
    if not 0.0 < alpha < 1.0:
        raise InputError(f"diebold_mariano: alpha must be in (0, 1), got {alpha!r}",
                         parameter="alpha")

    _, period = np.unique(t, return_inverse=True)
    counts = np.bincount(period)
    series = np.bincount(period, weights=b - a) / counts
    n = len(series)
    if n < 3:
        raise InputError(
            f"diebold_mariano: the rows fall in {n} period(s); the test needs at least 3 "
            "(compare per target month rather than per origin, or more origins)"
        )
    lag = default_lag(n) if max_lag is None else int(max_lag)
    h = lag + 1
    factor_sq = (n + 1 - 2 * h + h * (h - 1) / n) / n
    if lag < 0 or lag > n - 2 or factor_sq <= 0:
        raise InputError(
            f"diebold_mariano: max_lag {lag} does not fit {n} periods; use 0 .. "
            f"{_largest_lag(n)} (default floor(T^(1/3)) = {default_lag(n)})",
            parameter="max_lag",
        )
    mean = float(series.mean())
    variance = hac_variance(series, lag)
    correction = float(np.sqrt(factor_sq))
    if variance > 0.0:
        statistic = mean / np.sqrt(variance) * correction
    else:  # every period has the same difference
        statistic = 0.0 if mean == 0.0 else float(np.copysign(np.inf, mean))
    from scipy import stats  # here: scipy.stats costs ~1 s of every CLI start

    p_value = float(2.0 * stats.t.sf(abs(statistic), df=n - 1))
    verdict: Verdict = "no significant difference"
    if p_value < alpha:
        verdict = "B better" if mean < 0 else "A better"
    return DMResult(
        statistic=float(statistic), p_value=p_value, mean_difference=mean,
        variance=variance, n_periods=n, n_rows=len(a), max_lag=lag, correction=correction,
        df=n - 1, alpha=alpha, verdict=verdict,
    )


def hac_variance(series: Floats, lag: int) -> float:
    """Newey-West variance of the mean of ``series``: Bartlett weights 1 - j/(lag + 1)."""
    n = len(series)
    dev = series - series.mean()
    total = float(dev @ dev) / n
    for j in range(1, lag + 1):
        total += 2.0 * (1.0 - j / (lag + 1)) * float(dev[j:] @ dev[:-j]) / n
    return max(total, 0.0) / n  # >= 0 in exact arithmetic; clip rounding below 0


def _largest_lag(n: int) -> int:
    lag = 0
    while lag + 1 <= n - 2 and (n + 1 - 2 * (lag + 2) + (lag + 2) * (lag + 1) / n) > 0:
        lag += 1
    return lag


# --- per-row losses --------------------------------------------------------------------------


def _loss_metric(metric: Metric) -> None:
    if metric.name not in LOSS_METRICS:
        raise InputError(
            f"{metric.label} is not a mean of per-row losses, so it has no Diebold-Mariano "
            f"test; use one of {', '.join(sorted(LOSS_METRICS))}"
        )


def row_losses(
    scored: Scored, metric: str | Metric, *, point_source: PointSource = "point"
) -> Floats:
    """The metric's per-row term for every row of ``scored`` (its mean is the metric).

    Computed by the metric engine itself (each row its own cell), so it cannot drift from the
    metric's definition. Raises ``InputError`` for metrics without a per-row loss.
    """
    m = get_metric(metric) if isinstance(metric, str) else metric
    _loss_metric(m)
    (term,) = m.terms()
    point = scored.point
    if m.input == "point" and point_source == "sample_mean":
        point = scored.samples.mean(axis=1)
    out = np.empty(len(scored))
    for lo in range(0, len(scored), _CHUNK):
        hi = min(lo + _CHUNK, len(scored))
        sums = accumulate([m], scored.actual[lo:hi], point[lo:hi], scored.samples[lo:hi],
                          np.arange(hi - lo, dtype=np.intp), hi - lo)
        out[lo:hi] = sums.sums[term]
    return out


# --- comparing two forecasts -----------------------------------------------------------------


@dataclass(frozen=True)
class PairedValue:
    """A metric value of A and of B, and ``delta`` = B - A (None where either is undefined)."""

    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, float | None]:
        return {"a": self.a, "b": self.b, "delta": self.delta}


@dataclass(frozen=True, eq=False)
class Comparison:
    """A and B on their common rows: values per scheme, the DM test, what was not matched.

    ``values`` has "pooled" and the mean of each scheme ("step", "month", "sequence");
    ``groups[scheme]`` has columns group, a, b, delta (nullable floats). ``dm`` is None when the
    metric has no per-row loss or the rows span too few periods; ``dm_reason`` then says why.
    """

    metric: str
    by: TimeIndex
    n_common: int
    n_only_a: int
    n_only_b: int
    n_actuals_differ: int
    values: dict[str, PairedValue]
    groups: dict[str, pd.DataFrame]
    dm: DMResult | None
    dm_reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> str:
        return self.dm.verdict if self.dm is not None else "not tested"

    def to_dict(self, *, groups: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "metric": self.metric,
            "by": self.by,
            "rows": {"common": self.n_common, "only_a": self.n_only_a,
                     "only_b": self.n_only_b, "actuals_differ": self.n_actuals_differ},
            "values": {k: v.to_dict() for k, v in self.values.items()},
            "dm": None if self.dm is None else self.dm.to_dict(),
            "dm_reason": self.dm_reason,
            "verdict": self.verdict,
            "notes": list(self.notes),
        }
        if groups:
            data["groups"] = {
                scheme: [
                    {"group": int(g), "a": _plain(a), "b": _plain(b), "delta": _plain(d)}
                    for g, a, b, d in zip(frame["group"].tolist(), frame["a"].tolist(),
                                          frame["b"].tolist(), frame["delta"].tolist(),
                                          strict=True)
                ]
                for scheme, frame in self.groups.items()
            }
        return data


def _plain(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def _row_keys(a: Scored, b: Scored) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One int64 code per row of (origin, step, unit), equal codes for equal rows in A and B.

    month_id = origin + step holds in every Scored (join_actuals checks it), so it adds no
    information to the key.
    """
    cols = [(np.concatenate([getattr(a, c), getattr(b, c)])) for c in ("origin", "step", "unit")]
    lows = [int(c.min()) for c in cols]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(cols, lows, strict=True)]
    if spans[0] * spans[1] * spans[2] < 2**62:
        code = np.zeros(len(cols[0]), dtype=np.int64)
        for c, lo, span in zip(cols, lows, spans, strict=True):
            code *= span
            code += c - lo
    else:  # implausible id ranges: let numpy number the distinct rows instead
        code = np.unique(np.column_stack(cols), axis=0, return_inverse=True)[1].astype(np.int64)
    return code[: len(a)], code[len(a):]

def _unique_keys(keys: npt.NDArray[np.int64], side: str) -> None:
    ordered = np.sort(keys)
    dup = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
    if dup:
        raise InputError(
            f"forecast {side}: {dup:,} duplicated (origin, step, unit) rows; a forecast has one "
            "prediction per origin, step and unit"
        )


def _take(scored: Scored, index: npt.NDArray[np.intp]) -> Scored:
    if len(index) == len(scored) and np.array_equal(index, np.arange(len(scored))):
        return scored  # every row, already in key order (forecasts are sorted so): no copy
    return Scored(
        origin=scored.origin[index], step=scored.step[index], month_id=scored.month_id[index],
        unit=scored.unit[index], actual=scored.actual[index], point=scored.point[index],
        samples=scored.samples[index],
    )


def _paired_groups(ev_a: Evaluation, ev_b: Evaluation, scheme: str) -> pd.DataFrame:
    a = ev_a.groups[scheme][["group", "value"]].rename(columns={"value": "a"})
    b = ev_b.groups[scheme][["group", "value"]].rename(columns={"value": "b"})
    both = a.merge(b, on="group", how="outer", sort=True)
    both["delta"] = both["b"] - both["a"]
    return both.reset_index(drop=True)


def compare_forecasts(
    a: Scored,
    b: Scored,
    *,
    metric: str | Metric = "msle",
    by: TimeIndex = "month",
    max_lag: int | None = None,
    alpha: float = 0.05,
    point_source: PointSource = "point",
) -> Comparison:
    """Compare forecast B with forecast A on the rows both predict.

    Args:
        a, b: rows with actuals (``join_actuals``), each scored against its own actuals.
        metric: a registry name or ``Metric``; values are reported for any metric, the DM test
            runs for the per-row losses in ``LOSS_METRICS``.
        by: the period the DM test aggregates rows into: "month" (target month, default) or
            "origin".
        max_lag: HAC lag (default ``floor(T^(1/3))``); alpha: the verdict's level.
        point_source: what point metrics score, as in ``evaluate``.

    Returns:
        A ``Comparison``: pooled value and scheme means of A and B with B - A, the per-group
        tables, the DM test, and the counts of rows only in A, only in B, and common rows
        whose actuals differ (A and B scored on different data snapshots).

    Raises:
        InputError: unknown metric or ``by``, duplicated rows, no row in common, invalid input
            for the metric.
    """
    if by not in ("month", "origin"):
        raise InputError(f"by must be 'month' or 'origin', got {by!r}")
    m = get_metric(metric) if isinstance(metric, str) else metric
    key_a, key_b = _row_keys(a, b)
    _unique_keys(key_a, "A")
    _unique_keys(key_b, "B")
    common, ia, ib = np.intersect1d(key_a, key_b, assume_unique=True, return_indices=True)
    if len(common) == 0:
        raise InputError(
            f"A ({len(a):,} rows) and B ({len(b):,} rows) share no (origin, step, month_id, "
            "unit) row: they forecast different origins, months or units"
        )
    a_c, b_c = _take(a, ia), _take(b, ib)
    n_differ = int(np.count_nonzero(a_c.actual != b_c.actual))
    notes: list[str] = []
    n_only_a, n_only_b = len(a) - len(common), len(b) - len(common)
    if n_only_a or n_only_b:
        notes.append(f"{n_only_a:,} rows only in A and {n_only_b:,} only in B are not "
                     f"compared; both are scored on the {len(common):,} common rows")
    if n_differ:
        notes.append(f"the actuals differ on {n_differ:,} common rows (different data "
                     "snapshots): each forecast is scored against its own actuals")

    ev_a = evaluate(a_c, [m], point_source=point_source)
    ev_b = evaluate(b_c, [m], point_source=point_source)
    label = m.label
    values = {"pooled": PairedValue(ev_a.pooled[label], ev_b.pooled[label])}
    for scheme in SCHEMES:
        values[scheme] = PairedValue(ev_a.means[scheme][label], ev_b.means[scheme][label])
    groups: dict[str, pd.DataFrame] = {s: _paired_groups(ev_a, ev_b, s) for s in SCHEMES}
    notes.extend(f"A: {n}" for n in ev_a.notes)
    notes.extend(f"B: {n}" for n in ev_b.notes)

    dm: DMResult | None = None
    reason: str | None = None
    if m.name not in LOSS_METRICS:
        reason = (f"{label} is not a mean of per-row losses; the DM test runs for "
                  f"{', '.join(sorted(LOSS_METRICS))}")
    else:
        loss_a = row_losses(a_c, m, point_source=point_source)
        loss_b = row_losses(b_c, m, point_source=point_source)
        period = a_c.month_id if by == "month" else a_c.origin
        try:
            dm = diebold_mariano(loss_a, loss_b, period, max_lag=max_lag, alpha=alpha)
        except InputError as exc:
            if max_lag is not None or not 0.0 < alpha < 1.0:
                raise  # the caller's own option is wrong: say so, do not hide it
            reason = str(exc)
    return Comparison(
        metric=label, by=by, n_common=len(common), n_only_a=n_only_a, n_only_b=n_only_b,
        n_actuals_differ=n_differ, values=values, groups=groups, dm=dm, dm_reason=reason,
        notes=tuple(notes),
    )
