"""The demo world must look enough like real data for every pipeline stage to be exercised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ewspipe.panel.months import last_complete_month_id
from ewspipe.panel.priogrid import queen_neighbours, rowcol_from_gid
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.synthetic import COUNT_COLUMNS, DemoWorld, demo_world
from ewspipe.settings import DemoSettings

SMALL = DemoSettings(seed=20240701, countries=40, pgm_cells=300, first_month=121, last_month=300)


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return demo_world(SMALL)


def _cell_matrix(pgm: pd.DataFrame, column: str = "ged_sb") -> tuple[np.ndarray, np.ndarray]:
    """(months x cells) values and the cell ids; relies on the documented sort order."""
    n_cells = pgm["priogrid_gid"].nunique()
    gids = pgm["priogrid_gid"].to_numpy()[:n_cells]
    return pgm[column].to_numpy().reshape(-1, n_cells), gids


def _pooled_morans_i(values: np.ndarray, gids: np.ndarray) -> float:
    """Moran's I over all cell-months, neighbours = queen neighbours in the same month."""
    src, dst = queen_neighbours(gids)
    pos = np.searchsorted(gids, dst)
    inside = (pos < gids.size) & (gids[np.minimum(pos, gids.size - 1)] == dst)
    i, j = np.searchsorted(gids, src[inside]), pos[inside]
    z = values - values.mean()
    return float(gids.size / i.size * (z[:, i] * z[:, j]).sum() / (z**2).sum())


def _assert_reconciles(w: DemoWorld) -> None:
    sums = w.pgm.groupby(["month_id", "country_id"], as_index=False)[list(COUNT_COLUMNS)].sum()
    merged = sums.merge(w.cm, on=["month_id", "country_id"], how="left", suffixes=("_pgm", ""),
                        validate="one_to_one", indicator=True)
    assert (merged["_merge"] == "both").all(), "pgm country-months missing from cm"
    for col in COUNT_COLUMNS:
        np.testing.assert_array_equal(merged[f"{col}_pgm"], merged[col], err_msg=col)


# --------------------------------------------------------------------------- reproducibility


def test_same_settings_give_byte_identical_frames(world: DemoWorld) -> None:
    again = demo_world(SMALL)
    for name in ("cm", "pgm", "countries"):
        left, right = getattr(world, name), getattr(again, name)
        pd.testing.assert_frame_equal(left, right)
        assert pd.util.hash_pandas_object(left).to_numpy().tobytes() == (
            pd.util.hash_pandas_object(right).to_numpy().tobytes()
        )


def test_shorter_world_is_a_prefix_of_the_longer_one(world: DemoWorld) -> None:
    short = demo_world(SMALL, last_month=250)
    assert short.last_month == 250
    for name in ("cm", "pgm"):
        longer = getattr(world, name)
        head = longer[longer["month_id"] <= 250].reset_index(drop=True)
        pd.testing.assert_frame_equal(getattr(short, name), head)


def test_one_month_extension_appends_exactly_one_month(world: DemoWorld) -> None:
    before = demo_world(SMALL, last_month=299)
    assert len(world.cm) - len(before.cm) == (world.cm["month_id"] == 300).sum()
    assert len(world.pgm) - len(before.pgm) == SMALL.pgm_cells


