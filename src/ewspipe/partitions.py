"""Run types, partitions and rolling origins: the one place that knows which months are which.

Boundaries are inclusive month_id ranges (DOMAIN.md section 2). Rolling-origin evaluation
uses ``sequences`` origins; sequence ``i`` has origin ``test.first - 1 + i`` and predicts
``origin + 1 .. origin + steps``, so a test window holds ``steps + sequences - 1`` months.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ewspipe.errors import SettingsError

__all__ = [
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
        if run_type is RunType.CALIBRATION:
            train = Window(self.calibration_train_first, self.calibration.first - 1)
            return Partition(run_type, train, self.calibration, self.steps, self.sequences)
        if run_type is RunType.VALIDATION:
            train = Window(self.validation_train_first, self.validation.first - 1)
            return Partition(run_type, train, self.validation, self.steps, self.sequences)
        if last_observed is None:
            raise ValueError("a forecasting partition needs last_observed (the data's last month)")
        train = Window(self.forecasting_train_first, last_observed)
        test = Window(last_observed + 1, last_observed + self.steps)
        return Partition(run_type, train, test, self.steps, 1)
