"""Design row look-ups: the O(1) step-ahead table agrees with the key search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ewspipe.features.design import Design
from ewspipe.panel.schema import Level


@st.composite
def ragged(draw):
    spans = draw(st.lists(st.tuples(st.integers(121, 160), st.integers(0, 40)),
                          min_size=1, max_size=8))
    rows = sorted({(m, u + 1) for u, (a, n) in enumerate(spans) for m in range(a, a + n + 1)})
    months = np.array([r[0] for r in rows], dtype=np.int64)
    units = np.array([r[1] for r in rows], dtype=np.int64)
    n = len(rows)
    return Design(Level.CM, "country_id", "ged_sb", months, units, np.zeros(n),
                  np.zeros((n, 1)), ("x",))


@st.composite
def rectangles(draw):
    """Every month the same units in the same order (the full pgm panel's shape), sometimes
    with one row dropped or a month skipped, which must not take the rectangle's short cut."""
    n_months, units = draw(st.integers(1, 30)), draw(st.lists(st.integers(1, 50), min_size=1,
                                                                 max_size=6, unique=True))
    first = draw(st.integers(121, 140))
    months = np.repeat(np.arange(first, first + n_months, dtype=np.int64), len(units))
    unit_col = np.tile(np.array(sorted(units), dtype=np.int64), n_months)
    flaw = draw(st.sampled_from(["none", "drop", "gap"]))
    if flaw == "drop" and len(months) > 1:
        i = draw(st.integers(0, len(months) - 1))
        months, unit_col = np.delete(months, i), np.delete(unit_col, i)
    elif flaw == "gap" and n_months > 2:
        months = np.where(months > first, months + 1, months)
    n = len(months)
    return Design(Level.PGM, "priogrid_gid", "ged_sb", months, unit_col, np.zeros(n),
                  np.zeros((n, 1)), ("x",))


@settings(max_examples=120, deadline=None)
@given(st.one_of(ragged(), rectangles()), st.integers(1, 45), st.data())
def test_rows_ahead_matches_find_rows(design, step, data):
    lo = data.draw(st.integers(0, len(design)))
    hi = data.draw(st.integers(lo, len(design)))
    rows, found = design.rows_ahead(step, lo, hi)
    ref_rows, ref_found = design.find_rows(design.months[lo:hi] + step, design.units[lo:hi])
    np.testing.assert_array_equal(found, ref_found)
    np.testing.assert_array_equal(rows[found], ref_rows[ref_found])
    assert (design.units[rows[found]] == design.units[lo:hi][found]).all()
    assert (design.months[rows[found]] == design.months[lo:hi][found] + step).all()


def test_a_full_rectangle_is_recognised_and_a_ragged_panel_is_not():
    months = np.repeat(np.arange(121, 125, dtype=np.int64), 3)
    units = np.tile(np.array([5, 7, 9], dtype=np.int64), 4)
    full = Design(Level.PGM, "priogrid_gid", "ged_sb", months, units, np.zeros(12),
                  np.zeros((12, 1)), ("x",))
    assert full._width == 3
    rows, found = full.rows_ahead(2, 0, 12)
    assert found.tolist() == [True] * 6 + [False] * 6 and rows[:6].tolist() == list(range(6, 12))
    cut = Design(Level.PGM, "priogrid_gid", "ged_sb", months[1:], units[1:], np.zeros(11),
                 np.zeros((11, 1)), ("x",))
    assert cut._width == 0


def _grid_design(n_months: int, n_units: int, X: np.ndarray) -> Design:
    months = np.repeat(np.arange(121, 121 + n_months, dtype=np.int64), n_units)
    units = np.tile(np.arange(1, n_units + 1, dtype=np.int64), n_months)
    return Design(Level.CM, "country_id", "ged_sb", months, units, np.zeros(len(months)), X,
                  tuple(f"f{j}" for j in range(X.shape[1])))


def test_all_missing_names_features_without_a_value_before_train_last(monkeypatch) -> None:
    import ewspipe.features.design as design_module

    monkeypatch.setattr(design_module, "_SCAN_BLOCK", 7)  # several blocks, not a multiple
    n_months, n_units = 30, 5
    X = np.full((n_months * n_units, 4), np.nan)
    X[:, 0] = 1.0  # always defined
    X[20 * n_units:, 1] = 2.0  # defined from month 141 on
    X[-1, 2] = 3.0  # only in the very last row (month 150)
    design = _grid_design(n_months, n_units, X)  # f3: never
    assert design.all_missing(before=151) == ("f3",)
    assert design.all_missing(before=150) == ("f2", "f3")
    assert design.all_missing(before=141) == ("f1", "f2", "f3")
    assert design.all_missing(before=150, since=145) == ("f2", "f3")
    assert design.all_missing(before=121) == ()  # no training rows: not this check's case
