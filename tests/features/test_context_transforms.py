"""Context transforms (issue 20): neighbouring countries, regional and global levels, onset and
escalation. Exact values on hand-made panels and one causality property per family."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.features.test_build import make_panel, panels, reference
from tests.features.test_transforms import PANEL, apply, by_cell, check, cm_panel, g, pgm_panel

from ewspipe.errors import SpecError
from ewspipe.features import build_design
from ewspipe.features.expressions import parse_expression
from ewspipe.geography.adjacency import graph_from_cells, great_circle_km
from ewspipe.panel.priogrid import queen_neighbours
from ewspipe.panel.schema import validate_panel

N = math.nan

# The cell table of the tests: country 1 owns two cells side by side, country 2 the next
# cell east (an edge: neighbours of 1), country 3 a cell touching 2 at a corner only (queen
# neighbours of 2, not of 1), country 4 a lone cell far away, 6 and 7 adjacent cells across
# the antimeridian. Countries 5, 8 and 9 own no cell.
CELLS = {(200, 400): 1, (200, 401): 1, (200, 402): 2, (201, 403): 3, (230, 430): 4,
         (150, 1): 6, (150, 720): 7}


@pytest.fixture(scope="module", autouse=True)
def cell_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace whose [geography] priogrid_country holds CELLS, found as the kernels find
    settings by default ($EWSPIPE_CONFIG)."""
    root = tmp_path_factory.mktemp("geo")
    (root / "cells").mkdir()
    gids = [g(r, c) for r, c in CELLS]
    pq.write_table(pa.table({"priogrid_id": pa.array(gids, pa.int32()),
                             "country_id": pa.array(list(CELLS.values()), pa.int32())}),
                   root / "cells" / "priogrid.parquet")
    (root / "ewspipe.toml").write_text('[geography]\npriogrid_country = "cells"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EWSPIPE_CONFIG", str(root / "ewspipe.toml"))
        yield root


# unit -> (first month, values); countries 3 and 5 start late, 5 has no cells
COUNTRIES = {1: (121, [1, 2, 4, 8]), 2: (121, [10, 20, 30, 40]), 3: (122, [200, 300, 400]),
             4: (121, [7, 7, 7, 7]), 5: (122, [5, 5, 5])}


def countries_panel() -> object:
    rows = [{"month_id": first + i, "country_id": unit, "ged_sb": 0, "x": v}
            for unit, (first, values) in COUNTRIES.items() for i, v in enumerate(values)]
    return make_panel(rows)


# --------------------------------------------------------------------------- adjacency


def test_country_graph_links_queen_neighbours_across_borders_only():
    graph = graph_from_cells([g(r, c) for r, c in CELLS], list(CELLS.values()))
    pairs = set(zip(graph.pairs[0].tolist(), graph.pairs[1].tolist(), strict=True))
    assert pairs == {(1, 2), (2, 1), (2, 3), (3, 2), (6, 7), (7, 6)}
    lat, lon = graph.centres(np.array([1, 5, 6]))
    assert lon[0] == pytest.approx(20.0) and lat[0] == pytest.approx(9.75, abs=1e-3)
    assert math.isnan(lat[1]) and math.isnan(lon[1])  # no cells, no centre
    assert abs(lon[2]) == pytest.approx(179.75)  # one cell at the antimeridian


def test_nb_sum_and_mean_at_cm():
    panel = countries_panel()
    # 1 <-> 2 <-> 3; country 3 has no row in month 121 (counts 0 / is skipped); 4 and 5
    # (no cells) have no neighbours: 0
    check(apply(panel, "nb_sum", column="x"),
          {1: [10, 20, 30, 40], 2: [1, 202, 304, 408], 3: [20, 30, 40], 4: [0] * 4,
           5: [0] * 3})
    check(apply(panel, "nb_mean", column="x"),
          {1: [10, 20, 30, 40], 2: [1, 101, 152, 204], 3: [20, 30, 40], 4: [0] * 4,
           5: [0] * 3})


def test_region_sum_and_mean_at_cm():
    panel = countries_panel()
    graph = graph_from_cells([g(r, c) for r, c in CELLS], list(CELLS.values()))
    lat, lon = graph.centres(np.array([1, 2, 3]))
    d12, d13 = (float(great_circle_km(lat[0], lon[0], lat[i], lon[i])) for i in (1, 2))
    assert d12 < d13  # the radius below takes 1's neighbour 2 but not 3
    radius = (d12 + d13) / 2
    got = apply(panel, "region_sum", radius, column="x")
    assert got[1].tolist() == [11, 22, 34, 48]  # itself and 2
    assert got[4].tolist() == [7] * 4 and got[5].tolist() == [5] * 3  # itself only
    mean = apply(panel, "region_mean", 1e4, column="x")  # every country: the month's mean
    # 5 has no centre: in nobody's region but its own; 3 has no row in month 121
    assert mean[4].tolist() == [6, 229 / 4, 341 / 4, 455 / 4]
    assert apply(panel, "region_sum", 0, column="x")[2].tolist() == [10, 20, 30, 40]


def test_nb_sum_at_pgm_is_splag_and_nb_mean_averages_present_neighbours():
    panel = pgm_panel()
    assert by_cell(panel, "nb_sum") == by_cell(panel, "splag")
    mean = by_cell(panel, "nb_mean")
    assert mean[(121, g(201, 401))] == 40 / 8
    assert mean[(122, g(201, 401))] == (40 + 80 - 13) / 7  # (202, 402) has no row
    assert mean[(121, g(*(100, 100)))] == 0  # no neighbour in the panel


def test_missing_cell_table_is_a_spec_error_naming_the_feature_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "ewspipe.toml").write_text('[geography]\npriogrid_country = "empty"\n')
    monkeypatch.setenv("EWSPIPE_CONFIG", str(tmp_path / "ewspipe.toml"))
    with pytest.raises(SpecError) as info:
        build_design(countries_panel(), "ged_sb", ["nb_sum(lag(x, 1))"])
    message = str(info.value)
    assert "feature 'nb_sum(lag(x, 1))'" in message and "PRIO-GRID cell -> country" in message
    assert "holds no priogrid.parquet" in message and "priogrid_country" in message


