"""Panel schema and validation: the boundary every table passes before it is stored.

A :class:`Panel` is a long table indexed by (month_id, unit) with integer, non-negative count
columns (raw deaths, never logs). :func:`validate_panel` checks everything once and either
returns a Panel plus a report of the checks it ran, or raises :class:`PanelError` naming the
source, the column, the first offending rows and how to fix them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import numpy as np
import pandas as pd

from ewspipe.arguments import names_list
from ewspipe.errors import InputError, PanelError
from ewspipe.panel.columns import integers, refuse_text_storage
from ewspipe.panel.messages import SHOW_ROWS as _SHOW_ROWS
from ewspipe.panel.messages import name_list
from ewspipe.panel.messages import row_error as _fail
from ewspipe.panel.months import current_month_id, month_label
from ewspipe.panel.priogrid import N_CELLS

__all__ = [
    "TIME_COLUMN",
    "CheckResult",
    "Level",
    "MissingPolicy",
    "Panel",
    "PanelSpec",
    "ValidationReport",
    "validate_panel",
]

TIME_COLUMN = "month_id"
COUNT_PATTERN = re.compile(r"^ged_")


class Level(StrEnum):
    CM = "cm"
    PGM = "pgm"

    @property
    def unit_column(self) -> str:
        return "country_id" if self is Level.CM else "priogrid_gid"

    @classmethod
    def parse(cls, value: Level | str) -> Level:
        """The level ``value`` names; a PanelError about ``parameter="level"`` otherwise (the
        CLI says it of ``--level`` when that option was given)."""
        try:
            return cls(value)
        except ValueError:
            raise PanelError(
                f"unknown level {value!r}; use one of "
                f"{', '.join(repr(v.value) for v in cls)} (cm: country-month, pgm: "
                "PRIO-GRID-month)", parameter="level"
            ) from None


class MissingPolicy(StrEnum):
    """What to do with a missing (NaN) count: refuse, or declare that missing means zero."""

    ERROR = "error"
    ZERO = "zero"


@dataclass(frozen=True)
class PanelSpec:
    level: Level
    count_columns: tuple[str, ...]

    @property
    def unit_column(self) -> str:
        return self.level.unit_column

    @property
    def index_columns(self) -> tuple[str, str]:
        return (TIME_COLUMN, self.unit_column)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass
class ValidationReport:
    source: str
    checks: list[CheckResult] = field(default_factory=list)
    filled_missing: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, detail: str, passed: bool = True) -> None:
        self.checks.append(CheckResult(name, passed, detail))

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
            "filled_missing": dict(self.filled_missing),
        }


@dataclass(frozen=True, eq=False)
class Panel:
    """A validated panel. ``frame`` is sorted by (month_id, unit) with a RangeIndex.

    Compared by identity (``eq=False``): a generated ``==`` would compare the DataFrames,
    whose truth value pandas refuses; compare ``a.frame.equals(b.frame)`` instead."""

    frame: pd.DataFrame
    spec: PanelSpec

    @property
    def level(self) -> Level:
        return self.spec.level

    @property
    def unit_column(self) -> str:
        return self.spec.unit_column

    @property
    def months(self) -> np.ndarray:
        return self.frame[TIME_COLUMN].to_numpy()

    @property
    def first_month(self) -> int:
        return int(self.frame[TIME_COLUMN].iloc[0])

    @property
    def last_month(self) -> int:
        return int(self.frame[TIME_COLUMN].iloc[-1])

    @property
    def units(self) -> np.ndarray:
        return np.unique(self.frame[self.unit_column].to_numpy())

    def units_in_month(self, month_id: int) -> np.ndarray:
        """Units with a row in ``month_id``; for the last month this is the forecast entity set."""
        months = self.frame[TIME_COLUMN].to_numpy()
        lo, hi = np.searchsorted(months, [month_id, month_id + 1])
        return self.frame[self.unit_column].to_numpy()[lo:hi].copy()

    def actuals(self, target: str) -> pd.DataFrame:
        """``month_id``, the unit column and ``value`` (the ``target`` counts): the long frame
        forecasts are scored against."""
        return pd.DataFrame({
            TIME_COLUMN: self.frame[TIME_COLUMN].to_numpy(),
            self.unit_column: self.frame[self.unit_column].to_numpy(),
            "value": self.frame[target].to_numpy(),
        })

    def forecast_entities(self) -> np.ndarray:
        """Units present in the last observed month: the set a forecast must cover."""
        return self.units_in_month(self.last_month)

    def totals(self) -> dict[str, int]:
        return {c: int(self.frame[c].sum()) for c in self.spec.count_columns}


# --------------------------------------------------------------------------- helpers


_ID_FIX = "identifiers and months are integers and can never be missing"
_COUNT_FIX = (
    "counts are whole numbers of deaths; if fractions come from averaging, fix the "
    "aggregation rather than rounding here"
)


def _as_int(
    df: pd.DataFrame,
    column: str,
    source: str,
    index_cols: list[str],
    *,
    allow_missing: bool = False,
    fix: str = _ID_FIX,
) -> tuple[np.ndarray, np.ndarray]:
    return integers(df, column, source, fix=fix, show=[*index_cols, column],
                    allow_missing=allow_missing)


def _infer_count_columns(df: pd.DataFrame, level: Level) -> tuple[str, ...]:
    return tuple(c for c in df.columns if COUNT_PATTERN.match(str(c)))


# --------------------------------------------------------------------------- validation


def _count_list(count_columns: object) -> tuple[str, ...]:
    """The count columns asked for (``--counts``, or ``count_columns=`` from Python): one name
    or a list of distinct names, at least one."""
    try:
        counts = tuple(names_list(count_columns, "count_columns") or ())
    except InputError as exc:
        said = str(exc).removeprefix("count_columns: ")
        raise PanelError(f"count columns (--counts): {said}, e.g. ged_sb,ged_ns",
                         parameter="count_columns") from None
    if not counts:
        raise PanelError("count columns (--counts): the list is empty; name at least one "
                         "count column, e.g. ged_sb, or leave it out to use every ged_* column",
                         parameter="count_columns")
    twice = sorted({c for c in counts if counts.count(c) > 1})
    if twice:
        raise PanelError(f"count columns (--counts): {twice[0]!r} is listed more than once; "
                         "name each count column once", parameter="count_columns")
    return counts


def validate_panel(
    df: pd.DataFrame,
    level: Level | str,
    *,
    source: str,
    count_columns: tuple[str, ...] | list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
    today: date | None = None,
    max_count: int | None = None,
) -> tuple[Panel, ValidationReport]:
    """Check a raw table and return it as a Panel with the report of every check.

    Args:
        df: the table as read from the file (any column order, any index).
        level: ``cm`` or ``pgm``; decides the unit column.
        source: how to name the input in messages (usually the file path).
        count_columns: the count columns; default every column named ``ged_*``.
        missing: ``error`` (default) refuses missing counts; ``zero`` fills them with 0 and
            records how many in the report.
        today: the date that defines "future" months (default: today, UTC).
        max_count: the plausibility bound: a count above it is refused (``[data]
            max_deaths_per_row``); None = no bound.

    Raises:
        PanelError: on the first failed check, naming column, rows and fix.
    """
    level = Level.parse(level)
    try:
        missing = MissingPolicy(missing)
    except ValueError:
        raise PanelError(
            f"unknown missing-value policy {missing!r}; use 'error' or 'zero'",
            parameter="missing",
        ) from None
    report = ValidationReport(source=source)
    unit = level.unit_column
    other = Level.PGM.unit_column if level is Level.CM else Level.CM.unit_column

    # 1. something to validate
    if len(df.columns) == 0 or len(df) == 0:
        raise _fail(source, None, "the table has no data rows", "check the file was fully written")
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
        raise _fail(source, dup[0], "the column name appears more than once",
                    "rename or drop the duplicate column")
    report.add("readable", f"{len(df):,} rows, {len(df.columns)} columns")

    # 2. required columns for the level
    for col in (TIME_COLUMN, unit):
        if col not in df.columns:
            hint = ""
            if col == unit and other in df.columns:
                hint = (f" The file has '{other}', so it looks like a "
                        f"{'pgm' if level is Level.CM else 'cm'} table: pass "
                        f"--level {'pgm' if level is Level.CM else 'cm'}.")
            raise _fail(
                source,
                col,
                f"required column is missing (a {level.value} panel needs "
                f"'{TIME_COLUMN}' and '{unit}'; found: {name_list(df.columns)}).{hint}",
                f"add or rename the column to '{col}'",
            )
    if count_columns is None:
        counts = _infer_count_columns(df, level)
        if not counts:
            raise _fail(
                source,
                None,
                f"no count column found (columns named ged_*; found: {name_list(df.columns)})",
                "name the count columns ged_sb / ged_ns / ged_os, or list them with --counts",
            )
    else:
        counts = _count_list(count_columns)
        absent = [c for c in counts if c not in df.columns]
        if absent:
            error = _fail(source, absent[0], "count column named in --counts "
                          f"(count_columns) is missing (found: {name_list(df.columns)})",
                          "fix the list of count columns")
            error.parameter = "count_columns"
            raise error
        clash = [c for c in counts if c in (TIME_COLUMN, unit)]
        if clash:
            raise _fail(source, clash[0], "an index column cannot be a count column",
                        "remove it from --counts")
    report.add("columns", f"index ({TIME_COLUMN}, {unit}); counts {', '.join(counts)}")
    index_cols = [TIME_COLUMN, unit]

    # 3. index columns: integers, present, in range
    months, _ = _as_int(df, TIME_COLUMN, source, index_cols)
    units, _ = _as_int(df, unit, source, index_cols)
    limit = current_month_id(today)
    low = months < 1
    if low.any():
        raise _fail(source, TIME_COLUMN, f"{int(low.sum())} rows have month_id < 1",
                    "month_id = (year - 1980) * 12 + month; 1 = Jan 1980", df, low, index_cols)
    future = months > limit
    if future.any():
        looks_like_year = bool(((months >= 1900) & (months <= 2200)).all())
        fix = (
            "the values look like calendar years; convert to month_id = (year - 1980) * 12 + month"
            if looks_like_year
            else f"drop months after {limit} ({month_label(limit)}, the current month): "
            "data cannot come from the future; check the month_id formula"
        )
        raise _fail(
            source, TIME_COLUMN,
            f"{int(future.sum())} rows are in the future (latest allowed {limit} = "
            f"{month_label(limit)})", fix, df, future, index_cols,
        )
    if level is Level.CM:
        bad_unit = units < 1
        unit_fix = "country_id is a positive VIEWS country id"
    else:
        bad_unit = (units < 1) | (units > N_CELLS)
        unit_fix = f"priogrid_gid = (row - 1) * 720 + col is in 1..{N_CELLS}"
    if bad_unit.any():
        raise _fail(source, unit, f"{int(bad_unit.sum())} rows have an impossible unit id",
                    unit_fix, df, bad_unit, index_cols)
    report.add("index", f"months {months.min()}..{months.max()} "
               f"({month_label(int(months.min()))}..{month_label(int(months.max()))}), "
               f"no future months")

    # 4. count columns: integer, non-negative, missing per policy
    count_values: dict[str, np.ndarray] = {}
    for col in counts:
        refuse_text_storage(df, col, source)
        try:
            values, miss = _as_int(df, col, source, index_cols, fix=_COUNT_FIX,
                                   allow_missing=missing is MissingPolicy.ZERO)
        except PanelError as exc:
            if "rows have no value" in str(exc) and missing is MissingPolicy.ERROR:
                raise PanelError(f"{exc}\n  Or, if an empty count means no deaths in your "
                                 "source, pass --missing zero") from None
            raise
        if miss.any():
            report.filled_missing[col] = int(miss.sum())
        neg = values < 0
        if neg.any():
            raise _fail(source, col, f"{int(neg.sum())} rows have negative counts",
                        "counts are deaths and cannot be negative; correct these rows at the "
                        "source", df, neg, [*index_cols, col])
        if max_count is not None:
            implausible = values > max_count
            if implausible.any():
                raise _fail(
                    source, col,
                    f"{int(implausible.sum())} rows exceed the plausibility bound of "
                    f"{max_count:,} deaths in one unit-month",
                    "check these rows at the source (a sum over many units or months, a "
                    "population or a code instead of deaths?); if they are real, raise "
                    f"[data] max_deaths_per_row (now {max_count:,}) in ewspipe.toml",
                    df, implausible, [*index_cols, col])
        count_values[col] = values
    if report.filled_missing:
        filled = ", ".join(f"{c}: {n:,}" for c, n in report.filled_missing.items())
        report.add("missing values", f"filled with 0 by declared policy 'zero' ({filled})")
    else:
        report.add("missing values", "none")
    report.add("counts", "integer, non-negative" + (
        f", at most {max_count:,}" if max_count is not None else ""))

    # 5. pgm country membership (optional column)
    extra_int: dict[str, np.ndarray] = {}
    if level is Level.PGM and "country_id" in df.columns:
        cid, _ = _as_int(df, "country_id", source, index_cols)
        bad = cid < -1
        if bad.any():
            raise _fail(source, "country_id", f"{int(bad.sum())} rows have country_id < -1",
                        "use the VIEWS country id, or -1 for a cell with no country",
                        df, bad, [*index_cols, "country_id"])
        extra_int["country_id"] = cid

    # 6. assemble, sort, then check uniqueness and contiguity on sorted arrays
    frame = df.copy()
    frame[TIME_COLUMN] = months
    frame[unit] = units
    for col, values in {**count_values, **extra_int}.items():
        frame[col] = values
    ordered = [TIME_COLUMN, unit, *counts]
    frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
    m = frame[TIME_COLUMN].to_numpy()
    u = frame[unit].to_numpy()
    in_order = bool(np.all((m[1:] > m[:-1]) | ((m[1:] == m[:-1]) & (u[1:] > u[:-1]))))
    if not in_order:
        order = np.lexsort((u, m))
        frame = frame.iloc[order]
        m, u = m[order], u[order]
        dup_sorted = np.zeros(len(m), dtype=bool)
        same = (m[1:] == m[:-1]) & (u[1:] == u[:-1])
        dup_sorted[1:] |= same
        dup_sorted[:-1] |= same
        if dup_sorted.any():
            mask = np.zeros(len(m), dtype=bool)
            mask[order[dup_sorted]] = True
            raise _fail(
                source, None,
                f"{int(mask.sum())} rows share a ({TIME_COLUMN}, {unit}) pair with another row",
                "each unit has one row per month: drop or aggregate the duplicates",
                df, mask, [*index_cols, *counts],
            )
    frame = frame.reset_index(drop=True)
    report.add("unique", f"one row per ({TIME_COLUMN}, {unit})")

    grouped = pd.DataFrame({"u": u, "m": m}).groupby("u", sort=True)["m"].agg(
        ["min", "max", "size"]
    )
    gaps = grouped[grouped["max"] - grouped["min"] + 1 != grouped["size"]]
    if len(gaps):
        examples = []
        for unit_id, row in gaps.head(_SHOW_ROWS).iterrows():
            present = np.unique(m[u == unit_id])
            missing_months = np.setdiff1d(np.arange(row["min"], row["max"] + 1), present)
            examples.append(
                f"    {unit}={unit_id}: rows {row['min']}..{row['max']} but missing "
                f"{len(missing_months)} months, first {missing_months[:5].tolist()}"
            )
        raise PanelError(
            f"{source}: column '{TIME_COLUMN}': {len(gaps)} units have gaps in their months "
            "(a unit's months must be contiguous from its first to its last row)\n"
            + "\n".join(examples)
            + "\n  Fix: add the missing unit-months (with 0 if nothing happened and your "
            "source zero-fills), or split the unit into separate ids if it really ceased to exist"
        )
    report.add("contiguous", f"{len(grouped):,} units, each with contiguous months")

    spec = PanelSpec(level=level, count_columns=tuple(counts))
    return Panel(frame=frame, spec=spec), report
