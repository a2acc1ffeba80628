"""The design matrix every forecaster consumes: features and target of one panel.

Rows follow the panel: sorted by (month_id, unit), so one month's rows are contiguous.
The target holds raw counts; any log transform belongs inside a model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ewspipe.errors import SpecError
from ewspipe.features.matrix import FeatureMatrix
from ewspipe.panel.schema import Level

__all__ = ["Design", "check_training_features"]

_KEY_BASE = 1_000_000  # > largest unit id (priogrid_gid <= 259,200; country ids are small)
_SCAN_BLOCK = 1 << 14  # rows per block of all_missing


@dataclass(frozen=True, eq=False)
class Design:
    """Features ``X`` (n x k, float64) and target ``y`` (n, raw counts) of one panel.

    ``X`` is a :class:`~ewspipe.features.matrix.FeatureMatrix` (a float64 array given is
    converted): read it like an array, ``X[rows]``, ``X[rows, cols]``. ``months`` and
    ``units`` identify each row. Rows are sorted by (month, unit); months of a
    unit are contiguous (the panel guarantees it). ``X`` may hold NaN where a feature is not
    yet defined (e.g. a 12-month sum in a unit's first months); learners must cope.
    """

    level: Level
    unit_column: str
    target: str
    months: npt.NDArray[np.int64]
    units: npt.NDArray[np.int64]
    y: npt.NDArray[np.float64]
    X: FeatureMatrix
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.X, FeatureMatrix):
            object.__setattr__(self, "X", FeatureMatrix.from_array(self.X))
        n = len(self.months)
        if not (len(self.units) == len(self.y) == self.X.shape[0] == n):
            raise ValueError("Design arrays must have the same number of rows")
        if self.X.shape[1] != len(self.feature_names):
            raise ValueError("X has a different number of columns than feature_names")

    def __len__(self) -> int:
        return len(self.months)

    @property
    def first_month(self) -> int:
        return int(self.months[0])

    @property
    def last_month(self) -> int:
        return int(self.months[-1])

    def month_rows(self, month_id: int) -> slice:
        """The contiguous rows of one month (empty slice when absent)."""
        lo, hi = np.searchsorted(self.months, [month_id, month_id + 1])
        return slice(int(lo), int(hi))

    def keys(self) -> npt.NDArray[np.int64]:
        """Sorted (month, unit) keys for vectorised row look-ups with np.searchsorted."""
        return self.months * _KEY_BASE + self.units

    def find_rows(
        self, months: npt.ArrayLike, units: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Row index of each (month, unit) pair and whether it exists."""
        keys = self.keys()
        wanted = np.asarray(months, dtype=np.int64) * _KEY_BASE + np.asarray(units, np.int64)
        pos = np.searchsorted(keys, wanted)
        pos_c = np.minimum(pos, len(keys) - 1)
        found = (pos < len(keys)) & (keys[pos_c] == wanted)
        return pos_c, found

    def rows_ahead(
        self, step: int, lo: int = 0, hi: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """For rows ``lo:hi``, the row of the same unit ``step`` months later, if it exists.

        O(1) per row through a dense (month x unit) table of row numbers built once per
        Design: the stepshifter asks this for every row and each of its 36 steps.
        """
        hi = len(self) if hi is None else hi
        width = self._width
        if width:  # every month holds every unit, in one order: the row is step * width on
            rows = np.arange(lo, hi, dtype=np.int64) + step * width
            found = (rows >= 0) & (rows < len(self))
            return np.where(found, rows, 0), found
        grid, unit_pos = self._row_grid
        m = self.months[lo:hi] - self.first_month + step
        ok = (m >= 0) & (m < grid.shape[0])
        rows = np.full(m.shape, -1, dtype=np.int64)
        rows[ok] = grid[m[ok], unit_pos[lo:hi][ok]]
        found = rows >= 0
        return np.where(found, rows, 0), found

    @functools.cached_property
    def _width(self) -> int:
        """Units per month when the design is a full rectangle (each month the same units in
        the same order, as the full pgm panel), else 0."""
        n = len(self)
        if n == 0:
            return 0
        width = int(np.searchsorted(self.months, self.first_month, side="right"))
        if n % width:
            return 0
        months = self.months.reshape(-1, width)
        units = self.units.reshape(-1, width)
        steps = np.arange(months.shape[0], dtype=np.int64) + self.first_month
        if not ((months == steps[:, None]).all() and (units == units[0]).all()):
            return 0
        return width

    @functools.cached_property
    def _row_grid(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        unit_ids, unit_pos = np.unique(self.units, return_inverse=True)
        n_months = self.last_month - self.first_month + 1 if len(self) else 0
        grid = np.full((n_months, len(unit_ids)), -1, dtype=np.int64)
        grid[self.months - self.first_month, unit_pos] = np.arange(len(self), dtype=np.int64)
        return grid, unit_pos.astype(np.int64)

    def all_missing(self, *, before: int, since: int | None = None) -> tuple[str, ...]:
        """Features missing (NaN) in every row of months ``since`` (default: the first) to
        ``before - 1``: the feature rows of training pairs whose target is at most
        ``before``. A model trained on such a feature learns nothing from it and forecasts a
        constant, so fitting refuses it (see :func:`check_training_features`).

        Scans blocks of rows and stops once every feature has a value (the first block, for
        a typical design)."""
        lo = 0 if since is None else int(np.searchsorted(self.months, since, side="left"))
        hi = int(np.searchsorted(self.months, before, side="left"))
        if hi <= lo:  # no training rows at all: the fit's own checks say so
            return ()
        missing = np.ones(self.X.shape[1], dtype=bool)
        for start in range(lo, hi, _SCAN_BLOCK):
            if not missing.any():
                break
            block = self.X[start:min(start + _SCAN_BLOCK, hi), missing]
            found = ~np.isnan(block).all(axis=0)
            missing[np.flatnonzero(missing)[found]] = False
        return tuple(n for n, m in zip(self.feature_names, missing, strict=True) if m)

    def up_to(self, month_id: int) -> Design:
        """A copy holding only rows with month <= month_id (for causality checks)."""
        end = int(np.searchsorted(self.months, month_id, side="right"))
        return Design(
            self.level, self.unit_column, self.target, self.months[:end], self.units[:end],
            self.y[:end], self.X.head(end), self.feature_names,
        )


def check_training_features(design: Design, *, train_last: int, since: int | None = None,
                            model: str | None = None) -> None:
    """Refuse to train on a feature missing (NaN) for every training row (months ``since``
    .. ``train_last - 1``; step-1 targets lie a month later): the model would learn nothing
    from it and forecast a constant for every unit.

    Raises:
        SpecError: naming the model (when given), the features, the months and the fix.
    """
    missing = design.all_missing(before=train_last, since=since)
    if not missing:
        return
    first = design.first_month if since is None else max(since, design.first_month)
    who = f"model {model!r}: " if model else ""
    listed = ", ".join(repr(m) for m in missing)
    raise SpecError(
        f"{who}feature{'s' if len(missing) > 1 else ''} {listed} "
        f"{'are' if len(missing) > 1 else 'is'} missing (NaN) for every training row (months "
        f"{first}..{train_last - 1} of the {design.level.value} data); trained on it, the "
        "model would forecast the same value everywhere. Fix: shorten the feature's lags and "
        "windows so they fit the data's history, check that its columns hold values in those "
        "months, or remove it from the model file"
    )