def test_region_is_cm_only():
    with pytest.raises(SpecError, match="region_mean works on cm panels only"):
        build_design(pgm_panel(), "ged_sb", ["region_mean(ged_sb, 500)"])


# --------------------------------------------------------------------------- global


def test_global_sum_and_mean_over_the_units_of_the_month():
    # months 121..128: units 1 and 3 from 121, 2 and 4 from 123; 3 ends at 122, 4 at 124
    check(apply(PANEL, "global_sum"), {1: [7, 4, 11, 14, 0, 1], 2: [11, 14, 0, 1, 0, 4],
                                       3: [7, 4], 4: [11, 14]})
    check(apply(PANEL, "global_mean"), {1: [3.5, 2, 11 / 3, 14 / 3, 0, 0.5],
                                        2: [11 / 3, 14 / 3, 0, 0.5, 0, 4], 3: [3.5, 2],
                                        4: [11 / 3, 14 / 3]})
    got = by_cell(pgm_panel(), "global_sum")
    assert got[(121, g(*(100, 100)))] == 45 + 50 and got[(122, g(200, 400))] == 45 + 90 - 13 + 50


def test_global_skips_units_without_a_value_and_is_nan_where_the_unit_has_none():
    panel = countries_panel()
    check(apply(panel, "global_sum", column="x"),
          {1: [18, 234, 346, 460], 2: [18, 234, 346, 460], 3: [234, 346, 460],
           4: [18, 234, 346, 460], 5: [234, 346, 460]})
    lagged = build_design(panel, "ged_sb", ["global_mean(lag(x, 1))"])
    first = lagged.X[lagged.months == 121, 0]
    assert np.isnan(first).all()  # nobody has a value one month before the panel starts


