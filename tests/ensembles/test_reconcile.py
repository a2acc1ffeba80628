"""pgm -> cm reconciliation: sums, zeros, alerts, coverage errors, per-draw samples, ownership."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewspipe.ensembles.reconcile import (
    NO_COUNTRY,
    UNMAPPED,
    Ownership,
    read_ownership,
    reconcile,
)
from ewspipe.errors import InputError
from ewspipe.models.forecast import Forecast

REL = 1e-6


def _frame(unit_column: str, units, origins=(100,), steps=(1, 2)) -> pd.DataFrame:
    o, s, u = np.meshgrid(origins, steps, units, indexing="ij")
    return pd.DataFrame({"origin": o.ravel(), "step": s.ravel(), "month_id": (o + s).ravel(),
                         unit_column: u.ravel()})


def _grid(values, cells=(1, 2, 3), samples=None, **kw) -> Forecast:
    frame = _frame("priogrid_gid", cells, **kw)
    point = np.asarray(values, dtype=np.float64)
    draws = point[:, None] if samples is None else np.asarray(samples, dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=draws, unit_column="priogrid_gid")


def _cm(values, countries=(7, 8), samples=None, **kw) -> Forecast:
    frame = _frame("country_id", countries, **kw)
    point = np.asarray(values, dtype=np.float64)
    draws = point[:, None] if samples is None else np.asarray(samples, dtype=np.float64)
    return Forecast(frame=frame, point=point, samples=draws, unit_column="country_id")


OWN = Ownership.from_frame(pd.DataFrame({"priogrid_gid": [1, 2, 3], "country_id": [7, 7, 8]}),
                           source="hand mapping")


def _sums(result, own=OWN) -> pd.Series:
    fc = result.forecast
    frame = fc.frame.assign(country_id=own.countries(fc.frame["priogrid_gid"],
                                                     fc.frame["origin"]), value=fc.point)
    return frame.groupby(["month_id", "country_id"])["value"].sum()


def test_hand_case_cells_sum_to_the_country_forecast() -> None:
    # step 1: country 7 cells 1 + 3 = 4 -> 8 (factor 2); country 8 cell 2 -> 1 (0.5)
    # step 2: country 7 cells 2 + 6 -> 4 (0.5); country 8 cell 4 -> 4 (1)
    grid = _grid([1.0, 3.0, 2.0, 2.0, 6.0, 4.0])
    cm = _cm([8.0, 1.0, 4.0, 4.0])
    result = reconcile(grid, cm, OWN)
    np.testing.assert_allclose(result.forecast.point, [2.0, 6.0, 1.0, 1.0, 3.0, 4.0])
    sums = _sums(result)
    np.testing.assert_allclose(sums.to_numpy(), [8.0, 1.0, 4.0, 4.0], rtol=REL)
    assert result.alerts == ()
    table = result.table
    assert list(table["factor"]) == [2.0, 0.5, 0.5, 1.0]
    assert result.summary["country_months"] == 4 and result.summary["factor_alerts"] == 0
    assert list(result.forecast.frame["priogrid_gid"]) == [1, 2, 3, 1, 2, 3]


def test_negatives_are_zeroed_first_and_zero_countries_give_zero_cells() -> None:
    grid = _grid([-1.0, 3.0, 2.0, 2.0, 6.0, 4.0])  # cell 1 step 1 negative -> 0
    cm = _cm([6.0, 0.0, 4.0, 4.0])  # country 8 forecast 0 in step 1
    result = reconcile(grid, cm, OWN)
    np.testing.assert_allclose(result.forecast.point[:3], [0.0, 6.0, 0.0])
    assert (result.forecast.point >= 0).all()
    assert any(a.source == "non_negativity" for a in result.alerts)


def test_factor_alerts_beyond_bounds() -> None:
    grid = _grid([1.0, 0.0, 0.01, 1.0, 1.0, 1.0])
    cm = _cm([40.0, 0.5, 2.0, 0.05])  # factors: 40 (7, step 1), 50 (8), 1 (7), 0.05 (8)
    result = reconcile(grid, cm, OWN)
    factor = [a for a in result.alerts if a.details.get("kind") == "factor"]
    assert [(a.details["country_id"], a.details["month_id"]) for a in factor] == [
        (7, 101), (8, 101), (8, 102)]
    high = factor[0]
    assert high.source == "reconciliation" and high.threshold == 10.0
    assert high.value == pytest.approx(40.0)
    assert "country 7, month 101 (origin 100)" in high.message and "above 10" in high.message
    assert "below 0.1" in factor[2].message
    assert result.summary["factor_alerts"] == 3
    narrow = reconcile(grid, cm, OWN, max_factor=100, min_factor=0.01)
    assert narrow.summary["factor_alerts"] == 0


def test_factor_alerts_skip_sub_death_quantities() -> None:
    grid = _grid([1.0, 0.0, 0.01, 1.0, 1.0, 1.0])
    cm = _cm([40.0, 0.5, 2.0, 0.05])  # country 8, step 1: 0.01 cells vs 0.5 predicted deaths
    result = reconcile(grid, cm, OWN, min_deaths=1.0)
    factor = [a for a in result.alerts if a.details.get("kind") == "factor"]
    assert [(a.details["country_id"], a.details["month_id"]) for a in factor] == [
        (7, 101), (8, 102)]
    # the rescaling itself is unchanged: only the alert is held back
    np.testing.assert_array_equal(result.forecast.point, reconcile(grid, cm, OWN).forecast.point)


def test_zero_grid_sum_with_positive_country_forecast_alerts_and_stays_zero() -> None:
    grid = _grid([0.0, 0.0, 1.0, 2.0, 1.0, 0.0])
    cm = _cm([5.0, 2.0, 4.0, 0.0])  # country 7's cells sum to 0 in step 1, forecast 5
    result = reconcile(grid, cm, OWN)
    np.testing.assert_allclose(result.forecast.point, [0.0, 0.0, 2.0, 8 / 3, 4 / 3, 0.0])
    zero = [a for a in result.alerts if a.details.get("kind") == "zero_grid_sum"]
    assert len(zero) == 1 and zero[0].details["country_id"] == 7
    assert "sum to 0 but the country forecast is 5" in zero[0].message
    assert result.summary["zero_sum_alerts"] == 1
    # country 8 step 2: grid 0, forecast 0: no alert, nothing to place
    assert result.forecast.point[5] == 0.0


def test_cells_whose_country_has_no_forecast_are_an_error() -> None:
    own = Ownership.from_frame(pd.DataFrame({"priogrid_gid": [1, 2, 3],
                                             "country_id": [7, 9, 8]}), source="mapping.csv")
    with pytest.raises(InputError) as exc:
        reconcile(_grid([1.0] * 6), _cm([1.0] * 4), own)
    msg = str(exc.value)
    assert "2 cell-months belong to countries without a country forecast" in msg
    assert "countries [9] (1)" in msg and "months [101, 102] (2)" in msg
    assert "cells [2] (1)" in msg and "mapping.csv" in msg


def test_country_forecasts_without_cells_are_an_error_unless_excluded() -> None:
    cm = _cm([1.0] * 6, countries=(7, 8, 12))
    with pytest.raises(InputError, match=r"2 country-months of the country forecast have no "
                       r"cell.*countries \[12\] \(1\).*outside='exclude'"):
        reconcile(_grid([1.0] * 6), cm, OWN)
    result = reconcile(_grid([1.0] * 6), cm, OWN, outside="exclude")
    assert result.summary["countries_outside_grid"] == {
        "countries": 1, "country_months": 2, "forecast_total": 2.0}
    assert set(result.table["country_id"]) == {7, 8}


def test_month_mismatch_is_an_error_saying_which_months() -> None:
    cm = _cm([1.0] * 6, steps=(1, 2, 3))
    with pytest.raises(InputError) as exc:
        reconcile(_grid([1.0] * 6), cm, OWN)
    msg = str(exc.value)
    assert "cover different months" in msg
    assert "only in the grid forecast: none" in msg
    assert "only in the country forecast: months [103] (1) from origins [100] (1)" in msg


def test_wrong_levels_and_bounds_are_refused() -> None:
    with pytest.raises(InputError, match="pgm grid forecast"):
        reconcile(_cm([1.0] * 4), _cm([1.0] * 4), OWN)
    with pytest.raises(InputError, match="min_factor < 1 < max_factor"):
        reconcile(_grid([1.0] * 6), _cm([1.0] * 4), OWN, max_factor=0.5)


def test_samples_are_reconciled_draw_by_draw() -> None:
    rng = np.random.default_rng(5)
    g_samples = rng.gamma(0.5, 2.0, (6, 50))
    c_samples = rng.gamma(2.0, 3.0, (4, 50))
    grid = _grid(g_samples.mean(axis=1), samples=g_samples)
    cm = _cm(c_samples.mean(axis=1), samples=c_samples)
    result = reconcile(grid, cm, OWN)
    out = result.forecast.samples
    assert out.shape == (6, 50)
    # per draw: country 7 = cells 1 + 2 (rows 0, 1 / 3, 4), country 8 = cell 3 (rows 2 / 5)
    np.testing.assert_allclose(out[0] + out[1], c_samples[0], rtol=REL)
    np.testing.assert_allclose(out[2], c_samples[1], rtol=REL)
    np.testing.assert_allclose(out[3] + out[4], c_samples[2], rtol=REL)
    np.testing.assert_allclose(out[5], c_samples[3], rtol=REL)
    np.testing.assert_allclose(_sums(result).to_numpy(), cm.point, rtol=REL)
    # a point cm forecast: every draw of the cells is scaled to the country point
    point_cm = reconcile(grid, _cm(cm.point), OWN).forecast.samples
    np.testing.assert_allclose(point_cm[0] + point_cm[1], np.full(50, cm.point[0]), rtol=REL)
    with pytest.raises(InputError, match="counts must be equal"):
        reconcile(grid, _cm(cm.point, samples=c_samples[:, :10]), OWN)


def test_ownership_per_month_follows_the_origin() -> None:
    # cell 3 belongs to 8 until month 100, then to a new country 9 (a split)
    table = pd.DataFrame({"month_id": [100, 100, 100, 101, 101, 101],
                          "priogrid_gid": [1, 2, 3, 1, 2, 3],
                          "country_id": [7, 7, 8, 7, 7, 9]})
    own = Ownership.from_frame(table, source="panel")
    assert own.per_month
    assert list(own.countries([3, 3, 3], [100, 101, 99])) == [8, 9, UNMAPPED]
    result = reconcile(_grid([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), _cm([4.0, 2.0, 4.0, 2.0]), own)
    np.testing.assert_allclose(result.forecast.point, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])


def test_cells_without_country_are_left_alone_and_unmapped_ones_warned() -> None:
    own = Ownership.from_frame(pd.DataFrame({"priogrid_gid": [1, 2], "country_id": [7, 8]}),
                               source="partial.csv")
    result = reconcile(_grid([1.0, 1.0, 0.5] * 2), _cm([3.0, 2.0] * 2), own)
    np.testing.assert_allclose(result.forecast.point, [3.0, 2.0, 0.5] * 2)
    warn = [a for a in result.alerts if a.details.get("kind") == "unmapped"]
    assert len(warn) == 1 and "2 cell-months are not in the mapping partial.csv" in warn[0].message
    none = Ownership.from_frame(pd.DataFrame({"priogrid_gid": [1, 2, 3],
                                              "country_id": [7, 8, NO_COUNTRY]}), source="m")
    result = reconcile(_grid([1.0, 1.0, 0.5] * 2), _cm([3.0, 2.0] * 2), none)
    assert result.summary["cell_months_without_country"] == 2
    assert not [a for a in result.alerts if a.details.get("kind") == "unmapped"]


def test_mapping_file_with_priogrid_id_and_its_errors(tmp_path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("priogrid_id,country_id\n1,7\n2,7\n3,8\n")
    own = read_ownership(path)
    assert list(own.countries([3, 1, 4], [0, 0, 0])) == [8, 7, UNMAPPED]
    path.write_text("priogrid_id,country_id\n1,7\n1,8\n")
    with pytest.raises(InputError, match="1 cell pairs appear more than once"):
        read_ownership(path)
    path.write_text("gid,country\n1,7\n")
    with pytest.raises(InputError, match="needs columns priogrid_gid \\(or priogrid_id\\)"):
        read_ownership(path)
    with pytest.raises(InputError, match="file not found"):
        read_ownership(tmp_path / "absent.parquet")


@settings(max_examples=60, deadline=None)
@given(
    n_cells=st.integers(1, 30),
    n_countries=st.integers(1, 5),
    steps=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    zero_share=st.floats(0.0, 0.9),
)
def test_property_reconciled_sums_match_the_country_forecast(
    n_cells: int, n_countries: int, steps: int, seed: int, zero_share: float
) -> None:
    rng = np.random.default_rng(seed)
    cells = np.arange(1, n_cells + 1)
    owner = np.concatenate([np.arange(n_countries), rng.integers(0, n_countries,
                                                                 max(0, n_cells - n_countries))])
    owner = rng.permutation(owner)[:n_cells] + 1
    countries = np.unique(owner)
    own = Ownership.from_frame(pd.DataFrame({"priogrid_gid": cells, "country_id": owner}),
                               source="random")
    step_range = tuple(range(1, steps + 1))
    g = rng.gamma(0.4, 3.0, n_cells * steps) * (rng.random(n_cells * steps) > zero_share)
    g -= 0.1 * (rng.random(n_cells * steps) < 0.05)  # a few negatives
    c = rng.gamma(1.0, 5.0, len(countries) * steps)
    grid = _grid(g, cells=cells, steps=step_range)
    cm = _cm(c, countries=countries, steps=step_range)
    result = reconcile(grid, cm, own)
    assert (result.forecast.point >= 0).all()
    t = result.table
    fc = result.forecast
    frame = fc.frame.assign(country_id=own.countries(fc.frame["priogrid_gid"], 0),
                            value=fc.point)
    sums = frame.groupby(["step", "country_id"])["value"].sum().to_numpy()
    placed = t["grid_sum"].to_numpy() > 0
    want = np.where(placed, t.sort_values(["step", "country_id"])["country_forecast"], 0.0)
    np.testing.assert_allclose(sums, want, rtol=REL, atol=1e-12)
    assert result.summary["zero_sum_alerts"] == int((~placed & (t["country_forecast"] > 0)).sum())
