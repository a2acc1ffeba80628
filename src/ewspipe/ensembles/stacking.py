"""Stacking: ensemble weights learned on several evaluation windows, shrunk toward equal.

The runs are scored by MSLE on raw counts, i.e. squared error of log1p values, so the
combination learned is the ``logmean`` aggregation: ``expm1(sum_m w_m log1p(p_m))``. The
weights minimise the squared log error pooled over the rows of every window, subject to
``w_m >= 0`` and ``sum w_m = 1`` (a least-squares problem on the simplex, solved exactly by
SLSQP on the members' M x M Gram matrix, so it is deterministic and cheap for any number of
rows). Weights fitted this way chase the windows they saw (two near-identical members can
swap all the weight between them from one window to the next), so they are shrunk toward
equal weights::

    w = (1 - s) * w_fit + s / M,    s in [0, 1] ("shrinkage"; 1 = the equal-weight logmean)

Each window's MSLE is reported for the shrunk weights and for equal weights, so a user sees
whether learning the weights paid on every window and not only pooled.

``combine = "mean"`` learns the weights of the count-space ``mean`` aggregation instead,
``sum_m w_m p_m``, by minimising the same pooled squared log error (SLSQP on the simplex
with its exact gradient). The two differ where members disagree by orders of magnitude: the
log mean of 576 and 1 deaths is 23, their mean 288. A count mean therefore follows the
member that expects the most violence, which is what held in 2013-2016, when learned
models expected the largest wars to end and persistence did not (docs/benchmarks.md).

Pure functions on arrays; :func:`window_rows` lines forecasts and actuals up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ewspipe.arrays import Floats
from ewspipe.ensembles.aggregate import align_members
from ewspipe.errors import InputError
from ewspipe.models.forecast import Forecast

__all__ = [
    "COMBINATIONS",
    "DEFAULT_SHRINKAGE",
    "Combine",
    "StackWindow",
    "Stacking",
    "WindowScore",
    "msle",
    "shrink",
    "stack",
    "window_rows",
]

#: The shrinkage used when an ensemble file does not set ``[stacking] shrinkage``.
DEFAULT_SHRINKAGE = 0.5
Combine = Literal["logmean", "mean"]
#: The aggregations whose weights can be learned: the log-scale and the count-space mean.
COMBINATIONS: tuple[Combine, ...] = ("logmean", "mean")


@dataclass(frozen=True)
class StackWindow:
    """One window's aligned rows: each member's point forecast and the actual counts
    (``unscored``: forecast rows left out for want of an actual, as evaluation does)."""

    points: Mapping[str, Floats]
    actual: Floats
    unscored: int = 0


@dataclass(frozen=True)
class WindowScore:
    """A window's MSLE with the stacked (shrunk) weights and with equal weights."""

    window: str
    rows: int
    stacked: float
    equal: float

    @property
    def gain(self) -> float:
        """Relative improvement of the stacked over the equal weights (> 0: stacking helps)."""
        return (self.equal - self.stacked) / self.equal if self.equal > 0 else 0.0


@dataclass(frozen=True)
class Stacking:
    """Learned weights (member order as given), before and after shrinkage, and the scores."""

    members: tuple[str, ...]
    fitted: Mapping[str, float]
    weights: Mapping[str, float]
    shrinkage: float
    scores: tuple[WindowScore, ...]
    pooled_stacked: float
    pooled_equal: float
    combine: Combine = "logmean"
    windows: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(s.window for s in self.scores))


def shrink(fitted: Floats, shrinkage: float) -> Floats:
    """``(1 - s) * fitted + s / M``; ``s`` must be in [0, 1]."""
    if not (isinstance(shrinkage, int | float) and 0.0 <= float(shrinkage) <= 1.0):
        raise InputError(f"shrinkage must be a number in [0, 1] (0: the fitted weights, 1: "
                         f"equal weights), got {shrinkage!r}")
    fitted = np.asarray(fitted, dtype=np.float64)
    return (1.0 - shrinkage) * fitted + shrinkage / len(fitted)


def _points(name: str, window: str, values: Floats, n: int) -> Floats:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(f"window {window!r}: member {name!r} has {arr.size:,} rows but the "
                         f"actuals have {n:,}; every member must forecast the window's rows")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"window {window!r}: member {name!r} has {bad:,} non-finite "
                         "forecasts; fix the member before stacking")
    return np.maximum(arr, 0.0)