# --------------------------------------------------------------------------- onset, escalation


def test_delta():
    check(apply(PANEL, "delta", 1), {1: [N, 3, -3, 5, -5, 0], 2: [N, -2, 0, 1, -1, 4],
                                     3: [N, -6], 4: [N, 0]})
    check(apply(PANEL, "delta", 7), {1: [N] * 6, 2: [N] * 6, 3: [N] * 2, 4: [N] * 2})


def test_time_since_first_counts_from_the_onset_and_is_minus_one_before():
    check(apply(PANEL, "time_since_first", 1.0), {1: [-1, 0, 1, 2, 3, 4], 2: [0, 1, 2, 3, 4, 5],
                                                  3: [0, 1], 4: [0, 1]})
    check(apply(PANEL, "time_since_first", 4.0), {1: [-1, -1, -1, 0, 1, 2],
                                                  2: [-1, -1, -1, -1, -1, 0],
                                                  3: [0, 1], 4: [0, 1]})
    panel = cm_panel({1: (121, [0, 0, 0, 0])}, cov={1: [N, 5, N, 0]})
    check(apply(panel, "time_since_first", 1.0, column="cov"), {1: [N, 0, N, 2]})


def test_spell_counts_the_months_in_a_row_at_or_above_the_threshold():
    # unit 1: 0 3 0 5 0 0, unit 2: 2 0 0 1 0 4, unit 3 (starts late): 7 1, unit 4: 9 9
    check(apply(PANEL, "spell", 1.0), {1: [0, 1, 0, 1, 0, 0], 2: [1, 0, 0, 1, 0, 1],
                                       3: [1, 2], 4: [1, 2]})
    check(apply(PANEL, "spell", 4.0), {1: [0, 0, 0, 1, 0, 0], 2: [0, 0, 0, 0, 0, 1],
                                       3: [1, 0], 4: [1, 2]})
    # a month without a value is NaN and ends the spell
    panel = cm_panel({1: (121, [0, 0, 0, 0, 0])}, cov={1: [5, 5, N, 5, 5]})
    check(apply(panel, "spell", 1.0, column="cov"), {1: [1, 2, N, 1, 2]})


def test_time_since_peak():
    # unit 1: 0 3 0 5 0 0; the earliest of tied maxima counts (unit 4: 9 9)
    check(apply(PANEL, "time_since_peak", 3), {1: [N, N, 1, 0, 1, 2], 2: [N, N, 2, 0, 1, 0],
                                               3: [N, N], 4: [N, N]})
    check(apply(PANEL, "time_since_peak", 2), {1: [N, 0, 1, 0, 1, 1], 2: [N, 1, 1, 0, 1, 0],
                                               3: [N, 1], 4: [N, 1]})
    check(apply(PANEL, "time_since_peak", 1), {1: [0] * 6, 2: [0] * 6, 3: [0, 0], 4: [0, 0]})
    panel = cm_panel({1: (121, [0, 0, 0, 0, 0])}, cov={1: [1, N, 3, 2, 1]})
    check(apply(panel, "time_since_peak", 2, column="cov"), {1: [N, N, N, 1, 1]})


# --------------------------------------------------------------------------- other violence


def test_other_violence_types_are_ordinary_columns():
    rows = [{"month_id": 121 + i, "country_id": u, "ged_sb": i, "ged_ns": 2 * i + u,
             "ged_os": u} for u in (1, 2) for i in range(4)]
    design = build_design(make_panel(rows), "ged_sb", ["lag(ged_ns, 1)", "nb_sum(ged_os)"])
    lag = dict(zip(zip(design.months, design.units, strict=True), design.X[:, 0], strict=True))
    assert lag[(122, 1)] == 1 and lag[(124, 2)] == 6
    assert design.X[design.units == 1, 1].tolist() == [2] * 4  # 1 and 2 are neighbours


