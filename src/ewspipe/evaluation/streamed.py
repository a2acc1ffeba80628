"""Scoring a forecast chunk by chunk: the draws are never all in memory, the scores are the
in-memory ones (``schemes.evaluate``) bit for bit.

A 13-origin pgm evaluation at S = 1,000 on the global grid is ~31 M rows and ~31 billion draws
(~250 GB as float64): far more than one machine holds. The draws are only needed row by row,
so they stream through the engine's :class:`~ewspipe.evaluation.metrics.Accumulator` chunk by
chunk. What the other metrics need is small and kept per row: the actual, the point (Pearson
shifts each cell by one of its own rows, known only once the cell is complete) and P(y > tau)
for AP / ROC AUC, about 30 bytes a row. A chunk is a :class:`~ewspipe.models.forecast.Forecast`
of whole rows in (origin, step, unit) order, e.g. from :func:`iter_chunks` or from a predict
path that samples chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ewspipe.arrays import Floats, Ints
from ewspipe.errors import InputError
from ewspipe.evaluation.metrics import (
    Accumulator,
    Metric,
    Totals,
    block_rows,
    pearson_refs,
)
from ewspipe.evaluation.schemes import (
    SCHEMES,
    Evaluation,
    PointSource,
    Scheme,
    cell_layout,
    check_options,
    join_actuals,
    nothing_to_score,
    resolve_metrics,
    summarise,
)
from ewspipe.models.forecast import Forecast

__all__ = ["DEFAULT_CHUNK_ROWS", "StreamedScorer", "iter_chunks", "score_streamed"]

DEFAULT_CHUNK_ROWS = 1 << 16
"""Rows per chunk of :func:`iter_chunks`: 65,536 rows x 1,000 draws = 0.5 GiB of float64."""


def iter_chunks(forecast: Forecast, rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Forecast]:
    """The forecast as consecutive chunks of whole (origin, step) blocks, each of at most
    ``rows`` rows unless one block alone is larger (then it is a chunk of its own). Chunks
    are views of the forecast's arrays: splitting costs no copy of the draws."""
    if rows < 1:
        raise InputError(f"chunk rows must be >= 1, got {rows}")
    n = len(forecast)
    if n == 0:
        return
    origin = forecast.frame["origin"].to_numpy()
    step = forecast.frame["step"].to_numpy()
    edges = np.flatnonzero((origin[1:] != origin[:-1]) | (step[1:] != step[:-1])) + 1
    lo = hi = 0
    for end in (*edges.tolist(), n):
        if end - lo > rows and hi > lo:
            yield _rows(forecast, lo, hi)
            lo = hi
        hi = end
    yield _rows(forecast, lo, n)


def _rows(forecast: Forecast, lo: int, hi: int) -> Forecast:
    return Forecast(frame=forecast.frame.iloc[lo:hi], point=forecast.point[lo:hi],
                    samples=forecast.samples[lo:hi], unit_column=forecast.unit_column)


class _ActualsByMonth:
    """The actuals sorted by month once, so each chunk joins only its months' rows."""

    def __init__(self, actuals: pd.DataFrame) -> None:
        if "month_id" not in actuals.columns:
            raise InputError(f"actuals: missing column month_id; got "
                             f"{', '.join(map(str, actuals.columns))}")
        month = actuals["month_id"].to_numpy()
        if len(month) > 1 and not bool(np.all(month[1:] >= month[:-1])):
            actuals = actuals.iloc[np.argsort(month, kind="stable")]
            month = actuals["month_id"].to_numpy()
        self.frame, self.month = actuals, month

    def window(self, chunk: Forecast) -> pd.DataFrame:
        months = chunk.frame["month_id"].to_numpy()
        lo = np.searchsorted(self.month, months.min(), side="left")
        hi = np.searchsorted(self.month, months.max(), side="right")
        return self.frame.iloc[lo:hi]


