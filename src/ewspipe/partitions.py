"""Run types, partitions and rolling origins: the one place that knows which months are which.

Boundaries are inclusive month_id ranges (DOMAIN.md section 2). Rolling-origin evaluation
uses ``sequences`` origins; sequence ``i`` has origin ``test.first - 1 + i`` and predicts
``origin + 1 .. origin + steps``, so a test window holds ``steps + sequences - 1`` months.

The backtest run type repeats that protocol at several train ends before the validation
period (``[partitions.backtest] test_firsts``), so that a choice made on it is not tuned to
one window: one :class:`Partition` per window, each labelled by its test years
(``Partition.window``, e.g. ``"2005-2008"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from ewspipe.errors import SettingsError

__all__ = [
    "BACKTEST_TEST_FIRSTS",
    "Partition",
    "PartitionScheme",
    "RunType",
    "Sequence",
    "Window",
]


class RunType(StrEnum):
    CALIBRATION = "calibration"
    VALIDATION = "validation"
    FORECASTING = "forecasting"
    BACKTEST = "backtest"


#: The default backtest windows: tests starting Jan 2005, 2009, 2013 and 2017 (the last is
#: calibration's test window), i.e. 2005-2008 .. 2017-2020 with 36 steps x 13 origins.
BACKTEST_TEST_FIRSTS = (301, 349, 397, 445)
_BACKTEST_KEY = "[partitions.backtest] test_firsts"


def _year_month(month_id: int) -> tuple[int, int]:
    """month_id 1 is January 1980."""
    return 1980 + (month_id - 1) // 12, (month_id - 1) % 12 + 1


def window_label(test: Window) -> str:
    """A backtest window's name: its test years (``"2005-2008"``) when it spans whole
    calendar years, else its first and last months (``"2005-03..2009-02"``)."""
    (y1, m1), (y2, m2) = _year_month(test.first), _year_month(test.last)
    if m1 == 1 and m2 == 12:
        return f"{y1}-{y2}"
    return f"{y1}-{m1:02d}..{y2}-{m2:02d}"


@dataclass(frozen=True)
class Window:
    """An inclusive range of month_ids."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise SettingsError(
                f"month window [{self.first}, {self.last}] is empty: first must be <= last"
            )

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, month_id: object) -> bool:
        return isinstance(month_id, int) and self.first <= month_id <= self.last

    def months(self) -> range:
        return range(self.first, self.last + 1)


@dataclass(frozen=True)
class Sequence:
    """One rolling origin: train on months <= origin, predict origin + 1 .. origin + steps."""

    index: int
    origin: int
    steps: int

    @property
    def target_months(self) -> range:
        return range(self.origin + 1, self.origin + self.steps + 1)

    def month_of_step(self, step: int) -> int:
        if not 1 <= step <= self.steps:
            raise ValueError(f"step must be in 1..{self.steps}, got {step}")
        return self.origin + step


@dataclass(frozen=True)
class Partition:
    run_type: RunType
    train: Window
    test: Window
    steps: int
    sequences: int
    #: the backtest window's label (:func:`window_label`, e.g. ``"2005-2008"``); None for
    #: the other run types
    window: str | None = None

    def rolling_origins(self) -> list[Sequence]:
        """The evaluation sequences; forecasting has one, from the last observed month."""
        return [
            Sequence(index=i, origin=self.test.first - 1 + i, steps=self.steps)
            for i in range(self.sequences)
        ]


