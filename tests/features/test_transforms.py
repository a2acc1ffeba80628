"""Exact values of every transform on small hand-made panels (late starts, early ends, gaps)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import SpecError
from ewspipe.features.transforms import Grid, get_transform
from ewspipe.panel.priogrid import cell_centre, gid_from_rowcol
from ewspipe.panel.schema import Panel, validate_panel

N = math.nan

# unit -> (first month, ged_sb per month). Unit 3 ends where unit 4 starts: in unit-major
# order they touch, so any leak across units would show in unit 4's first month.
SERIES = {1: (121, [0, 3, 0, 5, 0, 0]), 2: (123, [2, 0, 0, 1, 0, 4]), 3: (121, [7, 1]),
          4: (123, [9, 9])}


def cm_panel(series: dict[int, tuple[int, list[float]]], **extra: dict[int, list[float]]) -> Panel:
    rows = []
    for unit, (first, values) in series.items():
        for i, value in enumerate(values):
            row = {"month_id": first + i, "country_id": unit, "ged_sb": value}
            row.update({name: cols[unit][i] for name, cols in extra.items()})
            rows.append(row)
    return validate_panel(pd.DataFrame(rows), "cm", source="test")[0]


def apply(panel: Panel, name: str, *params: float, column: str | None = "ged_sb"):
    """Per unit, the transform's values over the unit's months (in month order)."""
    grid = Grid.from_panel(panel)
    inputs = [] if column is None else [grid.column(column)]
    values = grid.to_rows(grid.mask(get_transform(name)(grid, *inputs, *params)))
    units = panel.frame[panel.unit_column].to_numpy()
    return {int(u): values[units == u] for u in np.unique(units)}


def check(got: dict[int, np.ndarray], expected: dict[int, list[float]]) -> None:
    assert set(got) == set(expected)
    for unit, values in expected.items():
        np.testing.assert_array_equal(got[unit], np.array(values, dtype=float), err_msg=f"{unit}")


PANEL = cm_panel(SERIES)


# --------------------------------------------------------------------------- time


def test_lag():
    check(apply(PANEL, "lag", 1), {1: [N, 0, 3, 0, 5, 0], 2: [N, 2, 0, 0, 1, 0], 3: [N, 7],
                                   4: [N, 9]})
    check(apply(PANEL, "lag", 2), {1: [N, N, 0, 3, 0, 5], 2: [N, N, 2, 0, 0, 1], 3: [N, N],
                                   4: [N, N]})
    check(apply(PANEL, "lag", 0), {u: v for u, (_, v) in SERIES.items()})
    check(apply(PANEL, "lag", 50), {u: [N] * len(v) for u, (_, v) in SERIES.items()})


def test_moving_sum_and_mean():
    msum2 = {1: [N, 3, 3, 5, 5, 0], 2: [N, 2, 0, 1, 1, 4], 3: [N, 8], 4: [N, 18]}
    check(apply(PANEL, "msum", 2), msum2)
    check(apply(PANEL, "msum", 3), {1: [N, N, 3, 8, 5, 5], 2: [N, N, 2, 1, 1, 5], 3: [N, N],
                                    4: [N, N]})
    check(apply(PANEL, "msum", 1), {u: v for u, (_, v) in SERIES.items()})
    check(apply(PANEL, "mmean", 2), {u: [v / 2 for v in vs] for u, vs in msum2.items()})
    check(apply(PANEL, "msum", 9), {u: [N] * len(v) for u, (_, v) in SERIES.items()})


def test_moving_sum_is_nan_when_any_month_in_the_window_is_nan():
    panel = cm_panel({1: (121, [1, 2, 3, 4, 5])}, cov={1: [1, N, 3, 4, 5]})
    check(apply(panel, "msum", 2, column="cov"), {1: [N, N, N, 7, 9]})


def test_time_since_counts_from_the_month_before_the_first_when_never_reached():
    check(apply(PANEL, "time_since", 1.0), {1: [1, 0, 1, 0, 1, 2], 2: [0, 1, 2, 0, 1, 0],
                                            3: [0, 0], 4: [0, 0]})
    check(apply(PANEL, "time_since", 4.0), {1: [1, 2, 3, 0, 1, 2], 2: [1, 2, 3, 4, 5, 0],
                                            3: [0, 1], 4: [0, 0]})


def test_time_since_is_nan_where_x_is_nan_and_nan_never_reaches():
    panel = cm_panel({1: (121, [0, 0, 0, 0])}, cov={1: [N, 5, N, 0]})
    check(apply(panel, "time_since", 1.0, column="cov"), {1: [N, 0, N, 2]})


def test_decay():
    got = apply(PANEL, "decay", 2.0, 4.0)
    check(got, {1: [2 ** -0.5, 2 ** -1, 2 ** -1.5, 1, 2 ** -0.5, 2 ** -1],
                2: [2 ** -0.5, 2 ** -1, 2 ** -1.5, 2 ** -2, 2 ** -2.5, 1],
                3: [1, 2 ** -0.5], 4: [1, 1]})


# --------------------------------------------------------------------------- pointwise


def test_log1p_and_its_domain():
    panel = cm_panel({1: (121, [0, 0, 0, 0])}, cov={1: [0.0, math.e - 1, -0.5, -2.0]})
    check(apply(panel, "log1p", column="cov"), {1: [0.0, 1.0, math.log(0.5), N]})


def test_static_accepts_constant_columns_and_refuses_varying_ones():
    panel = cm_panel(SERIES, pop={1: [5] * 6, 2: [7] * 6, 3: [1, 1], 4: [2, 2]},
                     gdp={1: [1, 1, 1, 2, 2, 2], 2: [3] * 6, 3: [1, 1], 4: [2, 2]})
    check(apply(panel, "static", column="pop"), {1: [5] * 6, 2: [7] * 6, 3: [1, 1], 4: [2, 2]})
    with pytest.raises(SpecError, match=r"varies within 1 unit \(e.g. unit 1: 1 \.\. 2\)"):
        apply(panel, "static", column="gdp")


def test_non_numeric_column_is_refused():
    panel = cm_panel({1: (121, [0, 1])}, name={1: ["a", "b"]})
    with pytest.raises(SpecError, match="column 'name' is not numeric"):
        Grid.from_panel(panel).column("name")


# --------------------------------------------------------------------------- space (pgm)


def g(row: int, col: int) -> int:
    return int(gid_from_rowcol(row, col))


# A 3 x 3 block (rows 200-202 from the south, cols 400-402) plus a lone cell far away.
BLOCK = {(202, 400): 1, (202, 401): 2, (202, 402): 3,
         (201, 400): 4, (201, 401): 5, (201, 402): 6,
         (200, 400): 7, (200, 401): 8, (200, 402): 9}
LONE = (100, 100)


def pgm_panel() -> Panel:
    """Month 121: BLOCK values; month 122: values + 10, cell (202, 402) has ended and cell
    (201, 401) has moved from country 1 to country 2. Col 402 is country 2, LONE has none."""
    rows = []
    for month in (121, 122):
        for (row, col), value in BLOCK.items():
            if month == 122 and (row, col) == (202, 402):
                continue
            country = 2 if col == 402 or (month == 122 and (row, col) == (201, 401)) else 1
            rows.append((month, g(row, col), country, value + (month - 121) * 10))
        rows.append((month, g(*LONE), -1, 50))
    df = pd.DataFrame(rows, columns=["month_id", "priogrid_gid", "country_id", "ged_sb"])
    return validate_panel(df, "pgm", source="test")[0]


def by_cell(panel: Panel, name: str, *params: float, column: str | None = "ged_sb"):
    grid = Grid.from_panel(panel)
    inputs = [] if column is None else [grid.column(column)]
    values = grid.to_rows(grid.mask(get_transform(name)(grid, *inputs, *params)))
    frame = panel.frame
    return {(int(m), int(u)): v for m, u, v in
            zip(frame["month_id"], frame["priogrid_gid"], values, strict=True)}


def test_splag_sums_queen_neighbours_present_that_month():
    got = by_cell(pgm_panel(), "splag")
    assert got[(121, g(201, 401))] == 40  # all 8 neighbours
    assert got[(121, g(200, 400))] == 8 + 4 + 5  # corner: 3 neighbours in the panel
    assert got[(121, g(201, 402))] == 8 + 9 + 5 + 2 + 3
    assert got[(121, g(*LONE))] == 0  # no neighbour in the panel
    # month 122: values + 10, and (202, 402) has no row, so it counts 0
    assert got[(122, g(201, 401))] == 40 + 80 - 13
    assert got[(122, g(201, 402))] == 18 + 19 + 15 + 12
    assert (122, g(202, 402)) not in got


def test_splag_wraps_around_the_antimeridian():
    df = pd.DataFrame({"month_id": [121, 121], "priogrid_gid": [g(150, 1), g(150, 720)],
                       "ged_sb": [3, 4]})
    panel = validate_panel(df, "pgm", source="test")[0]
    got = by_cell(panel, "splag")
    assert got == {(121, g(150, 1)): 4, (121, g(150, 720)): 3}


def test_country_sum_and_mean_follow_the_cells_country_in_each_month():
    panel = pgm_panel()
    total = by_cell(panel, "country_sum")
    mean = by_cell(panel, "country_mean")
    assert total[(121, g(200, 400))] == 27 and mean[(121, g(200, 400))] == 4.5
    assert total[(121, g(201, 402))] == 18 and mean[(121, g(201, 402))] == 6
    assert total[(122, g(200, 400))] == 72 and mean[(122, g(200, 400))] == 72 / 5
    assert total[(122, g(201, 401))] == 50 and mean[(122, g(201, 401))] == 50 / 3
    assert math.isnan(total[(121, g(*LONE))]) and math.isnan(mean[(122, g(*LONE))])


def test_lat_lon_are_cell_centres():
    panel = pgm_panel()
    lat = by_cell(panel, "lat", column=None)
    lon = by_cell(panel, "lon", column=None)
    want_lat, want_lon = cell_centre(np.array([g(201, 401)]))
    assert lat[(122, g(201, 401))] == want_lat[0] and lon[(121, g(201, 401))] == want_lon[0]
    assert lat[(121, g(201, 401))] == 10.25  # (201 - 0.5) * 0.5 - 90


# --------------------------------------------------------------------------- grid


def test_grid_layout_sparse_and_full():
    grid = Grid.from_panel(PANEL)
    assert grid.shape == (8, 4) and not grid.full
    assert grid.start.tolist() == [0, 2, 0, 2]
    values = PANEL.frame["ged_sb"].to_numpy(float)
    np.testing.assert_array_equal(grid.to_rows(grid.to_grid(values)), values)
    full = cm_panel({1: (121, [1, 2]), 2: (121, [3, 4])})
    assert Grid.from_panel(full).full
