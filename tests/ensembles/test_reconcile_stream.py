"""Streamed reconciliation: any chunking into whole months gives the in-memory result, bit for
bit (values, table, alerts, summary); per-draw sums; refusals of bad chunkings and draw counts."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pandas as pd
import pytest

from ewspipe.ensembles.reconcile import Ownership, Reconciler, month_chunks, reconcile
from ewspipe.errors import CheckFailed, InputError
from ewspipe.flows.ensemble_run import reconcile_by_month
from ewspipe.models.forecast import Forecast

# the package exports the function ``reconcile``, which hides the module of the same name
rec_module = importlib.import_module("ewspipe.ensembles.reconcile")
ORIGINS, STEPS, S = (100, 101), 4, 16
CELLS = np.arange(1, 61)


def _forecast(unit_column: str, units, values: np.ndarray, draws: np.ndarray) -> Forecast:
    o, s, u = np.meshgrid(ORIGINS, np.arange(1, STEPS + 1), units, indexing="ij")
    frame = pd.DataFrame({"origin": o.ravel(), "step": s.ravel(), "month_id": (o + s).ravel(),
                          unit_column: u.ravel()})
    return Forecast(frame=frame, point=values, samples=draws, unit_column=unit_column)


def _case(seed: int = 3, s_grid: int = S, s_country: int = S):
    """60 cells: 5 countries (country 5 owns one cell), 4 cells without a country, 2 absent
    from the mapping; zero-inflated draws with a few negatives; one country-month whose cells
    are all 0 while its forecast is positive."""
    rng = np.random.default_rng(seed)
    owner = np.r_[rng.integers(1, 5, 53), 5, -1, -1, -1, -1]
    own = Ownership.from_frame(pd.DataFrame({"priogrid_gid": CELLS[:58], "country_id": owner}),
                               source="test mapping")
    n = len(ORIGINS) * STEPS * len(CELLS)
    draws = rng.gamma(0.3, 5.0, (n, s_grid)) * (rng.random((n, s_grid)) < 0.3)
    draws[rng.random((n, s_grid)) < 0.01] = -0.25
    point = draws.mean(axis=1)
    point[np.flatnonzero(owner == 5)[0]] = 0.0  # country 5, first month: cells sum to 0
    draws[np.flatnonzero(owner == 5)[0]] = 0.0
    grid = _forecast("priogrid_gid", CELLS, point, draws)
    m = len(ORIGINS) * STEPS * 6
    c_draws = rng.gamma(0.8, 30.0, (m, s_country)) * (rng.random((m, s_country)) < 0.8)
    country = _forecast("country_id", np.arange(1, 7), c_draws.mean(axis=1), c_draws)
    return grid, country, own


def _stream(grid, country, own, cuts, **kw):
    rec = Reconciler(country, own, outside="exclude", grid_model="pgm_ens",
                     country_model="cm_ens", **kw)
    bounds = [0, *cuts, len(grid)]
    chunks = [Forecast(frame=grid.frame.iloc[a:b], point=grid.point[a:b],
                       samples=grid.samples[a:b], unit_column="priogrid_gid")
              for a, b in itertools.pairwise(bounds)]
    parts = list(rec.run(chunks))
    return Forecast.concat(parts), rec.report()


MONTH = len(CELLS)
CHUNKINGS = {
    "one month each": [MONTH * i for i in range(1, len(ORIGINS) * STEPS)],
    "uneven": [MONTH, MONTH * 4, MONTH * 5],
    "one chunk": [],
}


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 rows per sample-sum block: blocks cut every month (60 cells) several times, unevenly
    monkeypatch.setattr(rec_module, "_BLOCK_VALUES", 7 * S)


@pytest.mark.parametrize("cuts", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_any_chunking_equals_the_in_memory_reconciliation_bit_for_bit(cuts) -> None:
    grid, country, own = _case()
    whole = reconcile(grid, country, own, outside="exclude", grid_model="pgm_ens",
                      country_model="cm_ens")
    out, report = _stream(grid, country, own, cuts)
    np.testing.assert_array_equal(out.point, whole.forecast.point)
    np.testing.assert_array_equal(out.samples, whole.forecast.samples)
    pd.testing.assert_frame_equal(report.table, whole.table)
    assert [a.message for a in report.alerts] == [a.message for a in whole.alerts]
    assert [a.details for a in report.alerts] == [a.details for a in whole.alerts]
    assert report.summary == whole.summary
    kinds = {a.details.get("kind", a.source) for a in report.alerts}
    assert {"non_negativity", "unmapped", "zero_grid_sum", "zero_grid_sum_draws"} <= kinds
    assert report.summary["countries_outside_grid"]["countries"] == 1  # country 6


def test_month_chunks_cut_whole_months_within_the_budget() -> None:
    grid, country, own = _case()
    parts = list(month_chunks(grid, max_values=3 * MONTH * S))
    assert [len(p) for p in parts] == [3 * MONTH, 3 * MONTH, 2 * MONTH]
    assert [len(p) for p in month_chunks(grid, max_values=1)] == [MONTH] * 8
    rec = Reconciler(country, own, outside="exclude")
    out = Forecast.concat(list(rec.run(parts)))
    np.testing.assert_array_equal(out.samples, reconcile(grid, country, own,
                                                         outside="exclude").forecast.samples)


def test_every_country_month_draw_sums_to_its_country_draw() -> None:
    grid, country, own = _case(seed=11)
    out, report = _stream(grid, country, own, CHUNKINGS["one month each"])
    owner = own.countries(out.frame["priogrid_gid"], out.frame["origin"])
    ok = owner >= 0
    keys = [out.frame["origin"].to_numpy()[ok], out.frame["step"].to_numpy()[ok], owner[ok]]
    sums = pd.DataFrame(out.samples[ok]).groupby(keys).sum()
    before = pd.DataFrame(np.maximum(grid.samples[ok], 0)).groupby(keys).sum()
    c = country.frame.set_index(["origin", "step", "country_id"]).index
    want = pd.DataFrame(country.samples, index=c).loc[sums.index].to_numpy()
    want = np.where(before.to_numpy() > 0, want, 0.0)
    np.testing.assert_allclose(sums.to_numpy(), want, rtol=1e-9, atol=1e-12)
    lost = int(((before.to_numpy() == 0) & (pd.DataFrame(country.samples, index=c)
                                           .loc[sums.index].to_numpy() > 0)).sum())
    assert report.summary["zero_sum_draws"] == lost > 0


def test_different_draw_counts_are_refused_naming_both_ensembles() -> None:
    grid, country, own = _case(s_grid=S, s_country=10)
    with pytest.raises(InputError) as exc:
        _stream(grid, country, own, CHUNKINGS["uneven"])
    msg = str(exc.value)
    assert "pgm_ens has 16 samples per row and cm_ens 10" in msg
    assert "same number of draws" in msg
    # a point country forecast: every draw of the cells is scaled to the country point
    point_cm = Forecast(frame=country.frame, point=country.point,
                        samples=country.point[:, None], unit_column="country_id")
    out, _ = _stream(grid, point_cm, own, CHUNKINGS["uneven"])
    whole = reconcile(grid, point_cm, own, outside="exclude")
    np.testing.assert_array_equal(out.samples, whole.forecast.samples)
    # a chunk with other draws than the earlier chunks
    rec = Reconciler(country, own, outside="exclude", grid_model="pgm_ens")
    grid16, _, _ = _case(s_grid=S, s_country=S)
    first = next(month_chunks(grid16, max_values=1))
    narrow = Forecast(frame=first.frame, point=first.point, samples=first.samples[:, :1],
                      unit_column="priogrid_gid")
    rec.chunk(narrow)
    with pytest.raises(InputError, match="pgm_ens: a chunk has 16 samples per row, earlier "
                                         "chunks 1"):
        rec.chunk(next(month_chunks(grid16, max_values=1)))


def test_bad_chunkings_and_missing_months_are_refused() -> None:
    grid, country, own = _case()
    with pytest.raises(InputError, match=r"a chunk repeats months \[101\] \(1\) from origins "
                                         r"\[100\] \(1\) of an earlier chunk"):
        _stream(grid, country, own, [MONTH // 2])
    rec = Reconciler(country, own, outside="exclude")
    list(rec.run(list(month_chunks(grid, max_values=1))[:-1]))
    with pytest.raises(InputError, match=r"only in the country forecast: months \[105\] \(1\) "
                                         r"from origins \[101\] \(1\)"):
        rec.report()
    short = Forecast(frame=country.frame.iloc[:-6], point=country.point[:-6],
                     samples=country.samples[:-6], unit_column="country_id")
    with pytest.raises(InputError, match=r"only in the grid forecast: months \[105\] \(1\)"):
        _stream(grid, short, own, CHUNKINGS["one month each"])
    with pytest.raises(InputError, match="have no cell in the grid forecast: countries "
                                         r"\[6\] \(1\)"):
        list(Reconciler(country, own).run(month_chunks(grid)))


def test_a_nan_in_a_later_chunk_fails_naming_the_model_and_row() -> None:
    grid, country, own = _case()
    samples = grid.samples.copy()
    samples[5 * MONTH + 2, 3] = np.nan
    bad = Forecast(frame=grid.frame, point=grid.point, samples=samples,
                   unit_column="priogrid_gid")
    with pytest.raises(CheckFailed, match=r"'pgm_ens' predicted NaN.*month 103, priogrid_gid 3 "
                                          r"\(origin 101\)"):
        _stream(bad, country, own, CHUNKINGS["one month each"])


@pytest.mark.parametrize("chunk_values", [1, 3 * MONTH * S, 10**9])
def test_the_ensemble_runs_month_by_month_assembly_equals_reconcile(chunk_values: int) -> None:
    grid, country, own = _case(seed=7)
    whole = reconcile(grid, country, own, outside="exclude")
    rec = Reconciler(country, own, outside="exclude")
    out = reconcile_by_month(rec, grid, chunk_values=chunk_values)
    assert out.frame is grid.frame
    np.testing.assert_array_equal(out.point, whole.forecast.point)
    np.testing.assert_array_equal(out.samples, whole.forecast.samples)
    assert rec.report().summary == whole.summary