@dataclass(frozen=True)
class PartitionScheme:
    """Partition settings as configured in ewspipe.toml ``[partitions]``."""

    calibration: Window
    validation: Window
    calibration_train_first: int
    validation_train_first: int
    forecasting_train_first: int
    steps: int = 36
    sequences: int = 13
    backtest_test_firsts: tuple[int, ...] = BACKTEST_TEST_FIRSTS

    def __post_init__(self) -> None:
        if self.steps < 1 or self.sequences < 1:
            raise SettingsError(
                f"[partitions] steps and sequences must be >= 1, got steps={self.steps}, "
                f"sequences={self.sequences}"
            )
        firsts = {"[partitions.calibration] train": self.calibration_train_first,
                  "[partitions.calibration] test": self.calibration.first,
                  "[partitions.validation] train": self.validation_train_first,
                  "[partitions.validation] test": self.validation.first,
                  "[partitions.forecasting] train_first": self.forecasting_train_first}
        for key, first in firsts.items():
            if first < 1:
                raise SettingsError(f"{key} starts at month {first}; month ids start at 1 "
                                    "(January 1980)")
        if self.validation.first <= self.calibration.last:
            raise SettingsError(
                f"[partitions.validation] test {self.validation.first}..{self.validation.last} "
                f"overlaps or precedes [partitions.calibration] test {self.calibration.first}.."
                f"{self.calibration.last}; start validation's test after calibration's")
        need = self.steps + self.sequences - 1
        for name, window in (("calibration", self.calibration), ("validation", self.validation)):
            if len(window) != need:
                raise SettingsError(
                    f"[partitions.{name}] test window {window.first}..{window.last} has "
                    f"{len(window)} months, but {self.sequences} rolling origins x {self.steps} "
                    f"steps need exactly {need} (steps + sequences - 1). Fix test = "
                    f"[{window.first}, {window.first + need - 1}]."
                )

    def partition(self, run_type: RunType | str, *, last_observed: int | None = None) -> Partition:
        """The partition of a run type; forecasting needs the last observed month."""
        run_type = RunType(run_type)
        if run_type is RunType.BACKTEST:
            raise ValueError("the backtest run type has several partitions, one per window: "
                             "use PartitionScheme.backtest()")
        if run_type is RunType.CALIBRATION:
            train = Window(self.calibration_train_first, self.calibration.first - 1)
            return Partition(run_type, train, self.calibration, self.steps, self.sequences)
        if run_type is RunType.VALIDATION:
            train = Window(self.validation_train_first, self.validation.first - 1)
            return Partition(run_type, train, self.validation, self.steps, self.sequences)
        if last_observed is None:
            raise ValueError("a forecasting partition needs last_observed (the data's last month)")
        if self.forecasting_train_first > last_observed:
            raise SettingsError(
                f"[partitions.forecasting] train_first = {self.forecasting_train_first} comes "
                f"after the last observed month {last_observed}: nothing to train on; set it "
                f"to a month_id <= {last_observed} in ewspipe.toml (default 121, January 1990)")
        train = Window(self.forecasting_train_first, last_observed)
        test = Window(last_observed + 1, last_observed + self.steps)
        return Partition(run_type, train, test, self.steps, 1)

    def backtest(self) -> list[Partition]:
        """One partition per backtest window, oldest first: each the rolling-origin protocol
        with its own train end (train from calibration's first training month to the month
        before its test window). Refuses windows that reach validation's test period."""
        self.check_backtest()
        need = self.steps + self.sequences - 1
        return [
            Partition(RunType.BACKTEST, Window(self.calibration_train_first, first - 1),
                      Window(first, first + need - 1), self.steps, self.sequences,
                      window=window_label(Window(first, first + need - 1)))
            for first in self.backtest_test_firsts
        ]

    def check_backtest(self) -> None:
        """Raise SettingsError naming ``[partitions.backtest] test_firsts`` and the fix when
        the windows are empty, out of order, before any training month or reach validation."""
        firsts = list(self.backtest_test_firsts)
        need = self.steps + self.sequences - 1
        if not firsts:
            raise SettingsError(f"{_BACKTEST_KEY} is empty; give at least one test window's "
                                f"first month, e.g. test_firsts = {list(BACKTEST_TEST_FIRSTS)}")
        if any(b <= a for a, b in pairwise(firsts)):
            raise SettingsError(f"{_BACKTEST_KEY} = {firsts} is not strictly increasing; list "
                                f"each window's first month once, oldest first: "
                                f"{sorted(set(firsts))}")
        low = self.calibration_train_first + 1
        if firsts[0] < low:
            raise SettingsError(
                f"{_BACKTEST_KEY}: window {firsts[0]} leaves no training month ([partitions."
                f"calibration] train starts at {self.calibration_train_first}); every first "
                f"month must be >= {low}")
        latest = self.validation.first - need
        if firsts[-1] > latest:
            raise SettingsError(
                f"{_BACKTEST_KEY}: the window starting at {firsts[-1]} runs to month "
                f"{firsts[-1] + need - 1} ({self.steps} steps + {self.sequences} sequences - 1 "
                f"= {need} months), into [partitions.validation] test (from "
                f"{self.validation.first}); backtest windows must end before validation, so "
                f"every first month must be <= {latest}")
