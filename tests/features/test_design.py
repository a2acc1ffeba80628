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


@settings(max_examples=80, deadline=None)
@given(ragged(), st.integers(1, 45), st.data())
def test_rows_ahead_matches_find_rows(design, step, data):
    lo = data.draw(st.integers(0, len(design)))
    hi = data.draw(st.integers(lo, len(design)))
    rows, found = design.rows_ahead(step, lo, hi)
    ref_rows, ref_found = design.find_rows(design.months[lo:hi] + step, design.units[lo:hi])
    np.testing.assert_array_equal(found, ref_found)
    np.testing.assert_array_equal(rows[found], ref_rows[ref_found])
    assert (design.units[rows[found]] == design.units[lo:hi][found]).all()
    assert (design.months[rows[found]] == design.months[lo:hi][found] + step).all()
