"""Forecasts written chunk by chunk: the same rows as a whole write, the stored quantiles
of a sample forecast, every draw readable with DuckDB, and no file when a write fails."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ewspipe.models.forecast import Forecast
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.predictions import (
    STORED_QUANTILES,
    iter_forecast,
    quantile_column,
    read_forecast,
    write_forecast_chunks,
)

UNITS, STEPS = 300, 6


def _forecast(samples: int) -> Forecast:
    rows = [(520, s, 520 + s, u) for s in range(1, STEPS + 1) for u in range(1, UNITS + 1)]
    frame = pd.DataFrame(rows, columns=["origin", "step", "month_id", "priogrid_gid"])
    draws = np.random.default_rng(7).gamma(0.3, 5.0, size=(len(rows), samples))
    return Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                    unit_column="priogrid_gid")


def _chunks(fc: Forecast, steps_per_chunk: int) -> list[Forecast]:
    """Whole (origin, step) blocks, in order, as predict_chunks makes them."""
    out = []
    for first in range(1, STEPS + 1, steps_per_chunk):
        keep = fc.frame["step"].between(first, first + steps_per_chunk - 1).to_numpy()
        out.append(Forecast(fc.frame[keep].reset_index(drop=True), fc.point[keep],
                            fc.samples[keep], fc.unit_column))
    return out


@pytest.mark.parametrize("samples", [1, 50])
def test_chunked_partition_equals_whole_and_carries_quantiles(tmp_path: Path,
                                                              samples: int) -> None:
    fc = _forecast(samples)
    store = PredictionStore(tmp_path)
    whole, _ = store.write(fc, level="pgm", run="whole", model="m")
    info, created = store.write_chunks(_chunks(fc, 1), rows=len(fc), level="pgm",
                                       run="chunked", model="m", metadata={"status": "x"})
    assert created
    a, b = pq.read_table(whole.path), pq.read_table(info.path)
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), name
    assert store.metadata("pgm", "chunked", "m")["rows"] == len(fc)
    assert pq.ParquetFile(info.path).num_row_groups == STEPS  # one per (origin, step) block
    names = [quantile_column(q) for q in STORED_QUANTILES]
    if samples == 1:  # a point forecast: no quantile columns, the same file as before
        assert not set(names) & set(b.column_names)
        return
    stored = np.stack([b.column(n).to_numpy() for n in names], axis=1)
    draws32 = fc.samples.astype(np.float32)
    want = np.quantile(draws32, list(STORED_QUANTILES), axis=1).T.astype(np.float32)
    np.testing.assert_array_equal(stored, want)  # what the API computes from the samples
    assert stored.dtype == np.float32 and (np.diff(stored, axis=1) >= 0).all()
    count, width = duckdb.sql(
        f"SELECT count(*), sum(len(samples)) FROM read_parquet('{info.path}')").fetchall()[0]
    assert (count, width) == (len(fc), len(fc) * samples)  # every draw landed


def test_existing_partition_is_kept_without_reading_the_chunks(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path)
    fc = _forecast(5)
    store.write(fc, level="pgm", run="r", model="m")

    def never():  # a chunk iterator that must not be consumed
        raise AssertionError("read the chunks of a stored partition")
        yield fc

    _, created = store.write_chunks(never(), rows=len(fc), level="pgm", run="r", model="m")
    assert not created


def test_work_file_streams_back_by_row_group(tmp_path: Path) -> None:
    fc = _forecast(20)
    path = write_forecast_chunks(_chunks(fc, 4), tmp_path / "f.parquet", metadata={"a": 1},
                                 rows=len(fc))
    groups = list(iter_forecast(path))
    assert [len(g) for g in groups] == [4 * UNITS, 2 * UNITS]
    back = Forecast.concat(groups)
    whole, meta = read_forecast(path)
    for got in (back, whole):
        assert got.frame.equals(fc.frame)
        assert np.array_equal(got.samples, fc.samples)
    assert meta["rows"] == len(fc) and meta["n_samples"] == 20 and meta["a"] == 1


@pytest.mark.parametrize("rows", [0, 10])
def test_wrong_row_count_or_failed_chunk_leaves_no_file(tmp_path: Path, rows: int) -> None:
    fc = _forecast(3)
    target = tmp_path / "f.parquet"
    with pytest.raises(ValueError, match=r"planned|no rows"):
        write_forecast_chunks(_chunks(fc, 2) if rows else [], target, metadata={}, rows=rows)

    def failing():
        yield _chunks(fc, 2)[0]
        raise RuntimeError("the model failed mid-way")

    with pytest.raises(RuntimeError):
        write_forecast_chunks(failing(), target, metadata={}, rows=len(fc))
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_stored_quantiles_are_np_quantile_of_the_draws_bit_for_bit() -> None:
    """draw_quantiles sorts before np.quantile (faster); the numbers are np.quantile's."""
    from ewspipe.store.predictions import STORED_QUANTILES, draw_quantiles, quantile_column

    rng = np.random.default_rng(4)
    for dtype, s in ((np.float32, 100), (np.float64, 7), (np.float32, 1)):
        draws = np.floor(rng.gamma(0.4, 20.0, (500, s)) * (rng.random((500, s)) > 0.6))
        draws = (draws + rng.random((500, s)) * (rng.random((500, s)) < 0.1)).astype(dtype)
        got = draw_quantiles(draws, STORED_QUANTILES)
        want = np.quantile(draws, list(STORED_QUANTILES), axis=1).astype(np.float32)
        for i, q in enumerate(STORED_QUANTILES):
            assert got[quantile_column(q)].tobytes() == want[i].tobytes()


@settings(max_examples=200, deadline=None)
@given(draws=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                        st.tuples(st.integers(1, 30), st.integers(1, 40)),
                        elements={"allow_nan": False, "allow_infinity": False,
                                  "min_value": -1e6, "max_value": 1e6}),
       levels=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=9))
def test_sorted_quantiles_are_np_quantile_bits(draws: np.ndarray, levels: list[float]) -> None:
    from ewspipe.store.predictions import _sorted_linear_quantiles

    got = _sorted_linear_quantiles(np.sort(draws, axis=1), levels)
    want = np.quantile(draws, levels, axis=1)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    if not np.signbit(draws[draws == 0]).any():  # -0.0 and 0.0 sort as equals: either
        assert got.tobytes() == want.tobytes()     # may come first, so only then bit for bit


def test_sorted_quantiles_of_a_row_with_nan_are_nan() -> None:
    from ewspipe.store.predictions import _sorted_linear_quantiles

    draws = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]])
    got = _sorted_linear_quantiles(np.sort(draws, axis=1), [0.05, 0.5])
    np.testing.assert_array_equal(got, np.quantile(draws, [0.05, 0.5], axis=1))