def _design(windows: Mapping[str, StackWindow], members: list[str]
            ) -> dict[str, tuple[Floats, Floats]]:
    """Per window: (rows x members) points (counts, negatives as 0) and the log1p actuals,
    checked."""
    out = {}
    for window, data in windows.items():
        have = list(data.points)
        if sorted(have) != sorted(members):
            missing = [m for m in members if m not in have]
            extra = [m for m in have if m not in members]
            raise InputError(f"window {window!r}: members differ from the other windows "
                             f"(missing {missing}, extra {extra}); every window needs a "
                             "forecast of every member")
        actual = np.asarray(data.actual, dtype=np.float64)
        if actual.ndim != 1 or not np.isfinite(actual).all() or (actual < 0).any():
            raise InputError(f"window {window!r}: actuals must be one finite count >= 0 per row")
        if len(actual) == 0:
            raise InputError(f"window {window!r} has no rows to score")
        X = np.column_stack([_points(m, window, data.points[m], len(actual))
                             for m in members])
        out[window] = (X, np.log1p(actual))
    return out


def _minimise_on_simplex(loss: Callable[[Floats], float], grad: Callable[[Floats], Floats],
                         m: int, *, ftol: float) -> Floats:
    """SLSQP from equal weights under w >= 0, sum w = 1; deterministic for given inputs."""
    from scipy.optimize import minimize  # here: only stacking needs it, not every CLI start

    result = minimize(
        loss, np.full(m, 1.0 / m), jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * m,
        constraints=({"type": "eq", "fun": lambda w: float(w.sum() - 1.0),
                      "jac": lambda w: np.ones_like(w)},),
        options={"ftol": ftol, "maxiter": 500},
    )
    w = np.clip(np.asarray(result.x, dtype=np.float64), 0.0, None)
    return w / w.sum() if w.sum() > 0 else np.full(m, 1.0 / m)


def _simplex_least_squares(gram: Floats, cross: Floats) -> Floats:
    """argmin_w w'Gw - 2c'w on the simplex (G = X'X/n, c = X'y/n)."""
    m = len(cross)
    if m == 1:
        return np.ones(1)
    scale = max(float(np.abs(gram).max()), 1e-12)
    G, c = gram / scale, cross / scale

    def loss(w: Floats) -> float:
        return float(w @ G @ w - 2.0 * c @ w)

    def grad(w: Floats) -> Floats:
        return np.asarray(2.0 * (G @ w - c), dtype=np.float64)

    return _minimise_on_simplex(loss, grad, m, ftol=1e-14)


def _count_mean_fit(P: Floats, z: Floats) -> Floats:
    """argmin_w mean((log1p(P w) - z)^2) on the simplex (P: rows x members, counts >= 0)."""
    m = P.shape[1]
    if m == 1:
        return np.ones(1)

    def loss(w: Floats) -> float:
        return float(np.mean((np.log1p(P @ w) - z) ** 2))

    def grad(w: Floats) -> Floats:
        pw = P @ w
        r = (np.log1p(pw) - z) / (1.0 + pw)
        return np.asarray(2.0 * (P.T @ r) / len(z), dtype=np.float64)

    return _minimise_on_simplex(loss, grad, m, ftol=1e-12)


def msle(point: Floats, actual: Floats) -> float:
    """Mean squared log1p error of raw counts (a negative point counts as 0)."""
    diff = np.log1p(np.maximum(np.asarray(point, dtype=np.float64), 0.0)) - np.log1p(actual)
    return float(np.mean(diff ** 2))


def _combined_log(P: Floats, w: Floats, combine: Combine) -> Floats:
    """log1p of the combination of points ``P`` (rows x members) with weights ``w``."""
    if combine == "mean":
        return np.asarray(np.log1p(P @ w), dtype=np.float64)
    return np.asarray(np.log1p(P) @ w, dtype=np.float64)


def _msle(P: Floats, z: Floats, w: Floats, combine: Combine = "logmean") -> float:
    return float(np.mean((_combined_log(P, w, combine) - z) ** 2))


