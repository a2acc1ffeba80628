"""Properties of validate_panel: valid panels pass unchanged, any single corruption is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewspipe.errors import PanelError
from ewspipe.panel.schema import validate_panel


@st.composite
def panels(draw):
    n_units = draw(st.integers(1, 6))
    rows = []
    for unit in range(1, n_units + 1):
        first = draw(st.integers(121, 140))
        last = draw(st.integers(first, 150))
        rows += [(m, unit) for m in range(first, last + 1)]
    df = pd.DataFrame(rows, columns=["month_id", "country_id"])
    values = draw(st.lists(st.integers(0, 10_000), min_size=len(df), max_size=len(df)))
    df["ged_sb"] = values
    order = draw(st.permutations(range(len(df))))
    return df.iloc[list(order)].reset_index(drop=True)


@settings(max_examples=60, deadline=None)
@given(panels())
def test_valid_panels_pass_and_are_sorted(df):
    panel, report = validate_panel(df, "cm", source="prop")
    assert report.passed
    frame = panel.frame
    assert len(frame) == len(df)
    assert frame["ged_sb"].sum() == df["ged_sb"].sum()
    keys = list(zip(frame["month_id"], frame["country_id"], strict=True))
    assert keys == sorted(keys)
    assert frame["ged_sb"].dtype == np.int64


@settings(max_examples=60, deadline=None)
@given(panels(), st.sampled_from(["negative", "fraction", "duplicate", "missing"]), st.data())
def test_any_single_corruption_is_refused(df, kind, data):
    i = data.draw(st.integers(0, len(df) - 1))
    bad = df.copy()
    if kind == "negative":
        bad.loc[i, "ged_sb"] = -1 - bad.loc[i, "ged_sb"]
    elif kind == "fraction":
        bad["ged_sb"] = bad["ged_sb"].astype(float)
        bad.loc[i, "ged_sb"] = bad.loc[i, "ged_sb"] + 0.5
    elif kind == "duplicate":
        bad = pd.concat([bad, bad.iloc[[i]]], ignore_index=True)
    else:
        bad["ged_sb"] = bad["ged_sb"].astype(float)
        bad.loc[i, "ged_sb"] = np.nan
    with pytest.raises(PanelError) as info:
        validate_panel(bad, "cm", source="prop")
    assert "prop" in str(info.value)


def test_forecast_entities_are_the_last_months_units():
    df = pd.DataFrame(
        {"month_id": [121, 121, 122, 122, 123], "country_id": [1, 2, 1, 2, 2], "ged_sb": 0}
    )
    panel, _ = validate_panel(df, "cm", source="t")
    assert panel.forecast_entities().tolist() == [2]
    assert panel.units.tolist() == [1, 2]


@pytest.mark.parametrize(("column", "convert", "kind"), [
    ("ged_sb", lambda s: s.astype(complex) + 7j, "complex numbers"),  # was stored as the real part
    ("ged_sb", lambda s: pd.to_timedelta(s, unit="s"), "durations"),  # was nanoseconds
    ("month_id", lambda s: pd.Timestamp("2000-01-01") + pd.to_timedelta(s, unit="D"), "dates"),
])
def test_columns_of_another_kind_are_named_not_converted(column, convert, kind):
    df = pd.DataFrame({"month_id": np.repeat(np.arange(121, 161), 2),
                       "country_id": np.tile([1, 2], 40), "ged_sb": np.arange(80)})
    df[column] = convert(df[column])
    with pytest.raises(PanelError, match=rf"t.parquet: column '{column}': holds {kind} \("):
        validate_panel(df, "cm", source="t.parquet")
