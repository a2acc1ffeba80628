from datetime import date

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ewspipe.panel.months import (
    current_month_id,
    last_complete_month_id,
    month_id,
    month_id_from_dates,
    month_label,
    year_month,
)


def test_domain_reference_points():
    assert month_id(1980, 1) == 1
    assert month_id(1990, 1) == 121
    assert month_id(2016, 12) == 444
    assert month_id(2020, 12) == 492
    assert month_id(2024, 12) == 540
    assert year_month(535) == (2024, 7)
    assert month_label(121) == "1990-01"


@given(st.integers(1950, 2100), st.integers(1, 12))
def test_round_trip(year, month):
    assert year_month(month_id(year, month)) == (year, month)


def test_vectorised_dates_match_scalar():
    days = ["1989-01-01", "1990-01-31", "2016-12-15", "2024-07-01"]
    dates = np.array(days, dtype="datetime64[D]")
    assert month_id_from_dates(dates).tolist() == [109, 121, 444, 535]


def test_current_and_last_complete():
    assert current_month_id(date(2026, 11, 26)) == 563
    assert last_complete_month_id(date(2026, 11, 26)) == 562


def test_bad_month_rejected():
    import pytest

    with pytest.raises(ValueError, match=r"month must be 1\.\.12"):
        month_id(2020, 13)
