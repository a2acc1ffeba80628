"""The memory-lean design path (issue 21, global pgm grid) computes exactly what the whole-grid
versions computed: same bits for the month-by-month kernels, for any write batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ewspipe.features.build as build
from ewspipe.features.build import build_design
from ewspipe.features.expressions import parse_features
from ewspipe.features.matrix import FeatureMatrix
from ewspipe.features.transforms import Grid, _country_totals, _time_since, _window_sum
from ewspipe.panel.priogrid import gid_from_rowcol
from ewspipe.panel.schema import Panel, validate_panel

COPPER_MESH = [
    "ged_sb", "lag(ged_sb, 1)", "lag(ged_sb, 3)", "lag(ged_sb, 12)", "mmean(ged_sb, 3)",
    "mmean(ged_sb, 12)", "mmean(ged_sb, 36)", "time_since(ged_sb, 1)", "time_since(ged_sb, 25)",
    "decay(ged_sb, 12, 1)", "splag(ged_sb)", "splag(mmean(ged_sb, 12))",
    "splag(time_since(ged_sb, 1))", "country_sum(ged_sb)", "country_sum(mmean(ged_sb, 12))",
    "lat()", "lon()",
]


def _pgm_panel(*, holes: bool) -> Panel:
    """6 x 7 cells in 3 countries (and cells without one) over 60 months, ~10 % non-zero;
    with ``holes``, some cells start late and some end early."""
    rng = np.random.default_rng(11)
    cells = [int(gid_from_rowcol(150 + r, 400 + c)) for r in range(6) for c in range(7)]
    owner = rng.choice([-1, 4, 4, 9, 9, 9, 23], len(cells))
    rows = [{"month_id": m, "priogrid_gid": g, "country_id": int(owner[i]),
             "ged_sb": int(rng.choice([0] * 9 + [int(rng.integers(1, 300))]))}
            for m in range(121, 181) for i, g in enumerate(cells)]
    frame = pd.DataFrame(rows)
    if holes:
        late = frame["priogrid_gid"].isin(cells[:5]) & (frame["month_id"] < 140)
        gone = frame["priogrid_gid"].isin(cells[3:9]) & (frame["month_id"] > 170)
        frame = frame[~late & ~gone]
    return validate_panel(frame, "pgm", source="test")[0]


# ------------------------------------------------------------ the whole-grid kernels, as before


def _window_sum_whole(x: np.ndarray, w: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if w > len(x):
        return out
    missing = np.isnan(x)
    total = np.zeros((len(x) + 1, x.shape[1]))
    total[1:] = np.cumsum(np.where(missing, 0.0, x), axis=0)
    holes = np.zeros((len(x) + 1, x.shape[1]), dtype=np.int64)
    holes[1:] = np.cumsum(missing, axis=0)
    out[w - 1:] = total[w:] - total[:-w]
    out[w - 1:][(holes[w:] - holes[:-w]) > 0] = np.nan
    return out


def _time_since_whole(grid: Grid, x: np.ndarray, threshold: float) -> np.ndarray:
    months = np.arange(len(x), dtype=np.int64)[:, None]
    last = np.maximum.accumulate(np.where(x >= threshold, months, -1), axis=0)
    last = np.maximum(last, grid.start - 1)
    out = (months - last).astype(np.float64)
    out[np.isnan(x)] = np.nan
    return out


def _country_sums_whole(grid: Grid, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, n = grid.countries
    keys = np.where(codes >= 0, codes, n).astype(np.int64)
    keys += np.arange(len(keys), dtype=np.int64)[:, None] * (n + 1)
    own = (codes >= 0) & ~np.isnan(x)
    size = len(keys) * (n + 1)
    sums = np.bincount(keys.reshape(-1), weights=np.where(own, x, 0.0).reshape(-1),
                       minlength=size)[keys]
    tally = np.bincount(keys.reshape(-1), weights=own.reshape(-1), minlength=size)[keys]
    return sums, tally


@pytest.mark.parametrize("holes", [False, True])
def test_month_by_month_kernels_equal_the_whole_grid_ones_bit_for_bit(holes: bool) -> None:
    panel = _pgm_panel(holes=holes)
    grid = Grid.from_panel(panel)
    x = grid.column("ged_sb") / 7.0  # fractions: sums whose rounding depends on their order
    x[np.random.default_rng(3).random(x.shape) < 0.05] = np.nan  # undefined values inside
    for w in (1, 3, 12, 36, 60, 61):
        np.testing.assert_array_equal(_window_sum(x, w), _window_sum_whole(x, w), err_msg=f"{w}")
    for threshold in (1.0, 25.0 / 7):
        np.testing.assert_array_equal(_time_since(grid, x, threshold),
                                      _time_since_whole(grid, x, threshold))
    sums, tally, _ = _country_totals(grid, x, counts=True)
    want_sums, want_tally = _country_sums_whole(grid, x)
    np.testing.assert_array_equal(sums, want_sums)
    np.testing.assert_array_equal(tally, want_tally)


@pytest.mark.parametrize("holes", [False, True])
def test_a_compact_design_reads_back_the_float64_values(holes: bool, monkeypatch) -> None:
    """Columns float32 holds exactly are stored as float32 and read back bit for bit; the
    others stay float64; no column is a view pinning a feature's whole grid."""
    panel = _pgm_panel(holes=holes)
    batched = build_design(panel, "ged_sb", COPPER_MESH, first_month=130)
    with monkeypatch.context() as mp:  # the reference: every column kept as float64
        mp.setattr(FeatureMatrix, "compact",
                   staticmethod(lambda v: np.array(v, dtype=np.float64)))
        wide = build_design(panel, "ged_sb", COPPER_MESH, first_month=130)
    assert set(wide.X.column_dtypes) == {np.dtype(np.float64)}
    reference = np.asarray(wide.X)
    assert np.array_equal(np.asarray(batched.X), reference, equal_nan=True)
    assert np.signbit(np.asarray(batched.X)).tolist() == np.signbit(reference).tolist()
    kinds = dict(zip(batched.feature_names, batched.X.column_dtypes, strict=True))
    assert kinds["lag(ged_sb, 1)"] == kinds["lat()"] == np.float32
    assert kinds["mmean(ged_sb, 12)"] == np.float64
    assert batched.X.nbytes < wide.X.nbytes
    assert all(c.base is None for c in batched.X._columns)
    rows = np.array([5, 0, 17, 17, len(batched) - 1])
    np.testing.assert_array_equal(batched.X[rows], reference[rows])
    np.testing.assert_array_equal(batched.X[3:9, 2], reference[3:9, 2])
    mask = np.zeros(len(batched), dtype=bool)
    mask[::7] = True
    np.testing.assert_array_equal(batched.X[mask, 1:4], reference[mask, 1:4])
    full = build_design(panel, "ged_sb", COPPER_MESH)
    tail = int(np.searchsorted(full.months, 130))
    np.testing.assert_array_equal(batched.X, full.X[tail:])
    for name in ("months", "units", "y"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(full, name)[tail:])
        assert getattr(batched, name).dtype == getattr(full, name).dtype
    assert batched.y.dtype == np.float64 and batched.months.dtype == np.int64
    # the design owns its arrays: writing to them never reaches the panel
    batched.y[:] = -1
    assert (panel.frame["ged_sb"] >= 0).all()


def test_features_sharing_a_computed_node_are_evaluated_together() -> None:
    """The shared grid of mmean(ged_sb, 12) is freed after its two users right behind it, not
    held until column 15; every column is still computed exactly once."""
    exprs = parse_features(COPPER_MESH)
    order = [exprs[j].name for j in build._evaluation_order(exprs)]
    assert sorted(order) == sorted(e.name for e in exprs)
    at = order.index("mmean(ged_sb, 12)")
    assert order[at + 1:at + 3] == ["splag(mmean(ged_sb, 12))",
                                    "country_sum(mmean(ged_sb, 12))"]
    at = order.index("time_since(ged_sb, 1)")
    assert order[at + 1] == "splag(time_since(ged_sb, 1))"
    assert order[:6] == [e.name for e in exprs[:6]]  # otherwise the columns' own order
