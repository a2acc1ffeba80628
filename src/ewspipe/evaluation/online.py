"""Online evaluation: score stored monthly forecasts once their target months have actuals.

Pure functions over :class:`~ewspipe.models.forecast.Forecast` and
:class:`~ewspipe.evaluation.schemes.Scored`; :mod:`ewspipe.flows.online` does the reading,
storing and alerting. Every score comes from :func:`ewspipe.evaluation.schemes.evaluate` (or,
per (origin, step) cell, from the very same ``accumulate`` / ``finish`` engine), so an online
score equals an offline evaluation of the same forecasts bit for bit.

Stacking the forecasts of several monthly runs of one model gives one origin per run (the
run's last observed month), so step-wise scores are scores by lead time and month-wise
scores are scores by target month.

The alert rule (:func:`assess`), for a deployed model or ensemble and one loss metric (lower
is better):

* **window**: the last ``k`` target months (``[qa.online] window_months``) in which the model
  has scored rows; the model's score there is the metric over all its rows in those months
  (every lead time that predicted them).
* **baseline**: for each baseline of the same level and target, both are scored on the rows
  (origin, step, unit) they share in the window; the model is *worse than a baseline* when
  ``score > baseline_score * (1 + tolerance)``. The rule fires when it is worse than at least
  one baseline, i.e. worse than the best one.
* **band**: the model's own earlier rolling windows: every run of ``k`` consecutive scored
  months that ends before the current window starts (so the band never contains the months
  it judges). With at least ``min_windows`` of them, the band's upper edge is
  ``mean + band_sd * sd`` (sample sd, ddof 1) of their scores; the rule fires when the
  current score is above it. Fewer windows: the band is not measured (no alert).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ewspipe.arrays import Ints, Mask
from ewspipe.errors import InputError
from ewspipe.evaluation.metrics import Grouping, Metric, accumulate, finish, get_metric
from ewspipe.evaluation.schemes import Scored, evaluate
from ewspipe.models.forecast import Forecast

__all__ = [
    "Assessment",
    "Band",
    "BaselineCheck",
    "Pending",
    "assess",
    "band",
    "cell_scores",
    "common_rows",
    "pair_scores",
    "row_keys",
    "scored_months",
    "split_pending",
    "subset",
    "take",
    "window_score",
]


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Forecast rows whose target month is after the last month with actuals."""

    rows: int
    months: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        first, last = (self.months[0], self.months[-1]) if self.months else (None, None)
        return {"rows": self.rows, "months": len(self.months), "first": first, "last": last}


def take(forecast: Forecast, mask: Mask) -> Forecast:
    """The forecast's rows where ``mask`` holds, in their order."""
    return Forecast(
        frame=forecast.frame.loc[mask].reset_index(drop=True),
        point=forecast.point[mask],
        samples=forecast.samples[mask],
        unit_column=forecast.unit_column,
    )


def split_pending(forecast: Forecast, last_month: int) -> tuple[Forecast | None, Pending]:
    """(rows with target month <= ``last_month`` or None if there are none, the rest)."""
    month = forecast.frame["month_id"].to_numpy(dtype=np.int64)
    due = month <= last_month
    later = month[~due]
    pending = Pending(int(later.size), tuple(int(m) for m in np.unique(later)))
    if not due.any():
        return None, pending
    return (forecast if due.all() else take(forecast, due)), pending


def subset(scored: Scored, mask: Mask) -> Scored:
    """The scored rows where ``mask`` holds (no unscored rows: they are not in ``scored``)."""
    return Scored(
        origin=scored.origin[mask], step=scored.step[mask], month_id=scored.month_id[mask],
        unit=scored.unit[mask], actual=scored.actual[mask], point=scored.point[mask],
        samples=scored.samples[mask],
    )


def row_keys(scored: Scored) -> Ints:
    """One int64 per row identifying (origin, step, unit); equal rows of two models match."""
    unit = scored.unit
    if len(unit) and (int(unit.min()) < 0 or int(unit.max()) >= 1 << 32):
        raise InputError("unit ids must lie in 0 .. 2**32-1 to compare forecasts row by row")
    if len(unit) and (int(scored.step.max()) >= 1 << 8 or int(scored.origin.max()) >= 1 << 22
                      or int(scored.origin.min()) < 0):
        raise InputError("origins must lie in 0 .. 2**22-1 and steps below 256 to compare "
                         "forecasts row by row")
    return ((scored.origin << 8) | scored.step) << 32 | unit


def common_rows(a: Scored, b: Scored) -> tuple[Mask, Mask]:
    """Masks of the rows of ``a`` and of ``b`` whose (origin, step, unit) the other has."""
    ka, kb = row_keys(a), row_keys(b)
    return np.isin(ka, kb), np.isin(kb, ka)


# --- scores ----------------------------------------------------------------------------------


def cell_scores(scored: Scored, metrics: Sequence[str | Metric]) -> pd.DataFrame:
    """Every metric per (origin, step) cell: columns origin, step, month_id, metric, value
    (nullable), n, reason. The same engine as ``evaluate``, with one group per cell."""
    resolved = [get_metric(m) if isinstance(m, str) else m for m in metrics]
    if len(scored) == 0:
        raise InputError("nothing to score: no forecast row has an actual")
    first = int(scored.origin.min())
    max_step = int(scored.step.max())
    n_cells = (int(scored.origin.max()) - first + 1) * max_step
    cell = (scored.origin - first) * max_step + scored.step - 1
    sums = accumulate(resolved, scored.actual, scored.point, scored.samples, cell, n_cells)
    origin = first + sums.cells // max_step
    step = sums.cells % max_step + 1
    identity = Grouping(np.arange(len(sums.cells), dtype=np.intp), len(sums.cells))
    parts = []
    for metric in resolved:
        value, reason = finish(metric, sums, identity)
        missing = np.isnan(value)
        parts.append(pd.DataFrame({
            "origin": origin.astype(np.int64), "step": step.astype(np.int64),
            "month_id": (origin + step).astype(np.int64), "metric": metric.label,
            "value": pd.arrays.FloatingArray(np.where(missing, 0.0, value), missing),
            "n": sums.n.astype(np.int64), "reason": reason,
        }))
    return pd.concat(parts, ignore_index=True)