def test_a_missing_violence_column_is_named():
    rows = [{"month_id": 121 + i, "country_id": 1, "ged_sb": i} for i in range(3)]
    with pytest.raises(SpecError) as info:
        build_design(make_panel(rows), "ged_sb", ["lag(ged_ns, 1)"])
    assert "column 'ged_ns' is not in the cm panel" in str(info.value)
    assert "Fix:" in str(info.value)


@pytest.mark.shared_data
def test_ged_ns_and_ged_os_features_on_the_views2020_panel(shared_data):
    frame = pd.read_parquet(shared_data / "views_ged_cm" / "views2020_ged_cm.parquet",
                            columns=["month_id", "country_id", "ged_sb", "ged_ns", "ged_os"])
    panel = validate_panel(frame, "cm", source="views2020")[0]
    design = build_design(panel, "ged_sb", ["lag(ged_ns, 1)", "mmean(ged_os, 12)"])
    raw = frame.sort_values(["country_id", "month_id"])
    want = raw.groupby("country_id")["ged_ns"].shift(1)
    got = pd.Series(design.X[:, 0], index=pd.MultiIndex.from_arrays([design.units,
                                                                      design.months]))
    want.index = pd.MultiIndex.from_arrays([raw["country_id"], raw["month_id"]])
    np.testing.assert_array_equal(got.sort_index().to_numpy(), want.sort_index().to_numpy())


# --------------------------------------------------------------------------- reference


def naive(panel, name: str) -> np.ndarray:
    """The context feature by its definition, one (month, unit) at a time."""
    expr = parse_expression(name)
    frame = panel.frame
    unit_col = panel.unit_column
    keys = list(zip(frame["month_id"].astype(int), frame[unit_col].astype(int), strict=True))
    inner = dict(zip(keys, reference(panel, expr.inputs[0]), strict=True))
    first = frame.groupby(unit_col)["month_id"].min().to_dict()
    graph = graph_from_cells([g(r, c) for r, c in CELLS], list(CELLS.values()))
    borders = set(zip(graph.pairs[0].tolist(), graph.pairs[1].tolist(), strict=True))

    def linked(m: int, u: int) -> list[float]:
        if expr.transform.startswith("nb_"):
            if panel.level.value == "pgm":
                _, cells = queen_neighbours(np.array([u]))
                others = set(cells.tolist())
            else:
                others = {v for (a, v) in borders if a == u}
        elif expr.transform.startswith("region_"):
            lat, lon = graph.centres(np.array([u]))
            others = {u}
            for v in {v for (_, v) in keys}:
                la, lo = graph.centres(np.array([v]))
                if float(great_circle_km(lat[0], lon[0], la[0], lo[0])) <= expr.params[0]:
                    others.add(v)
        else:  # global_
            others = {v for (_, v) in keys}
        return [inner[(m, v)] for v in others if (m, v) in inner and not math.isnan(inner[(m, v)])]

    def value(m: int, u: int) -> float:
        own = inner[(m, u)]
        kind = expr.transform
        if kind == "delta":
            return own - inner.get((m - expr.params[0], u), N)
        if kind == "time_since_first":
            if math.isnan(own):
                return N
            hits = [s for s in range(first[u], m + 1) if inner[(s, u)] >= expr.params[0]]
            return m - hits[0] if hits else -1
        if kind == "spell":
            if math.isnan(own):
                return N
            run, s = 0, m
            while (s, u) in inner and inner[(s, u)] >= expr.params[0]:  # NaN never reaches
                run, s = run + 1, s - 1
            return float(run)
        if kind == "time_since_peak":
            window = [inner.get((m - d, u), N) for d in range(expr.params[0])]
            if any(math.isnan(v) for v in window):
                return N
            return max(range(len(window)), key=lambda d: (window[d], d))
        if math.isnan(own):
            return N
        values = linked(m, u)
        if kind.endswith("_sum"):
            return sum(values)
        return sum(values) / len(values) if values else (N if kind == "global_mean" else 0.0)

    return np.array([value(m, u) for m, u in keys], dtype=float)


