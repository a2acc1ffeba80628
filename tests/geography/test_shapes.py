"""Country shapes merged from PRIO-GRID cells: exact to the cells, one per country of the
global table, a demo world drawn from its own cells, and a broken table a clear message."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewspipe.errors import InputError
from ewspipe.geography import country_geometry, shapes
from ewspipe.geography.shapes import build_shapes
from ewspipe.geography.table import read_cell_countries, table_path
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings

MONTHS = range(400, 404)


def _rings(path: str) -> list[np.ndarray]:
    """SVG path data (M, h, v, l, z) back to rings of (lon, lat) points."""
    rings = []
    for sub in re.findall(r"M[^M]*", path):
        assert sub.endswith("z")
        tokens = re.findall(r"[Mhvl]|-?[\d.]+(?:e-?\d+)?", sub[:-1])
        x = y = 0.0
        points, i = [], 0
        while i < len(tokens):
            cmd = tokens[i]
            if cmd == "M":
                x, y = float(tokens[i + 1]), float(tokens[i + 2])
                i += 3
            elif cmd == "h":
                x, i = x + float(tokens[i + 1]), i + 2
            elif cmd == "v":
                y, i = y + float(tokens[i + 1]), i + 2
            else:
                x, y, i = x + float(tokens[i + 1]), y + float(tokens[i + 2]), i + 3
            points.append((x, -y))
        rings.append(np.array(points))
    return rings


def _inside(point: tuple[float, float], rings: list[np.ndarray]) -> bool:
    """Even-odd rule over every ring (what a browser fills, holes included)."""
    px, py = point
    crossings = 0
    for ring in rings:
        xs, ys = ring[:, 0], ring[:, 1]
        xs2, ys2 = np.roll(xs, -1), np.roll(ys, -1)
        straddle = (ys > py) != (ys2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = xs + (py - ys) * (xs2 - xs) / (ys2 - ys)
        crossings += int(np.sum(straddle & (px < at)))
    return crossings % 2 == 1


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.tuples(st.integers(100, 108), st.integers(300, 308)),
                       st.sampled_from([4, 7, 9]), min_size=1, max_size=50))
def test_a_shape_covers_exactly_its_cells(cells: dict[tuple[int, int], int]) -> None:
    gids = np.array([r * 720 + c + 1 for r, c in cells])
    geo = build_shapes(gids, np.array(list(cells.values())))
    assert set(geo["countries"]) == {str(c) for c in cells.values()}
    for cid, shape in geo["countries"].items():
        own = {rc for rc, c in cells.items() if str(c) == cid}
        assert shape["cells"] == len(own) and shape["outline"] == shape["fill"]
        rings = _rings(shape["fill"])
        for r in range(99, 110):
            for c in range(299, 310):
                centre = (-180 + 0.5 * c + 0.25, -90 + 0.5 * r + 0.25)
                assert _inside(centre, rings) == ((r, c) in own), (cid, r, c)


def test_every_country_of_the_global_table_gets_a_shape() -> None:
    table = read_cell_countries(table_path(load_settings())[0])
    assert len(table.gids) == 66_205
    geo = build_shapes(table.gids, table.country_ids)
    ids = set(np.unique(table.country_ids).astype(str))
    assert set(geo["countries"]) == ids and len(ids) == 187
    assert all(s["fill"].startswith("M") and s["cells"] > 0 for s in geo["countries"].values())
    lon, lat = geo["countries"]["117"]["centre"]  # Ukraine
    assert 22 < lon < 40 and 44 < lat < 53
    assert geo["bbox"] == [-180.0, -56.0, 180.0, 83.5]


# --------------------------------------------------------------------------- worlds


@pytest.fixture()
def ws(tmp_path: Path) -> Settings:
    return load_settings(state_dir=tmp_path / "state")


def _store(settings: Settings, level: str, rows: list[dict[str, object]], kind: str) -> str:
    frame = pd.DataFrame([{"month_id": m, **r} for m in MONTHS for r in rows])
    return import_frame(frame, level, SnapshotStore(settings.snapshot_dir),
                        source={"kind": kind}, source_name=f"{level} {kind} table",
                        limits=InputLimits(min_months=1)).manifest.id


CM = [{"country_id": 117, "ged_sb": 3, "country_name": "Ukraine", "isoab": "UKR"},
      {"country_id": 189, "ged_sb": 0, "country_name": "USSR", "isoab": "SUN"}]
PGM = [{"priogrid_gid": g, "country_id": 117, "ged_sb": 0} for g in (1000, 1001, 1721)]


def test_a_demo_world_is_drawn_from_its_own_cells(ws: Settings) -> None:
    _store(ws, "cm", CM, "demo")
    pgm = _store(ws, "pgm", PGM, "demo")
    geo = country_geometry(ws)
    assert geo["snapshot"] == pgm and geo["source"] == f"cells of pgm snapshot {pgm}"
    assert list(geo["countries"]) == ["117"] and geo["countries"]["117"]["cells"] == 3
    assert geo["missing"] == [{"country_id": 189, "name": "USSR", "isoab": "SUN",
                               "label": "USSR (SUN)"}]


def test_a_real_world_is_drawn_from_the_global_table(ws: Settings) -> None:
    _store(ws, "cm", CM, "file")
    _store(ws, "pgm", PGM, "file")
    geo = country_geometry(ws)
    assert "views-reporting" in geo["source"] and geo["note"] is None
    assert len(geo["countries"]) == 187 and geo["countries"]["117"]["cells"] > 300
    assert [m["country_id"] for m in geo["missing"]] == [189]  # historical: no cells


def _settings_with(tmp_path: Path, folder: str) -> Settings:
    config = tmp_path / "ewspipe.toml"
    config.write_text(f'[workspace]\nstate_dir = "state"\n[geography]\npriogrid_country = '
                      f'"{folder}"\n')
    return load_settings(config)


def test_a_broken_table_is_a_clear_message_and_the_map_falls_back(tmp_path: Path) -> None:
    ws = _settings_with(tmp_path, "nowhere")
    with pytest.raises(InputError, match=r"\[geography\] priogrid_country .*nowhere holds no "
                       r"priogrid.parquet"):
        table_path(ws)
    _store(ws, "cm", CM, "file")
    _store(ws, "pgm", PGM, "file")
    geo = country_geometry(ws)
    assert "grid snapshot's cells instead" in geo["note"] and "nowhere" in geo["note"]
    assert list(geo["countries"]) == ["117"] and geo["source"].startswith("cells of")


@pytest.mark.parametrize(("table", "message"), [
    (None, "not a readable Parquet table"),
    (pa.table({"gid": [1], "country_id": [2]}), "no priogrid_id or priogrid_gid column"),
    (pa.table({"priogrid_id": [1.5], "country_id": [2]}), "whole numbers"),
    (pa.table({"priogrid_id": [1, 1], "country_id": [2, 3]}), "more than once"),
    (pa.table({"priogrid_id": [0], "country_id": [2]}), "1..259200"),
])
def test_a_bad_table_file_is_refused_by_name(tmp_path: Path, table: pa.Table | None,
                                             message: str) -> None:
    folder = tmp_path / "table"
    folder.mkdir()
    if table is None:
        (folder / "priogrid.parquet").write_bytes(b"PAR1 not parquet")
    else:
        pq.write_table(table, folder / "priogrid.parquet")
    ws = _settings_with(tmp_path, "table")
    with pytest.raises(InputError, match=message) as err:
        read_cell_countries(table_path(ws)[0])
    assert str(folder / "priogrid.parquet") in str(err.value)


def test_without_shapely_the_map_says_how_to_install_it(
    ws: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _store(ws, "cm", CM, "file")
    _store(ws, "pgm", PGM, "file")
    monkeypatch.setitem(sys.modules, "shapely", None)  # `import shapely` fails
    monkeypatch.setattr(shapes, "_table_shapes", shapes._table_shapes.__wrapped__)
    monkeypatch.setattr(shapes, "_snapshot_shapes", shapes._snapshot_shapes.__wrapped__)
    geo = country_geometry(ws)
    assert geo["countries"] == {} and "pip install 'shapely>=2.0'" in geo["note"]