def test_distinct_seeds_give_different_worlds(world: DemoWorld) -> None:
    other = demo_world(SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    assert not world.cm["ged_sb"].equals(other.cm["ged_sb"])
    assert not world.pgm["ged_sb"].equals(other.pgm["ged_sb"])


def test_cm_does_not_depend_on_grid_size(world: DemoWorld) -> None:
    other = demo_world(SMALL.model_copy(update={"pgm_cells": 120}))
    pd.testing.assert_frame_equal(world.cm, other.cm)
    assert other.pgm["priogrid_gid"].nunique() == 120
    _assert_reconciles(other)


def test_last_month_argument_overrides_settings_and_is_checked() -> None:
    assert demo_world(SMALL, last_month=130).cm["month_id"].max() == 130
    with pytest.raises(ValueError, match="before first_month"):
        demo_world(SMALL, last_month=120)


# --------------------------------------------------------------------------- schema


def test_frames_pass_validation_with_documented_layout(world: DemoWorld) -> None:
    cm_panel, cm_report = validate_panel(world.cm, "cm", source="demo")
    pgm_panel, pgm_report = validate_panel(world.pgm, "pgm", source="demo")
    assert cm_report.passed and pgm_report.passed
    assert list(world.cm.columns) == ["month_id", "country_id", *COUNT_COLUMNS]
    assert list(world.pgm.columns) == ["month_id", "priogrid_gid", "country_id", *COUNT_COLUMNS]
    for frame in (world.cm, world.pgm):
        assert (frame.dtypes == np.int64).all()
    # already sorted with a RangeIndex: validation changes no value (pgm columns get reordered)
    pd.testing.assert_frame_equal(cm_panel.frame, world.cm)
    pd.testing.assert_frame_equal(pgm_panel.frame, world.pgm, check_like=True)
    assert (world.cm["month_id"].min(), world.cm["month_id"].max()) == (121, 300)


# --------------------------------------------------------------------------- cm realism


def test_cm_is_zero_inflated_and_ns_os_sparser(world: DemoWorld) -> None:
    zero = {c: float((world.cm[c] == 0).mean()) for c in COUNT_COLUMNS}
    assert 0.75 <= zero["ged_sb"] <= 0.93
    assert zero["ged_ns"] > zero["ged_sb"] and zero["ged_os"] > zero["ged_sb"]
    assert world.cm["ged_sb"].sum() > world.cm["ged_ns"].sum()


def test_cm_conflict_is_persistent(world: DemoWorld) -> None:
    cm = world.cm.sort_values(["country_id", "month_id"])
    active = (cm["ged_sb"] > 0).to_numpy()
    same = cm["country_id"].to_numpy()[1:] == cm["country_id"].to_numpy()[:-1]
    stay = (active[1:] & active[:-1] & same).sum() / (active[:-1] & same).sum()
    assert stay > 0.6 > active.mean()


def test_countries_appear_and_dissolve(world: DemoWorld) -> None:
    cm = world.cm
    last_set = set(cm.loc[cm["month_id"] == cm["month_id"].max(), "country_id"])
    ever = set(cm["country_id"])
    assert last_set < ever
    assert (world.countries["first_month"] > 121).any()
    assert len(ever) == SMALL.countries

    spans = cm.groupby("country_id")["month_id"].agg(["min", "max"])
    table = world.countries.set_index("country_id")
    assert list(table.index) == sorted(ever)
    np.testing.assert_array_equal(table["first_month"], spans["min"])
    np.testing.assert_array_equal(table["last_month"], spans["max"])
    assert table["name"].loc[17] == "Demoland 17"


# --------------------------------------------------------------------------- pgm


def test_pgm_has_exactly_the_requested_cells_every_month(world: DemoWorld) -> None:
    per_month = world.pgm.groupby("month_id")["priogrid_gid"].nunique()
    assert (per_month == SMALL.pgm_cells).all()
    assert world.pgm["priogrid_gid"].nunique() == SMALL.pgm_cells
    assert len(world.pgm) == SMALL.pgm_cells * (300 - 121 + 1)


def test_pgm_region_is_one_compact_blob_and_countries_are_contiguous(world: DemoWorld) -> None:
    first = world.pgm[world.pgm["month_id"] == 121]
    row, col = rowcol_from_gid(first["priogrid_gid"].to_numpy())
    grid = np.full((row.max() - row.min() + 1, col.max() - col.min() + 1), -1)
    grid[row - row.min(), col - col.min()] = first["country_id"].to_numpy()
    queen = np.ones((3, 3))
    assert ndimage.label(grid >= 0, structure=queen)[1] == 1
    assert grid.shape[0] < 2.5 * np.sqrt(SMALL.pgm_cells)  # round, not a strip
    for cid in np.unique(grid[grid >= 0]):
        assert ndimage.label(grid == cid, structure=queen)[1] == 1, cid
    assert (world.pgm.groupby("priogrid_gid")["country_id"].nunique() == 1).all()


def test_every_cell_belongs_to_a_country_present_in_every_month(world: DemoWorld) -> None:
    months = world.cm["month_id"].nunique()
    rows_per_country = world.cm.groupby("country_id").size()
    owners = world.pgm["country_id"].unique()
    assert len(owners) >= 2
    assert (rows_per_country.reindex(owners) == months).all()
    has_cells = set(world.countries.loc[world.countries["has_cells"], "country_id"])
    assert has_cells == set(owners)


def test_pgm_sums_equal_cm_for_every_country_month(world: DemoWorld) -> None:
    _assert_reconciles(world)
    assert world.pgm["ged_sb"].sum() > 0


def test_pgm_is_sparse_clustered_and_persistent(world: DemoWorld) -> None:
    values, gids = _cell_matrix(world.pgm)
    active = values > 0
    assert active.mean() < 0.10  # three countries on 300 cells; the default world is sparser
    assert _pooled_morans_i(np.log1p(values.astype(float)), gids) > 0.1
    stay = (active[1:] & active[:-1]).sum() / active[:-1].sum()
    assert stay > 3 * active.mean()


# --------------------------------------------------------------------------- defaults


def test_default_world_is_realistic() -> None:
    w = demo_world(DemoSettings())
    assert w.last_month == last_complete_month_id()
    validate_panel(w.cm, "cm", source="demo")
    validate_panel(w.pgm, "pgm", source="demo")
    assert w.cm["country_id"].nunique() == 190
    assert w.pgm["priogrid_gid"].nunique() == 2000
    assert 0.75 <= (w.cm["ged_sb"] == 0).mean() <= 0.93
    sb = w.cm["ged_sb"]
    assert sb.max() > 3_000 and sb.max() > 50 * sb[sb > 0].median()  # heavy-tailed
    assert (w.pgm["ged_sb"] == 0).mean() > 0.95
    row, col = rowcol_from_gid(w.pgm["priogrid_gid"].to_numpy()[:2000])
    assert abs(row.mean() - 196.5) < 1 and abs(col.mean() - 400.5) < 1  # centred on 8N 20E
    _assert_reconciles(w)


# --------------------------------------------------------------------------- properties


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=-(2**40), max_value=2**40),
    countries=st.integers(min_value=10, max_value=80),
    cells=st.integers(min_value=50, max_value=400),
    span=st.integers(min_value=0, max_value=80),
)
def test_any_seed_gives_a_valid_reconciled_world(
    seed: int, countries: int, cells: int, span: int
) -> None:
    s = DemoSettings(seed=seed, countries=countries, pgm_cells=cells, first_month=121)
    w = demo_world(s, last_month=121 + span)
    validate_panel(w.cm, "cm", source="demo")
    validate_panel(w.pgm, "pgm", source="demo")
    assert w.pgm["priogrid_gid"].nunique() == cells
    assert len(w.pgm) == cells * (span + 1)
    _assert_reconciles(w)
