"""The global demo world: every PRIO-GRID cell with its real owner, reconciled with cm; and the
default world, which must not change by a byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ewspipe.errors import InputError, SettingsError
from ewspipe.panel.global_grid import SHARED_DIR_ENV
from ewspipe.panel.synthetic import COUNT_COLUMNS, DemoWorld, demo_world
from ewspipe.settings import DemoSettings, load_settings

GLOBAL_SHORT = DemoSettings(pgm_cells="global", first_month=121, last_month=160)

# digests of today's default world (2000 cells, 190 countries) up to month 450: the disc
# world is what every test, benchmark and tutorial runs on, so it must never drift
PINNED = {
    "cm": "f04e4e9320639044befa9bc62e178c7a",
    "pgm": "aa7632a73c5bb277b10346cc7c6d9921",
    "countries": "8b8bac7dc1d02d4cb8e2183d2076a70e",
}


def _digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame).to_numpy().tobytes())
    return h.hexdigest()[:32]


@pytest.fixture(scope="module")
def table(shared_data: Path) -> pd.DataFrame:
    return pq.read_table(shared_data / "priogrid_country" / "priogrid.parquet").to_pandas()


@pytest.fixture(scope="module")
def world(table: pd.DataFrame) -> DemoWorld:
    return demo_world(GLOBAL_SHORT)


def test_default_world_is_unchanged() -> None:
    w = demo_world(DemoSettings(), last_month=450)
    assert {name: _digest(getattr(w, name)) for name in PINNED} == PINNED


def test_global_world_has_every_cell_with_its_real_owner(world: DemoWorld,
                                                          table: pd.DataFrame) -> None:
    months = 160 - 121 + 1
    assert world.pgm_cells == len(table) and world.pgm_rows == len(table) * months
    first = world.pgm[world.pgm["month_id"] == 121]
    expected = table.sort_values("priogrid_id")
    np.testing.assert_array_equal(first["priogrid_gid"], expected["priogrid_id"])
    np.testing.assert_array_equal(first["country_id"], expected["country_id"])
    assert len(world.pgm) == len(table) * months
    # the cm countries are exactly the owners, every month, with their real names
    owners = np.unique(table["country_id"])
    np.testing.assert_array_equal(world.countries["country_id"], owners)
    assert world.countries["has_cells"].all()
    assert (world.cm.groupby("month_id")["country_id"].nunique() == owners.size).all()
    names = dict(zip(world.countries["country_id"], world.countries["name"], strict=True))
    assert names[57] == "Ethiopia" and len(set(names.values())) == owners.size


def test_global_world_reconciles_with_cm_every_month(world: DemoWorld) -> None:
    sums = world.pgm.groupby(["month_id", "country_id"])[list(COUNT_COLUMNS)].sum()
    cm = world.cm.set_index(["month_id", "country_id"])[list(COUNT_COLUMNS)]
    pd.testing.assert_frame_equal(sums, cm.loc[sums.index])
    assert len(sums) == len(cm)
    assert world.pgm["ged_sb"].sum() > 0 and (world.pgm["ged_sb"] == 0).mean() > 0.99


def test_global_world_is_deterministic_prefix_stable_and_blockwise(world: DemoWorld) -> None:
    blocks = list(demo_world(GLOBAL_SHORT).pgm_blocks(7))
    assert [b["month_id"].nunique() for b in blocks] == [7] * 5 + [5]
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), world.pgm)
    short = demo_world(GLOBAL_SHORT, last_month=130)
    pd.testing.assert_frame_equal(short.pgm, world.pgm[world.pgm["month_id"] <= 130])
    pd.testing.assert_frame_equal(short.cm, world.cm[world.cm["month_id"] <= 130])
    other = demo_world(GLOBAL_SHORT.model_copy(update={"seed": 7}), last_month=130)
    assert not other.cm["ged_sb"].equals(short.cm["ged_sb"])


def test_global_world_without_the_table_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError, match=f"priogrid.parquet.*absent.*{SHARED_DIR_ENV}"):
        demo_world(GLOBAL_SHORT)
    monkeypatch.delenv(SHARED_DIR_ENV)
    with pytest.raises(InputError, match=f"{SHARED_DIR_ENV}, which is not set"):
        demo_world(GLOBAL_SHORT)


def test_global_is_a_demo_setting(tmp_path: Path) -> None:
    config = tmp_path / "ewspipe.toml"
    config.write_text('[demo]\npgm_cells = "global"\n')
    assert load_settings(config).demo.pgm_cells == "global"
    config.write_text('[demo]\npgm_cells = "2000"\n')
    with pytest.raises(SettingsError, match=r"pgm_cells.*50 to 13110.*global"):
        load_settings(config)