REFERENCE_CASES = {
    "cm": ["nb_sum(ged_sb)", "nb_mean(lag(cov, 1))", "region_sum(cov, 2000)",
           "region_mean(ged_sb, 120)", "global_sum(lag(ged_sb, 2))", "global_mean(cov)",
           "delta(cov, 2)", "time_since_first(ged_sb, 2)", "time_since_peak(cov, 3)",
           "spell(ged_sb, 2)", "spell(cov, 0.5)"],
    "pgm": ["nb_sum(lag(ged_sb, 1))", "nb_mean(cov)", "global_mean(ged_sb)",
            "time_since_peak(ged_sb, 2)", "time_since_first(cov, 0.5)", "spell(ged_sb, 1)"],
}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(level=st.sampled_from(["cm", "pgm"]), data=st.data())
def test_vectorised_kernels_match_the_reference(level, data):
    df = data.draw(panels(level), label="panel")
    panel = make_panel(df.to_dict("records"), level)
    design = build_design(panel, "ged_sb", REFERENCE_CASES[level])
    for j, name in enumerate(design.feature_names):
        np.testing.assert_allclose(design.X[:, j], naive(panel, name), rtol=1e-12, atol=1e-9,
                                   equal_nan=True, err_msg=name)


# --------------------------------------------------------------------------- causality

FAMILIES = {
    "neighbours": ["nb_sum(ged_sb)", "nb_mean(lag(cov, 1))", "nb_sum(mmean(ged_sb, 2))"],
    "regions": ["region_sum(ged_sb, 2000)", "region_mean(cov, 150)"],
    "global": ["global_sum(ged_sb)", "global_mean(cov)", "global_mean(lag(ged_sb, 2))"],
    "onset": ["time_since_first(ged_sb, 2)", "time_since_first(cov, 0.5)"],
    "duration": ["spell(ged_sb, 1)", "spell(cov, 0.5)", "spell(mmean(ged_sb, 2), 3)"],
    "escalation": ["delta(ged_sb, 1)", "delta(mmean(cov, 2), 2)", "time_since_peak(ged_sb, 3)",
                   "time_since_peak(cov, 2)"],
}
PGM_OK = {"neighbours", "global", "onset", "duration", "escalation"}

_CAUSAL = settings(max_examples=25, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("family", sorted(FAMILIES))
@_CAUSAL
@given(level=st.sampled_from(["cm", "pgm"]), data=st.data())
def test_each_family_is_causal(family, level, data):
    """Rows up to month t are identical whether months after t are changed, removed or kept
    (random panels with late starts, early ends, NaN covariates; cm units 1..9 include
    countries with neighbours, without cells and without rows)."""
    if level == "pgm" and family not in PGM_OK:
        level = "cm"
    df = data.draw(panels(level), label="panel")
    t = data.draw(st.integers(int(df["month_id"].min()), int(df["month_id"].max())), label="t")
    later = df["month_id"] > t
    if data.draw(st.booleans(), label="cut"):
        other = df[~later]
    else:
        other = df.copy()
        n = int(later.sum())
        other.loc[later, "ged_sb"] = np.array(data.draw(
            st.lists(st.integers(0, 1000), min_size=n, max_size=n), label="new counts"), np.int64)
        other.loc[later, "cov"] = np.array(data.draw(
            st.lists(st.floats(-5, 5), min_size=n, max_size=n), label="new covariate"), float)
    features = FAMILIES[family]
    full = build_design(make_panel(df.to_dict("records"), level), "ged_sb", features)
    past = build_design(make_panel(other.to_dict("records"), level), "ged_sb", features)
    a, b = full.up_to(t), past.up_to(t)
    np.testing.assert_array_equal(a.units, b.units)
    np.testing.assert_array_equal(a.X, b.X)

