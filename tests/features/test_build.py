"""build_design: alignment, sharing, errors, agreement with a naive reference, and causality."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ewspipe.errors import SpecError
from ewspipe.features import build_design
from ewspipe.features.expressions import Column, Expr, parse_expression
from ewspipe.panel.priogrid import N_COLS, N_ROWS, cell_centre, gid_from_rowcol
from ewspipe.panel.schema import Level, Panel, validate_panel

N = math.nan


def make_panel(rows: list[dict], level: str = "cm") -> Panel:
    return validate_panel(pd.DataFrame(rows), level, source="test")[0]


def cm_rows(series: dict[int, tuple[int, list[int]]]) -> list[dict]:
    return [{"month_id": first + i, "country_id": unit, "ged_sb": v, "ged_ns": 2 * v}
            for unit, (first, values) in series.items() for i, v in enumerate(values)]


# Unit 3 ends (month 122) right before unit 4 starts (123): neighbours in unit-major order.
CM = make_panel(cm_rows({1: (121, [0, 3, 0, 5, 0, 0]), 2: (123, [2, 0, 0, 1, 0, 4]),
                         3: (121, [7, 1]), 4: (123, [9, 9])}))


def column(design, name: str) -> dict[tuple[int, int], float]:
    j = design.feature_names.index(name)
    return {(int(m), int(u)): float(v)
            for m, u, v in zip(design.months, design.units, design.X[:, j], strict=True)}


# --------------------------------------------------------------------------- exact values


def test_design_rows_follow_the_panel_and_hold_raw_counts():
    design = build_design(CM, "ged_sb", ["lag(ged_sb, 1)"])
    assert design.level is Level.CM and design.unit_column == "country_id"
    np.testing.assert_array_equal(design.months, CM.frame["month_id"].to_numpy())
    np.testing.assert_array_equal(design.units, CM.frame["country_id"].to_numpy())
    assert design.y.dtype == np.float64 and design.y.sum() == CM.frame["ged_sb"].sum()
    assert design.X.dtype == np.float64 and design.X.shape == (len(CM.frame), 1)


def test_values_never_leak_between_units():
    design = build_design(CM, "ged_sb", ["lag(ged_sb, 1)", "msum(ged_sb, 2)",
                                         "time_since(ged_sb, 5)", "msum(lag(ged_sb, 1), 2)"])
    lag = column(design, "lag(ged_sb, 1)")
    assert math.isnan(lag[(123, 4)])  # not unit 3's month-122 value
    assert math.isnan(lag[(123, 2)]) and lag[(124, 2)] == 2
    assert math.isnan(column(design, "msum(ged_sb, 2)")[(123, 4)])
    assert column(design, "msum(ged_sb, 2)")[(124, 4)] == 18
    assert column(design, "time_since(ged_sb, 5)")[(123, 2)] == 1  # not inherited from unit 1
    nested = column(design, "msum(lag(ged_sb, 1), 2)")
    assert [nested[(m, 1)] for m in range(121, 127)][2:] == [3, 3, 5, 5]
    assert math.isnan(nested[(122, 1)])


def test_a_unit_gone_for_good_contributes_nothing_afterwards():
    # unit 3 ends at 122; in months 123+ it has no row, so nothing about it appears
    design = build_design(CM, "ged_sb", ["lag(ged_sb, 1)"])
    assert (123, 3) not in column(design, "lag(ged_sb, 1)")


def test_same_feature_written_twice_is_one_column_computed_once(monkeypatch):
    from ewspipe.features import transforms

    calls: list[int] = []
    real = transforms._TRANSFORMS["msum"]
    counted = real.__class__(**{**real.__dict__, "kernel": _counting(real.kernel, calls)})
    monkeypatch.setitem(transforms._TRANSFORMS, "msum", counted)
    design = build_design(CM, "ged_sb", ["msum(ged_sb,2)", "log1p(msum(ged_sb, 2))",
                                         "msum( ged_sb, 2 )", "lag(msum(ged_sb, 2.0), 1)"])
    assert design.feature_names == ("msum(ged_sb, 2)", "log1p(msum(ged_sb, 2))",
                                    "lag(msum(ged_sb, 2), 1)")
    assert len(calls) == 1
    np.testing.assert_array_equal(design.X[:, 1], np.log1p(design.X[:, 0]))


def _counting(kernel: Callable, calls: list[int]) -> Callable:
    def wrapped(*args):
        calls.append(1)
        return kernel(*args)

    return wrapped


def test_no_features_gives_an_empty_matrix():
    design = build_design(CM, "ged_ns", [])
    assert design.X.shape == (len(CM.frame), 0) and design.feature_names == ()
    assert design.y.sum() == 2 * CM.frame["ged_sb"].sum()


# --------------------------------------------------------------------------- errors


def test_missing_target():
    with pytest.raises(SpecError) as info:
        build_design(CM, "ged_os", ["lag(ged_sb, 1)"])
    message = str(info.value)
    assert "target 'ged_os' is not in the panel" in message
    assert "count columns are ged_sb, ged_ns" in message and "Fix:" in message


def test_target_must_be_a_count_column():
    with pytest.raises(SpecError, match="target 'month_id' is not a count column"):
        build_design(CM, "month_id", [])


def test_wrong_level():
    with pytest.raises(SpecError) as info:
        build_design(CM, "ged_sb", ["lag(ged_sb, 1)", "splag(lag(ged_sb, 1))"])
    message = str(info.value)
    assert "feature 'splag(lag(ged_sb, 1))': splag works on pgm panels only" in message
    assert "this panel is cm" in message


def test_unknown_column():
    with pytest.raises(SpecError) as info:
        build_design(CM, "ged_sb", ["msum(population, 12)"])
    message = str(info.value)
    assert "feature 'msum(population, 12)': column 'population' is not in the cm panel" in message
    assert "available columns: country_id, ged_ns, ged_sb, month_id" in message


def test_parse_error_surfaces_unchanged():
    with pytest.raises(SpecError, match="unknown transform 'lags' \\(did you mean 'lag'"):
        build_design(CM, "ged_sb", ["lags(ged_sb, 1)"])


def test_kernel_errors_name_the_feature():
    rows = cm_rows({1: (121, [0, 1]), 2: (121, [1, 1])})
    for i, row in enumerate(rows):
        row["pop"] = i  # varies within units
    with pytest.raises(SpecError, match=r"feature 'lag\(static\(pop\), 1\)': static\(\) declares"):
        build_design(make_panel(rows), "ged_sb", ["lag(static(pop), 1)"])


# --------------------------------------------------------------------------- reference


def reference(panel: Panel, expr: Expr) -> np.ndarray:
    """The feature by its definition, one (month, unit) at a time: slow, obviously right."""
    frame = panel.frame
    unit_col = panel.unit_column
    rows = {(int(r["month_id"]), int(r[unit_col])): r for r in frame.to_dict("records")}
    first = frame.groupby(unit_col)["month_id"].min().to_dict()
    memo: dict[tuple[str, int, int], float] = {}

    def value(node: Expr, m: int, u: int) -> float:
        key = (node.name, m, u)
        if key not in memo:
            memo[key] = N if (m, u) not in rows else compute(node, m, u)
        return memo[key]

    def compute(node: Expr, m: int, u: int) -> float:
        if isinstance(node, Column):
            return float(rows[(m, u)][node.column])
        x = node.inputs[0] if node.inputs else None
        p = node.params
        if node.transform == "static":
            return value(x, m, u)
        if node.transform == "lag":
            return value(x, m - p[0], u)
        if node.transform in ("msum", "mmean"):
            window = [value(x, m - j, u) for j in range(p[0])]
            total = N if any(math.isnan(v) for v in window) else sum(window)
            return total / p[0] if node.transform == "mmean" else total
        if node.transform in ("time_since", "decay"):
            threshold = p[0] if node.transform == "time_since" else p[1]
            if math.isnan(value(x, m, u)):
                return N
            since = next((m - s for s in range(m, first[u] - 1, -1)
                          if value(x, s, u) >= threshold), m - first[u] + 1)
            return since if node.transform == "time_since" else 2 ** (-since / p[0])
        if node.transform == "log1p":
            v = value(x, m, u)
            return math.log1p(v) if v > -1 else N
        if node.transform in ("lat", "lon"):
            lat, lon = cell_centre(np.array([u]))
            return float(lat[0] if node.transform == "lat" else lon[0])
        own = value(x, m, u)
        if math.isnan(own):
            return N
        if node.transform == "splag":
            row, col = divmod(u - 1, N_COLS)
            cells = [(row + dr) * N_COLS + (col + dc) % N_COLS + 1
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                     if (dr, dc) != (0, 0) and 0 <= row + dr < N_ROWS]
            return sum(v for c in cells if not math.isnan(v := value(x, m, c)))
        country = int(rows[(m, u)]["country_id"])
        if country < 0:
            return N
        members = [value(x, m, v) for (mm, v), r in rows.items()
                   if mm == m and int(r["country_id"]) == country]
        members = [v for v in members if not math.isnan(v)]
        return sum(members) / (len(members) if node.transform == "country_mean" else 1)

    return np.array([value(expr, int(m), int(u))
                     for m, u in zip(frame["month_id"], frame[unit_col], strict=True)])


# --------------------------------------------------------------------------- random panels


@st.composite
def panels(draw, level: str) -> pd.DataFrame:
    """Units with their own first and last month; counts mostly 0; a covariate with NaN and
    negatives; for pgm, cells from a 4 x 4 block with changing country ids."""
    if level == "cm":
        units = draw(st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True))
    else:
        cells = [int(gid_from_rowcol(180 + r, 360 + c)) for r in range(4) for c in range(4)]
        units = draw(st.lists(st.sampled_from(cells), min_size=1, max_size=8, unique=True))
    rows = []
    for unit in units:
        start = draw(st.integers(121, 127))
        stop = draw(st.integers(start, 130))
        pop = draw(st.integers(0, 100))
        for month in range(start, stop + 1):
            row = {"month_id": month, panel_unit(level): unit,
                   "ged_sb": draw(st.sampled_from([0, 0, 0, 1, 2, 5, 40])),
                   "cov": draw(st.sampled_from([N, -3.0, -0.5, 0.0, 0.25, 1.0, 7.5])),
                   "pop": pop}
            if level == "pgm":
                row["country_id"] = draw(st.sampled_from([-1, 1, 1, 2, 2, 3]))
            rows.append(row)
    return pd.DataFrame(rows)


def panel_unit(level: str) -> str:
    return Level(level).unit_column


@st.composite
def expressions(draw, level: str, depth: int = 0) -> str:
    leaves = ["ged_sb", "cov", "static(pop)"] + (["lat()", "lon()"] if level == "pgm" else [])
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(leaves))
    x = draw(expressions(level, depth + 1))
    kinds = ["lag", "msum", "mmean", "time_since", "decay", "log1p"]
    kinds += ["splag", "country_sum", "country_mean"] if level == "pgm" else []
    kind = draw(st.sampled_from(kinds))
    if kind == "lag":
        return f"lag({x}, {draw(st.integers(0, 4))})"
    if kind in ("msum", "mmean"):
        return f"{kind}({x}, {draw(st.integers(1, 4))})"
    if kind == "time_since":
        return f"time_since({x}, {draw(st.sampled_from([0, 0.5, 1, 5]))})"
    if kind == "decay":
        return f"decay({x}, {draw(st.sampled_from([0.5, 1, 3]))}, {draw(st.sampled_from([1, 2]))})"
    return f"{kind}({x})"


_PROPERTY = settings(max_examples=120, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_PROPERTY
@given(st.sampled_from(["cm", "pgm"]).flatmap(
    lambda lv: st.tuples(st.just(lv), panels(lv), st.lists(expressions(lv), min_size=1,
                                                           max_size=4))))
def test_vectorised_features_match_the_reference(case):
    level, df, features = case
    panel = make_panel(df.to_dict("records"), level)
    design = build_design(panel, "ged_sb", features)
    for j, name in enumerate(design.feature_names):
        want = reference(panel, parse_expression(name))
        np.testing.assert_allclose(design.X[:, j], want, rtol=1e-12, atol=1e-9, equal_nan=True,
                                   err_msg=name)


@_PROPERTY
@given(st.sampled_from(["cm", "pgm"]).flatmap(
    lambda lv: st.tuples(st.just(lv), panels(lv), st.lists(expressions(lv), min_size=1,
                                                           max_size=4))),
       st.sampled_from(["cut", "change"]), st.data())
def test_features_are_causal(case, how, data):
    """Rows up to month t are identical whether months after t are changed, removed or kept."""
    level, df, features = case
    t = data.draw(st.integers(int(df["month_id"].min()), int(df["month_id"].max())), label="t")
    later = df["month_id"] > t
    if how == "cut":
        other = df[~later]
    else:
        other = df.copy()
        n = int(later.sum())
        other.loc[later, "ged_sb"] = np.array(data.draw(
            st.lists(st.integers(0, 1000), min_size=n, max_size=n), label="new counts"), np.int64)
        other.loc[later, "cov"] = np.array(data.draw(
            st.lists(st.floats(-5, 5), min_size=n, max_size=n), label="new covariate"), float)
        if level == "pgm":
            other.loc[later, "country_id"] = np.array(data.draw(
                st.lists(st.sampled_from([-1, 1, 2, 3]), min_size=n, max_size=n),
                label="new countries"), np.int64)
    full = build_design(make_panel(df.to_dict("records"), level), "ged_sb", features)
    past = build_design(make_panel(other.to_dict("records"), level), "ged_sb", features)
    a, b = full.up_to(t), past.up_to(t)
    np.testing.assert_array_equal(a.months, b.months)
    np.testing.assert_array_equal(a.units, b.units)
    np.testing.assert_array_equal(a.X, b.X)  # NaN equals NaN here; values bit-identical


def test_reference_agrees_on_the_hand_made_panel():
    """The reference itself is checked against hand values, so the property tests mean something."""
    expr = parse_expression("time_since(ged_sb, 1)")
    want = {(121, 1): 1, (122, 1): 0, (123, 2): 0, (124, 2): 1, (123, 4): 0}
    got = dict(zip(zip(CM.frame["month_id"], CM.frame["country_id"], strict=True),
                   reference(CM, expr), strict=True))
    assert {k: got[k] for k in want} == want


@_PROPERTY
@given(st.sampled_from(["cm", "pgm"]).flatmap(
    lambda lv: st.tuples(st.just(lv), panels(lv), st.lists(expressions(lv), min_size=1,
                                                           max_size=4))), st.integers(119, 132))
def test_first_month_keeps_the_tail_of_the_full_design(case, first):
    """Features still see the whole history: the kept rows are bit-identical to the full
    design's rows of those months."""
    level, df, features = case
    panel = make_panel(df.to_dict("records"), level)
    full = build_design(panel, "ged_sb", features)
    tail = build_design(panel, "ged_sb", features, first_month=first)
    keep = full.months >= first
    np.testing.assert_array_equal(tail.months, full.months[keep])
    np.testing.assert_array_equal(tail.units, full.units[keep])
    np.testing.assert_array_equal(tail.y, full.y[keep])
    np.testing.assert_array_equal(tail.X, full.X[keep])
    assert tail.feature_names == full.feature_names


