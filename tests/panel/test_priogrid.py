import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewspipe.panel.priogrid import (
    N_CELLS,
    cell_centre,
    gid_from_latlon,
    gid_from_rowcol,
    queen_neighbours,
    rowcol_from_gid,
)


def test_known_cells():
    # corners of the lattice
    assert gid_from_latlon(-90, -180) == 1
    assert gid_from_latlon(89.9, 179.9) == N_CELLS
    # Damascus 33.51N 36.29E -> row 248, col 433
    assert gid_from_latlon(33.51, 36.29) == (248 - 1) * 720 + 433
    lat, lon = cell_centre(np.array([1]))
    assert (lat[0], lon[0]) == (-89.75, -179.75)


@given(st.integers(1, N_CELLS))
def test_gid_rowcol_centre_round_trip(gid):
    row, col = rowcol_from_gid(gid)
    assert gid_from_rowcol(row, col) == gid
    lat, lon = cell_centre(gid)
    assert gid_from_latlon(lat, lon) == gid


def test_queen_neighbours_interior_and_edges():
    centre = gid_from_rowcol(100, 100)
    src, dst = queen_neighbours([centre])
    assert len(dst) == 8 and set(src.tolist()) == {int(centre)}
    expected = {int(gid_from_rowcol(100 + dr, 100 + dc))
                for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)}
    assert set(dst.tolist()) == expected
    # longitude wraps: col 1's west neighbour is col 720
    _, dst = queen_neighbours([gid_from_rowcol(100, 1)])
    assert int(gid_from_rowcol(100, 720)) in set(dst.tolist())
    # latitude does not wrap: the bottom row has 5 neighbours
    _, dst = queen_neighbours([gid_from_rowcol(1, 10)])
    assert len(dst) == 5


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="priogrid_gid must be in"):
        rowcol_from_gid([0])
    with pytest.raises(ValueError, match="latitude"):
        gid_from_latlon(91, 0)
    with pytest.raises(ValueError, match="longitude"):
        gid_from_latlon(0, np.nan)
