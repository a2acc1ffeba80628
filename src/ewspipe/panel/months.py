"""month_id <-> calendar month (VIEWS: month_id = (year - 1980) * 12 + month; 121 = Jan 1990)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "current_month_id",
    "last_complete_month_id",
    "month_id",
    "month_id_from_dates",
    "month_label",
    "year_month",
]


def month_id(year: int, month: int) -> int:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    return (year - 1980) * 12 + month


def year_month(mid: int) -> tuple[int, int]:
    """Calendar (year, month) of a month_id."""
    year, zero_based = divmod(mid - 1, 12)
    return 1980 + year, zero_based + 1


def month_label(mid: int) -> str:
    """ISO-style label, e.g. 121 -> '1990-01'."""
    year, month = year_month(mid)
    return f"{year:04d}-{month:02d}"


def month_id_from_dates(dates: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Vectorised month_id of datetime64 values (any resolution)."""
    months = np.asarray(dates, dtype="datetime64[M]").astype(np.int64)  # months since 1970-01
    return months - 120 + 1  # 1970-01 is month_id -119; 1980-01 is 1


def current_month_id(today: date | None = None) -> int:
    today = today or datetime.now(UTC).date()
    return month_id(today.year, today.month)


def last_complete_month_id(today: date | None = None) -> int:
    return current_month_id(today) - 1
