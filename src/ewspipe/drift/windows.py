"""The test and standard windows of a panel as one dense (month, unit, feature) array.

Drift detectors compare a *test* window (the last ``n`` months, default 1) with the *standard*
window (the ``m`` months before it, default 30). :func:`build_windows` cuts those months out
of a validated :class:`~ewspipe.panel.schema.Panel` once, into a float array with ``NaN``
wherever a value is missing, so every detector is a handful of vectorised reductions (the
13,110-cell pgm grid over 31 months is ~400,000 cells: milliseconds).

A unit-month counts as *missing* when the value is ``NaN``, and, in the test window, when a
unit that had a row in the last standard month (or in an earlier test month) has no row: a
country or cell dropping out of the feed is missingness, a new unit is not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import InputError
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import TIME_COLUMN, Panel

__all__ = ["Windows", "build_windows", "feature_columns"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# identifiers are never features: *_id, *_gid (country_id on pgm panels, priogrid_gid, ...)
_IDENTIFIER = re.compile(r"(^|_)(id|gid)$")


def feature_columns(panel: Panel, *, ignore: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns drift is checked on: the count columns plus other numeric covariates.

    Index columns, identifier-like columns (names ending in ``_id`` / ``_gid``), non-numeric
    columns and the ``ignore`` list (``[drift] ignore_columns``, default ``gwcode``) are left
    out. Count columns come first, in the panel's order.
    """
    skip = {TIME_COLUMN, panel.unit_column, *ignore}
    counts = [c for c in panel.spec.count_columns if c not in skip]
    others = [
        c for c in panel.frame.columns
        if c not in skip and c not in counts and not _IDENTIFIER.search(str(c))
        and pd.api.types.is_numeric_dtype(panel.frame[c])
        and not pd.api.types.is_bool_dtype(panel.frame[c])
    ]
    return (*counts, *others)


@dataclass(frozen=True)
class Windows:
    """Standard months followed by test months, over every unit seen in either window.

    Attributes:
        months: month_id of each time slice (standard first, then test), contiguous.
        units: unit ids (sorted) along axis 1.
        features: feature names along axis 2.
        values: ``(T, U, F)`` float array, ``NaN`` where the value is missing or the row absent.
        present: ``(T, U)`` True where the unit has a row that month.
        n_test: number of test months (the last ``n_test`` slices).
        unit_column: ``country_id`` or ``priogrid_gid``, used to name offenders.
        count_features: the features that are count columns of the panel.
    """

    months: IntArray
    units: IntArray
    features: tuple[str, ...]
    values: FloatArray
    present: BoolArray
    n_test: int
    unit_column: str
    count_features: tuple[str, ...] = ()

    @property
    def n_standard(self) -> int:
        return len(self.months) - self.n_test

    @property
    def test_months(self) -> IntArray:
        return self.months[self.n_standard:]

    @property
    def standard_months(self) -> IntArray:
        return self.months[: self.n_standard]

    @property
    def test(self) -> FloatArray:
        return self.values[self.n_standard:]

    @property
    def standard(self) -> FloatArray:
        return self.values[: self.n_standard]

    @property
    def expected_test(self) -> BoolArray:
        """``(n_test, U)``: unit-months that should have a row in the test window."""
        seen = self.present[self.n_standard - 1].copy()
        expected = np.empty((self.n_test, len(self.units)), dtype=bool)
        for i in range(self.n_test):
            seen |= self.present[self.n_standard + i]
            expected[i] = seen
        return expected

    @property
    def standard_present(self) -> BoolArray:
        return self.present[: self.n_standard]

    def with_values(self, values: FloatArray, present: BoolArray | None = None) -> Windows:
        """A copy with other values (used by the self-test to perturb the data)."""
        return Windows(
            months=self.months, units=self.units, features=self.features, values=values,
            present=self.present if present is None else present, n_test=self.n_test,
            unit_column=self.unit_column, count_features=self.count_features,
        )

    def describe(self) -> dict[str, object]:
        def span(months: IntArray) -> list[int]:
            return [int(months[0]), int(months[-1])]

        def label(months: IntArray) -> str:
            first, last = month_label(int(months[0])), month_label(int(months[-1]))
            return first if first == last else f"{first}..{last}"

        return {
            "test": span(self.test_months),
            "test_label": label(self.test_months),
            "standard": span(self.standard_months),
            "standard_label": label(self.standard_months),
            "standard_months": self.n_standard,
            "units": len(self.units),
            "features": list(self.features),
        }


def build_windows(
    panel: Panel,
    *,
    end: int | None = None,
    test_months: int = 1,
    standard_months: int = 30,
    min_standard_months: int = 1,
    features: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> Windows:
    """Cut the test window ending at ``end`` and the standard window before it out of a panel.

    Args:
        panel: a validated panel (sorted by month_id, unit).
        end: last month of the test window; default the panel's last month.
        test_months: length ``n`` of the test window (default 1).
        standard_months: length ``m`` of the standard window (default 30); shorter when the
            panel starts later, but never shorter than ``min_standard_months``.
        min_standard_months: the fewest standard months accepted (default 1).
        features: columns to check; default :func:`feature_columns`.
        ignore: columns never checked (with the default feature list).

    Returns:
        The :class:`Windows`.

    Raises:
        InputError: when ``end`` is outside the panel or there is too little history, or a
            named feature is not a numeric column.
    """
    first, last = panel.first_month, panel.last_month
    end = last if end is None else int(end)
    if not first <= end <= last:
        raise InputError(
            f"month {end} is outside the panel's months {first}..{last}; pick a month in range",
            parameter="month")
    test_start = end - test_months + 1
    std_start = max(first, test_start - standard_months)
    n_std = test_start - std_start
    if n_std < min_standard_months:
        raise InputError(
            f"drift needs at least {min_standard_months} standard months before the test "
            f"window {test_start}..{end}, but the panel starts at {first} ({max(n_std, 0)} "
            f"available); check a later month or lower [drift] min_standard_months"
        )
    if features is None:
        features = feature_columns(panel, ignore=ignore)
    else:
        bad = [f for f in features if f not in panel.frame.columns
               or not pd.api.types.is_numeric_dtype(panel.frame[f])]
        if bad:
            raise InputError(
                f"feature {bad[0]!r} is not a numeric column of the panel; numeric columns: "
                f"{', '.join(feature_columns(panel))}"
            )
    features = tuple(features)
    if not features:
        raise InputError("the panel has no numeric feature column to check for drift")

    frame = panel.frame
    month_col = frame[TIME_COLUMN].to_numpy()
    lo, hi = np.searchsorted(month_col, [std_start, end + 1])
    rows = frame.iloc[lo:hi]
    t_idx = rows[TIME_COLUMN].to_numpy().astype(np.int64) - std_start
    units, u_idx = np.unique(rows[panel.unit_column].to_numpy(), return_inverse=True)
    n_months = end - std_start + 1
    values = np.full((n_months, len(units), len(features)), np.nan)
    values[t_idx, u_idx, :] = rows[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    present = np.zeros((n_months, len(units)), dtype=bool)
    present[t_idx, u_idx] = True
    return Windows(
        months=np.arange(std_start, end + 1, dtype=np.int64),
        units=units.astype(np.int64),
        features=features,
        values=values,
        present=present,
        n_test=test_months,
        unit_column=panel.unit_column,
        count_features=tuple(f for f in features if f in panel.spec.count_columns),
    )