def test_a_full_rectangular_pgm_panel_matches_the_reference():
    """Every month the same cells (the real pgm panel's shape) takes the grid's short cuts
    (no row index, integer country ids read directly): values must not change."""
    cells = [int(gid_from_rowcol(180 + r, 360 + c)) for r in range(3) for c in range(3)]
    rng = np.random.default_rng(5)
    rows = [{"month_id": m, "priogrid_gid": g, "ged_sb": int(rng.choice([0, 0, 1, 4, 30])),
             "country_id": [-1, 7, 7, 9, 9, 9, 12, 12, 7][i] if m % 3 else [7, 7, 7, 9, -1, 9,
                                                                            12, 12, 7][i]}
            for m in range(121, 133) for i, g in enumerate(cells)]
    panel = make_panel(rows, "pgm")
    features = ["country_sum(ged_sb)", "country_mean(lag(ged_sb, 1))", "splag(ged_sb)",
                "mmean(ged_sb, 3)", "time_since(ged_sb, 1)"]
    design = build_design(panel, "ged_sb", features)
    for j, name in enumerate(design.feature_names):
        np.testing.assert_allclose(design.X[:, j], reference(panel, parse_expression(name)),
                                   rtol=1e-12, atol=1e-9, equal_nan=True, err_msg=name)
