"""Turn a panel and a model's feature list into the :class:`Design` every forecaster consumes.

Features are computed once per canonical name on the panel's (month x unit) grid, shared between
the features that nest them (and evaluated next to each other), and freed as soon as no
remaining feature needs them; at most one feature per thread is computed ahead of the one being
stored. Each finished column is stored as compactly as is lossless
(:class:`~ewspipe.features.matrix.FeatureMatrix`): the 17 features of copper_mesh on the global
grid (66,205 cells x 443 months, ~29 M rows; 16 M rows from its training window on) take
1.4 GB instead of 2.1 GB, beside the panel and a few grids of 234 MB (benchmark
``global_models``).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd

from ewspipe.errors import SpecError
from ewspipe.features.design import Design, check_training_features
from ewspipe.features.expressions import Call, Column, Expr, check_expression, parse_features
from ewspipe.features.matrix import FeatureMatrix
from ewspipe.features.transforms import FloatGrid, Grid, get_transform
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.threads import available_threads

__all__ = ["build_design"]


def build_design(
    panel: Panel, target: str, features: Sequence[str], *, first_month: int | None = None,
    train_last: int | None = None,
) -> Design:
    """Compute ``features`` and the ``target`` on every row of ``panel``.

    Args:
        panel: a validated panel; its rows fix the design's rows (sorted by month, unit).
        target: a count column of the panel; ``y`` holds it as float64 raw counts.
        features: feature expressions (see :mod:`ewspipe.features.expressions`); a feature
            written twice, in any spelling, becomes one column named canonically.
        first_month: keep only the rows of this month and later (a model that reads no
            earlier row asks for this: see ``BaseForecaster.first_design_month``). Features
            are still computed on the whole history, so every kept value is the same as in
            the full design; only the copy into ``X`` is spared.
        train_last: the last month a model trained on this design may use; a feature
            missing (NaN) for every training row (months ``first_month`` .. train_last - 1)
            is then refused (see :func:`~ewspipe.features.design.check_training_features`).

    Returns:
        The design; ``X[i, j]`` is NaN where feature j is undefined at row i (e.g. a lag
        before the unit's first month). Every value at month t uses only months <= t.

    Raises:
        SpecError: the target is not a count column, or a feature cannot be parsed, uses a
            transform not valid at the panel's level, or a column the panel lacks; with
            ``train_last``, a feature missing for every training row.
    """
    frame = panel.frame
    counts = panel.spec.count_columns
    if target not in counts:
        what = "is not a count column" if target in frame.columns else "is not in the panel"
        raise SpecError(
            f"target {target!r} {what}; the {panel.level.value} panel's count columns are "
            f"{', '.join(counts)}. Fix: set target to one of them, or import a panel holding "
            f"{target!r}"
        )
    exprs = parse_features(features)
    for expr in exprs:
        check_expression(expr, level=panel.level, columns=frame.columns)

    start = 0 if first_month is None else int(
        np.searchsorted(frame[TIME_COLUMN].to_numpy(), first_month))
    columns: list[np.ndarray] = [np.empty(0)] * len(exprs)
    if exprs:  # a baseline's design has no features: no grid to build
        grid = Grid.from_panel(panel)
        for j, values in _evaluate(grid, exprs):
            columns[j] = FeatureMatrix.compact(grid.to_rows(values, start))
    X = FeatureMatrix(columns, len(frame) - start)
    design = Design(
        level=panel.level,
        unit_column=panel.unit_column,
        target=target,
        months=_rows_from(frame[TIME_COLUMN], start, np.int64),
        units=_rows_from(frame[panel.unit_column], start, np.int64),
        y=_rows_from(frame[target], start, np.float64),
        X=X,
        feature_names=tuple(e.name for e in exprs),
    )
    if train_last is not None:
        check_training_features(design, train_last=train_last, since=first_month)
    return design


def _rows_from(series: pd.Series, start: int, dtype: type) -> np.ndarray:
    """Panel rows ``start:`` of a column as a new ``dtype`` array: sliced before converting,
    so the rows a design drops are never converted (a column of the global pgm panel is
    ~29 M rows, 234 MB as int64)."""
    return series.iloc[start:].to_numpy(dtype, copy=True)


def _evaluate(grid: Grid, exprs: Sequence[Expr]) -> Iterator[tuple[int, FloatGrid]]:
    """Yield (column, grid values) per feature, in :func:`_evaluation_order`; shared nodes
    are computed once and dropped when their last user is done.

    Features are computed in the task's thread budget (kernels are numpy calls that release
    the GIL, and the page faults of their fresh grids are shared too); a node is computed by
    the first thread that needs it, the others wait for it, so every value is the same as in
    one thread.
    """
    uses: Counter[str] = Counter(e.name for e in exprs)
    seen: set[str] = set()
    for expr in exprs:
        for node in _unique_nodes(expr, seen):
            if isinstance(node, Call):
                uses.update(child.name for child in node.inputs)
    memo: dict[str, Future[FloatGrid]] = {}
    lock = threading.Lock()

    def release(node: Expr) -> None:
        with lock:
            uses[node.name] -= 1
            if uses[node.name] == 0:
                memo.pop(node.name, None)

    def value(node: Expr) -> FloatGrid:
        with lock:
            found = memo.get(node.name)
            if found is None:
                mine: Future[FloatGrid] = Future()
                memo[node.name] = mine
        if found is not None:
            return found.result()
        try:
            if isinstance(node, Column):
                out = grid.column(node.column)
            else:
                args = [value(child) for child in node.inputs]
                out = grid.mask(get_transform(node.transform)(grid, *args, *node.params))
                for child in node.inputs:
                    release(child)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        mine.set_result(out)
        return out

    def feature(j: int) -> FloatGrid:
        try:
            return value(exprs[j])
        except SpecError as exc:
            raise SpecError(f"feature {exprs[j].name!r}: {exc}") from exc

    order = _evaluation_order(exprs)
    threads = min(available_threads(), len(exprs))
    if threads <= 1:
        for j in order:
            yield j, feature(j)
            release(exprs[j])
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # at most ``threads`` features ahead of the one yielded: a finished grid waits for its
        # turn in memory, so running further ahead would pile up grids (234 MB each on the
        # global pgm panel) without finishing any sooner
        ahead: deque[Future[FloatGrid]] = deque()
        try:
            for i, j in enumerate(order):
                while len(ahead) < threads and i + len(ahead) < len(order):
                    ahead.append(pool.submit(feature, order[i + len(ahead)]))
                yield j, ahead.popleft().result()
                release(exprs[j])
        finally:  # on an error: stop the features not yet started
            pool.shutdown(wait=True, cancel_futures=True)


def _evaluation_order(exprs: Sequence[Expr]) -> list[int]:
    """Column order, except that the features sharing a computed node (not a bare column)
    with one just taken follow it at once: a shared grid (234 MB on the global pgm panel) is
    then freed after a few features rather than held until its last user's column comes up.
    Values do not depend on the order; only how long grids live does."""
    calls = [{node.name for node in _unique_nodes(e, set()) if isinstance(node, Call)}
             for e in exprs]
    order: list[int] = []
    taken: set[int] = set()
    for first in range(len(exprs)):
        queue = deque([first])
        while queue:
            j = queue.popleft()
            if j in taken:
                continue
            taken.add(j)
            order.append(j)
            queue.extend(k for k in range(len(exprs)) if k not in taken and calls[k] & calls[j])
    return order


def _unique_nodes(expr: Expr, seen: set[str]) -> Iterator[Expr]:
    """Nodes of ``expr`` not met before (each shared node counted once)."""
    if expr.name in seen:
        return
    seen.add(expr.name)
    if isinstance(expr, Call):
        for child in expr.inputs:
            yield from _unique_nodes(child, seen)
    yield expr