def stack(windows: Mapping[str, StackWindow], *, shrinkage: float = DEFAULT_SHRINKAGE,
          combine: Combine = "logmean") -> Stacking:
    """Learn the weights of the ``combine`` aggregation on the pooled rows of ``windows``
    and shrink them.

    Args:
        windows: window label -> its aligned member points and actuals (raw counts). Every
            window has the same members; member order is that of the first window.
        shrinkage: s in [0, 1]: weights = (1 - s) * fitted + s / M.
        combine: ``"logmean"`` (the default) or ``"mean"`` (count space).

    Returns:
        The fitted and shrunk weights (rounded to 6 decimals, summing to 1) and the MSLE of
        each window and of all rows pooled, for the shrunk and the equal weights.

    Raises:
        InputError: no windows, a bad shrinkage or combination, or a window whose members
            or row counts differ (naming the window and the member).
    """
    if combine not in COMBINATIONS:
        raise InputError(f"combine must be one of {', '.join(COMBINATIONS)} (the aggregation "
                         f"whose weights are learned), got {combine!r}")
    if not windows:
        raise InputError("stacking needs at least one window of member forecasts and actuals")
    members = list(next(iter(windows.values())).points)
    if not members:
        raise InputError("stacking needs at least one member")
    shrink(np.ones(len(members)), shrinkage)  # checks s before the work
    data = _design(windows, members)
    X_all = np.vstack([x for x, _ in data.values()])
    z_all = np.concatenate([z for _, z in data.values()])
    n = len(z_all)
    if combine == "mean":
        fitted = _count_mean_fit(X_all, z_all)
    else:
        L_all = np.log1p(X_all)
        fitted = _simplex_least_squares(L_all.T @ L_all / n, L_all.T @ z_all / n)
    weights = _rounded(shrink(fitted, shrinkage))
    equal = np.full(len(members), 1.0 / len(members))
    scores = tuple(
        WindowScore(window, len(z), _msle(X, z, weights, combine),
                    _msle(X, z, equal, combine))
        for window, (X, z) in data.items()
    )
    return Stacking(
        members=tuple(members),
        fitted=dict(zip(members, map(float, _rounded(fitted)), strict=True)),
        weights=dict(zip(members, map(float, weights), strict=True)),
        shrinkage=float(shrinkage), scores=scores,
        pooled_stacked=_msle(X_all, z_all, weights, combine),
        pooled_equal=_msle(X_all, z_all, equal, combine), combine=combine,
    )


def _rounded(w: Floats) -> Floats:
    """6 decimals (what a file shows), the largest absorbing the rest so they sum to 1."""
    out: Floats = np.asarray(np.round(np.asarray(w, dtype=np.float64), 6), dtype=np.float64)
    top = int(np.argmax(out))
    out[top] = round(1.0 - math.fsum(np.delete(out, top)), 6)
    return out


def window_rows(window: str, members: Mapping[str, Forecast], actuals: pd.DataFrame
                ) -> StackWindow:
    """Line up one window's member forecasts (by row key) and its actual counts; rows
    without an actual (a unit absent from the data that month, e.g. a country that ceased to
    exist) are left out and counted, as evaluation leaves them unscored.

    Args:
        window: the window's label (named in errors).
        members: member -> its forecast of the window.
        actuals: columns ``month_id``, the members' unit column and ``value`` (raw counts).

    Raises:
        InputError: members covering different rows (naming the window and the member, see
            :func:`~ewspipe.ensembles.aggregate.align_members`), repeated actuals, or no
            forecast row with an actual value.
    """
    try:
        aligned = align_members(members)
    except InputError as exc:
        raise InputError(f"window {window!r}: {exc}") from None
    first = next(iter(aligned.values()))
    keys = first.frame[["month_id", first.unit_column]].reset_index(drop=True)
    if actuals.duplicated(["month_id", first.unit_column]).any():
        raise InputError(f"window {window!r}: the actuals repeat (month_id, "
                         f"{first.unit_column}) rows; give one value per month and unit")
    joined = keys.merge(actuals[["month_id", first.unit_column, "value"]],
                        on=["month_id", first.unit_column], how="left")
    scored = joined["value"].notna().to_numpy()
    if not scored.any():
        raise InputError(f"window {window!r}: none of its {len(scored):,} forecast rows has an "
                         "actual value; stack on windows whose test months are observed")
    return StackWindow({name: fc.point[scored] for name, fc in aligned.items()},
                       joined["value"].to_numpy(dtype=np.float64)[scored],
                       unscored=int((~scored).sum()))