def window_score(scored: Scored, metric: str, months: Sequence[int]) -> tuple[float | None, int]:
    """(metric over the rows whose target month is in ``months``, their number)."""
    mask = np.isin(scored.month_id, np.asarray(months, dtype=np.int64))
    n = int(np.count_nonzero(mask))
    if n == 0:
        return None, 0
    chosen = scored if n == len(scored) else subset(scored, mask)
    return evaluate(chosen, [metric], schemes=()).pooled[get_metric(metric).label], n


def pair_scores(
    a: Scored, b: Scored, metric: str, months: Sequence[int] | None = None
) -> tuple[float | None, float | None, int]:
    """Scores of ``a`` and ``b`` on the rows both have (within ``months`` if given)."""
    ma, mb = common_rows(a, b)
    if months is not None:
        wanted = np.asarray(months, dtype=np.int64)
        ma &= np.isin(a.month_id, wanted)
        mb &= np.isin(b.month_id, wanted)
    n = int(np.count_nonzero(ma))
    if n == 0:
        return None, None, 0
    label = get_metric(metric).label
    va = evaluate(subset(a, ma), [metric], schemes=()).pooled[label]
    vb = evaluate(subset(b, mb), [metric], schemes=()).pooled[label]
    return va, vb, n


# --- the alert rule --------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The model's own history: scores of its earlier rolling windows."""

    windows: int
    mean: float | None
    sd: float | None
    upper: float | None
    measured: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def band(scores: Sequence[float], sd_mult: float, min_windows: int) -> Band:
    """mean + ``sd_mult`` * sd of ``scores`` (sample sd), if there are ``min_windows`` of them."""
    values = np.asarray([s for s in scores if s is not None and np.isfinite(s)], np.float64)
    if len(values) < max(min_windows, 2):
        return Band(len(values), None, None, None, False,
                    f"{len(values)} earlier windows, {max(min_windows, 2)} needed")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    return Band(len(values), mean, sd, mean + sd_mult * sd, True)


@dataclass(frozen=True)
class BaselineCheck:
    baseline: str
    rows: int
    model_score: float | None
    baseline_score: float | None
    worse: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Assessment:
    """The alert rule applied to one model (see the module docstring)."""

    model: str
    metric: str
    window: tuple[int, ...]
    score: float | None
    rows: int
    baselines: tuple[BaselineCheck, ...]
    best_baseline: str | None
    worse_than_baseline: bool
    band: Band
    beyond_band: bool
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "metric": self.metric,
            "window": {"months": list(self.window), "first": self.window[0] if self.window
                       else None, "last": self.window[-1] if self.window else None},
            "score": self.score, "rows": self.rows,
            "baselines": [b.to_dict() for b in self.baselines],
            "best_baseline": self.best_baseline,
            "worse_than_baseline": self.worse_than_baseline,
            "band": self.band.to_dict(), "beyond_band": self.beyond_band,
            "notes": list(self.notes),
        }


def scored_months(scored: Scored) -> list[int]:
    """The target months in which ``scored`` has rows, ascending."""
    return [int(m) for m in np.unique(scored.month_id)]

def assess(
    model: str,
    scored: Scored,
    baselines: Mapping[str, Scored],
    *,
    metric: str,
    window_months: int,
    tolerance: float = 0.0,
    band_sd: float = 2.0,
    band_min_windows: int = 6,
) -> Assessment:
    """Apply the alert rule (module docstring) to ``model``'s scored rows."""
    months = scored_months(scored)
    k = window_months
    window = tuple(months[-k:])
    score, rows = window_score(scored, metric, window)
    checks = []
    for name in sorted(baselines):
        mine, theirs, n = pair_scores(scored, baselines[name], metric, window)
        worse = (mine is not None and theirs is not None
                 and mine > theirs * (1.0 + tolerance))
        checks.append(BaselineCheck(name, n, mine, theirs, worse))
    measured = [c for c in checks if c.baseline_score is not None]
    best = min(measured, key=lambda c: (c.baseline_score, c.baseline)).baseline \
        if measured else None
    notes = []
    if not baselines:
        notes.append("no baseline of this level and target was scored: baseline rule not "
                     "applied")
    elif not measured:
        notes.append("no baseline shares rows with the model in the window")
    # earlier windows: k consecutive scored months ending before the current window starts
    earlier = months[: max(len(months) - k, 0)]
    history = [window_score(scored, metric, earlier[i - k + 1: i + 1])[0]
               for i in range(k - 1, len(earlier))]
    the_band = band([h for h in history if h is not None], band_sd, band_min_windows)
    beyond = bool(the_band.measured and score is not None and the_band.upper is not None
                  and score > the_band.upper)
    return Assessment(
        model=model, metric=metric, window=window, score=score, rows=rows,
        baselines=tuple(checks), best_baseline=best,
        worse_than_baseline=any(c.worse for c in checks), band=the_band, beyond_band=beyond,
        notes=tuple(notes),
    )
