"""Step-, month- and sequence-wise evaluation (DOMAIN.md 2 and 5), plus the pooled value.

A forecast is first joined with the actuals; rows without an actual are counted and listed by
month, never dropped unseen (the data may end before the test window does). Scoring then makes
one pass over the rows, summing each metric's terms per (origin, step) cell with
``np.bincount``. Every scheme groups whole cells (step = s, month = origin + s, sequence =
origin), so all three schemes and the pooled value come from that one small table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.arrays import Floats, Ints
from ewspipe.errors import InputError
from ewspipe.evaluation.metrics import (
    CellSums,
    Grouping,
    Metric,
    accumulate,
    finish,
    get_metric,
    names,
)
from ewspipe.models.forecast import Forecast

__all__ = [
    "SCHEMES",
    "Evaluation",
    "PointSource",
    "Scheme",
    "Scored",
    "cell_layout",
    "check_options",
    "evaluate",
    "join_actuals",
    "nothing_to_score",
    "resolve_metrics",
    "summarise",
]

Scheme = Literal["step", "month", "sequence"]
PointSource = Literal["point", "sample_mean"]
SCHEMES: tuple[Scheme, ...] = ("step", "month", "sequence")
MAX_CELLS = 10_000_000  # (origin span) x (max step); beyond this the origins are not a protocol


@dataclass(frozen=True, eq=False)
class Scored:
    """Forecast rows that have an actual, aligned row by row; build it with ``join_actuals``.

    ``n_unscored`` forecast rows had no actual and are not in here; ``unscored_months`` are the
    target months they fall in, so a report can say why (e.g. data end before the window does).
    """

    origin: Ints
    step: Ints
    month_id: Ints
    unit: Ints
    actual: Floats
    point: Floats
    samples: Floats
    n_unscored: int = 0
    unscored_months: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.actual)
        names = ("origin", "step", "month_id", "unit", "actual", "point")
        shapes = {k: getattr(self, k).shape for k in names}
        aligned = all(s == (n,) for s in shapes.values())
        if not aligned or self.samples.ndim != 2 or self.samples.shape[0] != n:
            raise InputError(
                f"Scored arrays disagree in length: {shapes}, samples {self.samples.shape}"
            )

    def __len__(self) -> int:
        return len(self.actual)


def _int_column(frame: pd.DataFrame, column: str, source: str) -> Ints:
    series = frame[column]
    if not pd.api.types.is_integer_dtype(series.dtype):
        raise InputError(
            f"{source}: column '{column}' must hold integers, got dtype {series.dtype}"
        )
    return series.to_numpy(dtype=np.int64)


def _first_rows(mask: npt.NDArray[np.bool_], **columns: npt.NDArray[Any]) -> str:
    idx = np.flatnonzero(mask)[:3]
    return "; ".join(
        ", ".join(f"{k}={v[i].item()!r}" for k, v in columns.items()) for i in idx
    )


def join_actuals(
    forecast: Forecast, actuals: pd.DataFrame, *, value_column: str = "value"
) -> Scored:
    """Attach to every forecast row the actual of its (month_id, unit), if there is one.

    ``actuals`` has columns month_id, the forecast's unit column and ``value_column`` (raw
    counts). Rows without an actual are counted in ``Scored.n_unscored``.

    Raises:
        InputError: missing or non-integer key columns, step < 1 or month_id != origin + step in
            the forecast, NaN / negative / duplicated actuals (the message shows examples).
    """
    unit_column = forecast.unit_column
    missing = [c for c in ("month_id", unit_column, value_column) if c not in actuals.columns]
    if missing:
        raise InputError(
            f"actuals: missing column(s) {', '.join(missing)}; expected month_id, "
            f"{unit_column}, {value_column}; got {', '.join(map(str, actuals.columns))}"
        )
    frame = forecast.frame
    origin = _int_column(frame, "origin", "forecast")
    step = _int_column(frame, "step", "forecast")
    month = _int_column(frame, "month_id", "forecast")
    unit = _int_column(frame, unit_column, "forecast")
    bad = (step < 1) | (month != origin + step)
    if bad.any():
        raise InputError(
            f"forecast: {int(bad.sum()):,} rows have step < 1 or month_id != origin + step "
            f"(e.g. {_first_rows(bad, origin=origin, step=step, month_id=month)}); steps are "
            "1-based and step s predicts month origin + s"
        )
    a_month = _int_column(actuals, "month_id", "actuals")
    a_unit = _int_column(actuals, unit_column, "actuals")
    if not pd.api.types.is_numeric_dtype(actuals[value_column].dtype):
        raise InputError(f"actuals: column '{value_column}' must be numeric, got dtype "
                         f"{actuals[value_column].dtype}")
    a_value = actuals[value_column].to_numpy(dtype=np.float64, na_value=np.nan)
    if len(month) == 0:
        raise InputError("forecast has no rows: nothing to score")

    lo_month, hi_month = int(month.min()), int(month.max())
    window = (a_month >= lo_month) & (a_month <= hi_month)
    a_month, a_unit, a_value = a_month[window], a_unit[window], a_value[window]
    _check_actual_values(a_value, a_month, a_unit, unit_column, value_column)

    lo_unit = min(int(unit.min()), int(a_unit.min()) if len(a_unit) else int(unit.min()))
    hi_unit = max(int(unit.max()), int(a_unit.max()) if len(a_unit) else int(unit.max()))
    width = hi_unit - lo_unit + 1
    f_key = (month - lo_month) * width + (unit - lo_unit)
    a_key = (a_month - lo_month) * width + (a_unit - lo_unit)
    if not (len(a_key) < 2 or np.all(a_key[1:] > a_key[:-1])):
        order = np.argsort(a_key, kind="stable")
        a_key, a_value = a_key[order], a_value[order]
        a_month, a_unit = a_month[order], a_unit[order]
        dup = np.concatenate([[False], a_key[1:] == a_key[:-1]])
        if dup.any():
            raise InputError(
                f"actuals: {int(dup.sum()):,} duplicated (month_id, {unit_column}) rows (e.g. "
                f"{_first_rows(dup, month_id=a_month, **{unit_column: a_unit})}); each "
                "unit-month must have one actual"
            )
    pos = np.minimum(np.searchsorted(a_key, f_key), max(len(a_key) - 1, 0))
    found = a_key[pos] == f_key if len(a_key) else np.zeros(len(f_key), dtype=bool)
    n_unscored = int(len(found) - np.count_nonzero(found))
    take: slice | npt.NDArray[np.bool_] = slice(None) if n_unscored == 0 else found
    return Scored(
        origin=origin[take],
        step=step[take],
        month_id=month[take],
        unit=unit[take],
        actual=a_value[pos[take]],
        point=np.asarray(forecast.point, dtype=np.float64)[take],
        samples=np.asarray(forecast.samples, dtype=np.float64)[take],
        n_unscored=n_unscored,
        unscored_months=tuple(int(m) for m in np.unique(month[~found])),
    )


def _check_actual_values(
    value: Floats, month: Ints, unit: Ints, unit_column: str, value_column: str
) -> None:
    for bad, what, fix in (
        (np.isnan(value), "NaN", "drop rows that were not observed; forecast rows without an "
         "actual are then counted as unscored"),
        (value < 0, "negative values", "actuals are counts and must be >= 0"),
    ):
        if bad.any():
            raise InputError(
                f"actuals: column '{value_column}' has {what} in {int(bad.sum()):,} rows (e.g. "
                f"{_first_rows(bad, month_id=month, **{unit_column: unit})}); {fix}"
            )


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Scores of one forecast: pooled, per group of each scheme, and each scheme's mean.

    ``groups[scheme]`` has columns scheme, group (the step, month_id or origin), metric, value
    (nullable Float64), n (rows) and reason. A value is missing only when the metric is
    undefined for that group, and then ``reason`` says why; the mean of a scheme is missing if
    any of its groups is. ``notes`` lists every missing pooled value and mean.
    """

    metrics: tuple[str, ...]
    point_source: PointSource
    n_scored: int
    n_unscored: int
    unscored_months: tuple[int, ...]
    pooled: dict[str, float | None]
    means: dict[str, dict[str, float | None]]
    groups: dict[str, pd.DataFrame]
    notes: tuple[str, ...] = field(default=())

    def frame(self) -> pd.DataFrame:
        """All group rows of all schemes in one long table."""
        return pd.concat(list(self.groups.values()), ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (missing values as None)."""
        return {
            "metrics": list(self.metrics),
            "point_source": self.point_source,
            "n_scored": self.n_scored,
            "n_unscored": self.n_unscored,
            "unscored_months": list(self.unscored_months),
            "pooled": dict(self.pooled),
            "means": {k: dict(v) for k, v in self.means.items()},
            "groups": {
                scheme: [
                    {
                        "group": int(r.group),
                        "metric": r.metric,
                        "value": None if pd.isna(r.value) else float(r.value),
                        "n": int(r.n),
                        "reason": r.reason or None,
                    }
                    for r in df.itertuples(index=False)
                ]
                for scheme, df in self.groups.items()
            },
            "notes": list(self.notes),
        }


def resolve_metrics(metrics: Sequence[str | Metric]) -> list[Metric]:
    """Metric objects for names or objects; refuses none or one asked twice."""
    resolved = [get_metric(m) if isinstance(m, str) else m for m in metrics]
    if not resolved:
        raise InputError(f"no metrics asked; choose from {', '.join(names())}")
    labels = [m.label for m in resolved]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise InputError(f"metric(s) asked twice: {', '.join(twice)}")
    return resolved


def _cells(scored: Scored) -> tuple[Ints, int, int, int]:
    """Cell code per row, (origin - first origin) * max_step + step - 1, and the layout."""
    first, max_step, n_cells = cell_layout(scored.origin, scored.step)
    cell = (scored.origin - first) * max_step
    cell += scored.step
    cell -= 1
    return cell, n_cells, first, max_step


def cell_layout(origin: Ints, step: Ints) -> tuple[int, int, int]:
    """(first origin, max step, number of cells) of the (origin, step) cells of these rows.

    Raises:
        InputError: a step below 1, or origins too far apart for a rolling-origin protocol.
    """
    first, last = int(origin.min()), int(origin.max())
    max_step = int(step.max())
    if int(step.min()) < 1:
        raise InputError("steps must be >= 1; build Scored with join_actuals")
    n_cells = (last - first + 1) * max_step
    if n_cells > MAX_CELLS:
        raise InputError(
            f"origins {first}..{last} with steps up to {max_step} span {n_cells:,} cells; "
            "rolling-origin evaluation expects a few dozen origins"
        )
    return first, max_step, n_cells


def _grouping(keys: Ints) -> tuple[Ints, Grouping]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, Grouping(inverse.astype(np.intp), len(uniq))


def _nullable(values: Floats) -> pd.arrays.FloatingArray:
    missing = np.isnan(values)
    return pd.arrays.FloatingArray(np.where(missing, 0.0, values), missing)


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def evaluate(
    scored: Scored,
    metrics: Sequence[str | Metric],
    *,
    schemes: Sequence[Scheme] = SCHEMES,
    point_source: PointSource = "point",
) -> Evaluation:
    """Score every metric pooled and per group of each scheme, plus each scheme's mean.

    Args:
        scored: rows with actuals, from ``join_actuals``.
        metrics: registry names (``ewspipe.evaluation.names()``) or ``Metric`` objects.
        schemes: any of "step", "month", "sequence" (default: all three).
        point_source: what point metrics score: the forecast's point ("point", default) or
            the mean of its samples ("sample_mean").

    Raises:
        InputError: nothing to score, unknown metric or scheme, NaN/inf or negative counts
            (the message names the metric and the number of rows).
    """
    resolved = resolve_metrics(metrics)
    check_options(schemes, point_source)
    if len(scored) == 0:
        raise nothing_to_score(scored.n_unscored, scored.unscored_months)
    point = scored.point
    if point_source == "sample_mean" and any(m.input == "point" for m in resolved):
        point = scored.samples.mean(axis=1)

    cell, n_cells, first_origin, max_step = _cells(scored)
    sums = accumulate(resolved, scored.actual, point, scored.samples, cell, n_cells)
    return summarise(resolved, sums, first_origin=first_origin, max_step=max_step,
                     schemes=schemes, point_source=point_source, n_scored=len(scored),
                     n_unscored=scored.n_unscored, unscored_months=scored.unscored_months)


def check_options(schemes: Sequence[Scheme], point_source: PointSource) -> None:
    """Refuse an unknown scheme or point source (InputError)."""
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise InputError(f"unknown scheme(s) {unknown}; choose from {', '.join(SCHEMES)}")
    if point_source not in ("point", "sample_mean"):
        raise InputError(f"point_source must be 'point' or 'sample_mean', got {point_source!r}")


def nothing_to_score(n_unscored: int, unscored_months: tuple[int, ...]) -> InputError:
    return InputError(
        f"nothing to score: none of the {n_unscored:,} forecast rows has an actual "
        f"(target months without actuals: {_months_text(unscored_months)})"
    )


def summarise(
    resolved: Sequence[Metric], sums: CellSums, *, first_origin: int, max_step: int,
    schemes: Sequence[Scheme], point_source: PointSource, n_scored: int, n_unscored: int,
    unscored_months: tuple[int, ...],
) -> Evaluation:
    """The ``Evaluation`` of cell sums laid out by :func:`cell_layout`: pooled, per group of
    each scheme and each scheme's mean (shared by ``evaluate`` and the streamed scorer)."""
    cell_origin = first_origin + sums.cells // max_step
    cell_step = sums.cells % max_step + 1
    keys = {"step": cell_step, "month": cell_origin + cell_step, "sequence": cell_origin}

    notes: list[str] = []
    pooled: dict[str, float | None] = {}
    single = Grouping.single(len(sums.cells))
    for metric in resolved:
        value, reason = finish(metric, sums, single)
        pooled[metric.label] = _plain(value[0])
        if reason[0]:
            notes.append(f"{metric.label}, pooled: undefined, {reason[0]}")

    groups: dict[str, pd.DataFrame] = {}
    means: dict[str, dict[str, float | None]] = {}
    for scheme in schemes:
        groups[scheme], means[scheme] = _scheme_table(scheme, keys[scheme], resolved, sums,
                                                      notes)
    return Evaluation(
        metrics=tuple(m.label for m in resolved),
        point_source=point_source,
        n_scored=n_scored,
        n_unscored=n_unscored,
        unscored_months=unscored_months,
        pooled=pooled,
        means=means,
        groups=groups,
        notes=tuple(notes),
    )


def _scheme_table(
    scheme: str, cell_keys: Ints, metrics: Sequence[Metric], sums: CellSums, notes: list[str]
) -> tuple[pd.DataFrame, dict[str, float | None]]:
    labels, grouping = _grouping(cell_keys)
    n = grouping.add(sums.n).astype(np.int64)
    parts, means = [], {}
    for metric in metrics:
        value, reason = finish(metric, sums, grouping)
        parts.append(pd.DataFrame({
            "scheme": scheme,
            "group": labels,
            "metric": metric.label,
            "value": _nullable(value),
            "n": n,
            "reason": reason,
        }))
        undefined = [r for r in reason if r]
        if undefined:
            means[metric.label] = None
            notes.append(
                f"{metric.label}, {scheme}-wise mean: undefined, {len(undefined)} of "
                f"{grouping.size} groups have no value (e.g. {undefined[0]})"
            )
        else:
            means[metric.label] = float(value.mean())
    return pd.concat(parts, ignore_index=True), means


def _months_text(months: tuple[int, ...]) -> str:
    if not months:
        return "none"
    return f"{months[0]}..{months[-1]} ({len(months)} months)"