class StreamedScorer:
    """Scores fed chunk by chunk (:meth:`add`), then :meth:`result`: the ``Evaluation`` that
    ``evaluate(join_actuals(whole forecast, actuals), metrics, ...)`` returns, bit for bit, for
    any chunking of the same rows.

    Rows without an actual are counted per chunk (``n_unscored``, ``unscored_months``) as
    ``join_actuals`` does; actuals are checked per chunk window (NaN, negative, duplicated).
    """

    def __init__(self, actuals: pd.DataFrame, metrics: Sequence[str | Metric], *,
                 value_column: str = "value", schemes: Sequence[Scheme] = SCHEMES,
                 point_source: PointSource = "point") -> None:
        self.metrics = resolve_metrics(metrics)
        check_options(schemes, point_source)
        self.schemes, self.point_source, self.value_column = schemes, point_source, value_column
        self._actuals = _ActualsByMonth(actuals)
        self._point_users = [m for m in self.metrics if m.input == "point"]
        self._sample_users = [m for m in self.metrics if m.input == "samples"]
        self._draws: Accumulator | None = None
        self._block: int | None = None
        self._slots: dict[tuple[int, int], int] = {}
        self._actual: list[Floats] = []
        self._point: list[Floats] = []
        self._slot: list[Ints] = []
        self.n_scored = 0
        self.n_unscored = 0
        self._unscored_months: set[int] = set()

    def add(self, chunk: Forecast) -> None:
        """Score the next chunk: whole rows, after the previous chunk's rows."""
        if len(chunk) == 0:
            return
        scored = join_actuals(chunk, self._actuals.window(chunk),
                              value_column=self.value_column)
        self.n_unscored += scored.n_unscored
        self._unscored_months.update(scored.unscored_months)
        n = len(scored)
        if n == 0:
            return
        if self._block is None:
            self._block = block_rows(self.metrics, max(chunk.n_samples, 1))
            if self._sample_users:
                self._draws = Accumulator(self._sample_users, block=self._block)
        slot = self._slot_codes(scored.origin, scored.step)
        if self._draws is not None:
            self._draws.add(scored.actual, None, scored.samples, slot)
        self._actual.append(scored.actual.copy())
        self._slot.append(slot)
        if self._point_users:
            point = scored.point
            if self.point_source == "sample_mean":
                point = scored.samples.mean(axis=1)
            self._point.append(point.copy())
        self.n_scored += n

    def _slot_codes(self, origin: Ints, step: Ints) -> Ints:
        """A slot per (origin, step) cell, numbered as first seen (rows come in cell runs)."""
        n = len(origin)
        starts = np.flatnonzero((origin[1:] != origin[:-1]) | (step[1:] != step[:-1])) + 1
        starts = np.concatenate([[0], starts])
        slots = [self._slots.setdefault((int(origin[i]), int(step[i])), len(self._slots))
                 for i in starts.tolist()]
        return np.repeat(np.asarray(slots, dtype=np.int64), np.diff([*starts.tolist(), n]))

    def result(self) -> Evaluation:
        """The evaluation of every row fed.

        Raises:
            InputError: no row had an actual; NaN/inf or negative counts (the message names
                the metric and the number of rows, as ``evaluate`` does).
        """
        months = tuple(sorted(self._unscored_months))
        if self.n_scored == 0:
            raise nothing_to_score(self.n_unscored, months)
        assert self._block is not None
        actual = np.concatenate(self._actual)
        slot = np.concatenate(self._slot)
        self._actual, self._slot = [], []
        keys = np.array(list(self._slots), dtype=np.int64).reshape(-1, 2)
        first, max_step, n_cells = cell_layout(keys[:, 0], keys[:, 1])
        code_of_slot = (keys[:, 0] - first) * max_step + keys[:, 1] - 1
        cell = code_of_slot[slot]
        del slot
        parts: list[Totals] = []
        if self._point_users:
            point = np.concatenate(self._point)
            self._point = []
            pearson = any(t.kind in ("dx", "dy") for m in self._point_users for t in m.terms())
            refs = pearson_refs(point, actual, cell, n_cells) if pearson else None
            points = Accumulator(self._point_users, block=self._block, refs=refs,
                                 n_cells=n_cells)
            points.add(actual, point, None, cell)
            parts.append(points.close())
            del point
        if self._draws is not None:
            parts.append(_relaid(self._draws.close(), code_of_slot, n_cells))
        sums = _merged(parts).cell_sums(self.metrics, actual, cell)
        return summarise(self.metrics, sums, first_origin=first, max_step=max_step,
                         schemes=self.schemes, point_source=self.point_source,
                         n_scored=self.n_scored, n_unscored=self.n_unscored,
                         unscored_months=months)


def _relaid(totals: Totals, code_of_slot: Ints, n_cells: int) -> Totals:
    """Totals per slot moved to the cell codes of the in-memory layout."""
    k = len(code_of_slot)
    counts = np.zeros(n_cells, dtype=np.int64)
    counts[code_of_slot] = totals.counts[:k]
    sums = {}
    for term, values in totals.sums.items():
        sums[term] = np.zeros(n_cells)
        sums[term][code_of_slot] = values[:k]
    return Totals(counts, sums, totals.collected, None, totals.checks, totals.n)


def _merged(parts: list[Totals]) -> Totals:
    """One Totals of the point part and the draws part (same rows, same cells)."""
    base = parts[0]
    for other in parts[1:]:
        base.sums.update(other.sums)
        base.collected.update(other.collected)
        base.refs = base.refs if base.refs is not None else other.refs
        for key, count in other.checks.count.items():
            base.checks.count.setdefault(key, count)
            base.checks.first.setdefault(key, other.checks.first[key])
    return base


def score_streamed(chunks: Iterable[Forecast], actuals: pd.DataFrame,
                   metrics: Sequence[str | Metric], *, value_column: str = "value",
                   schemes: Sequence[Scheme] = SCHEMES,
                   point_source: PointSource = "point") -> Evaluation:
    """Score a forecast given as chunks (``Iterable[Forecast]``) in one pass; the result is
    ``evaluate(join_actuals(forecast, actuals), metrics, ...)`` for the whole forecast."""
    scorer = StreamedScorer(actuals, metrics, value_column=value_column, schemes=schemes,
                            point_source=point_source)
    for chunk in chunks:
        scorer.add(chunk)
    return scorer.result()
