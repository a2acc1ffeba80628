"""Chunked prediction: the plan fits the budget, and the draws do not depend on the chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ewspipe.features.design import Design
from ewspipe.flows.modelrun import predict_origins, write_predictions
from ewspipe.models.base import BaseForecaster
from ewspipe.models.baselines import Conflictology, Locf
from ewspipe.models.chunking import (
    DRAW_BYTES,
    HEADROOM,
    ROW_BYTES,
    WORKING_COPIES,
    blocks_per_chunk,
    plan_chunks,
    planned_rows,
    predict_chunks,
    split_blocks,
)
from ewspipe.models.forecast import Forecast
from ewspipe.models.stepshifter import Stepshifter
from ewspipe.panel.schema import Level
from ewspipe.partitions import Partition, RunType, Window
from ewspipe.settings import parse_memory_size
from ewspipe.store.predictions import iter_forecast, read_forecast

FIRST, TRAIN_LAST, N_ORIGINS, STEPS = 121, 200, 13, 36
PARTITION = Partition(RunType.CALIBRATION, Window(FIRST, TRAIN_LAST),
                      Window(TRAIN_LAST + 1, TRAIN_LAST + 48), steps=STEPS, sequences=N_ORIGINS)
ORIGINS = [s.origin for s in PARTITION.rolling_origins()]


def _design(n_months: int = 100, n_units: int = 25, seed: int = 0) -> Design:
    """Counts that depend on a lagged feature; unit 25 leaves after month 205, so the
    origins do not all have the same units."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.5, 20.0, (n_months, n_units))
    y = np.zeros_like(x)
    y[2:] = rng.poisson(x[:-2])
    present = np.ones_like(y, dtype=bool)
    present[205 - FIRST + 1:, -1] = False
    t, u = np.nonzero(present)
    return Design(Level.PGM, "priogrid_gid", "ged_sb", (FIRST + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u], np.log1p(x[t, u])[:, None], ("x",))


@pytest.fixture(scope="module")
def design() -> Design:
    return _design()


@pytest.fixture(scope="module", params=["conflictology", "stepshifter"])
def fitted(request: pytest.FixtureRequest, design: Design) -> tuple[BaseForecaster, Forecast]:
    """A sampling model and its whole forecast (every origin at once, the old path)."""
    if request.param == "conflictology":
        model: BaseForecaster = Conflictology(w=6, n_samples=40, seed=3)
    else:
        model = Stepshifter(learner="ridge", steps=STEPS, n_samples=40, seed=2)
    model.fit(design, train_last=TRAIN_LAST)  # type: ignore[attr-defined]
    return model, predict_origins(model, design, PARTITION)


def _same(a: Forecast, b: Forecast) -> None:
    assert a.frame.equals(b.frame)
    assert np.array_equal(a.point, b.point)
    assert np.array_equal(a.samples, b.samples)  # bit for bit, not approximately


@pytest.mark.parametrize("blocks", [1, 5, STEPS, 3 * STEPS, N_ORIGINS * STEPS],
                         ids=["1-step", "5-steps", "36-steps", "3-origins", "whole"])
def test_chunk_size_does_not_change_forecast_or_draws(fitted, design: Design,
                                                      blocks: int) -> None:
    model, whole = fitted
    chunks = split_blocks(ORIGINS, range(1, STEPS + 1), blocks)
    parts = list(predict_chunks(model, design, PARTITION, budget=0, chunks=chunks))
    assert len(parts) == len(chunks)
    assert planned_rows(design, chunks) == len(whole)
    _same(Forecast.concat(parts), whole)


@settings(max_examples=40, deadline=None)
@given(n_origins=st.integers(1, 13), n_steps=st.integers(1, 36), blocks=st.integers(1, 500))
def test_split_blocks_covers_each_block_once_in_order(n_origins: int, n_steps: int,
                                                      blocks: int) -> None:
    origins, steps = list(range(500, 500 + n_origins)), range(1, n_steps + 1)
    chunks = split_blocks(origins, steps, blocks)
    flat = [(o, s) for c in chunks for o, block in c.blocks for s in block]
    assert flat == [(o, s) for o in origins for s in steps]
    assert all(sum(len(b) for _, b in c.blocks) <= max(blocks, 1) for c in chunks)
    # as few chunks as the rule allows: whole origins grouped, or runs of `blocks` steps
    per_origin = -(-n_steps // blocks) if blocks < n_steps else None
    expected = (n_origins * per_origin if per_origin is not None
                else -(-n_origins // (blocks // n_steps)))
    assert len(chunks) == expected


def test_plan_fits_the_budget(design: Design) -> None:
    model = Conflictology(w=6, n_samples=1000).fit(design, train_last=TRAIN_LAST)
    rows = 25
    per_block = rows * (1000 * DRAW_BYTES + ROW_BYTES) * WORKING_COPIES
    budget = int(10 * per_block / (1 - HEADROOM)) + 1
    fit = blocks_per_chunk(rows, 1000, budget)
    assert fit == 10
    assert fit * per_block <= budget * (1 - HEADROOM) < (fit + 1) * per_block
    assert blocks_per_chunk(rows, 1000, 1) == 1  # a step is the smallest chunk
    assert blocks_per_chunk(rows, 1000, budget, reserved=budget) == 1
    assert len(plan_chunks(model, design, PARTITION, budget=1)) == N_ORIGINS * STEPS
    assert len(plan_chunks(model, design, PARTITION, budget=1 << 40)) == 1
    point = Locf().fit(design, train_last=TRAIN_LAST)  # 1 draw: 1,000 times more per chunk
    assert len(plan_chunks(point, design, PARTITION, budget=budget)) < \
        len(plan_chunks(model, design, PARTITION, budget=budget))


def test_what_the_process_holds_comes_out_of_the_budget(design: Design) -> None:
    """The budget bounds the process: bytes it already holds (a cached panel, the design)
    leave fewer to the chunks, and holding the whole budget leaves one step per chunk."""
    model = Conflictology(w=6, n_samples=1000).fit(design, train_last=TRAIN_LAST)
    per_block = 25 * (1000 * DRAW_BYTES + ROW_BYTES) * WORKING_COPIES
    own = design.X.nbytes + design.y.nbytes + design.units.nbytes + design.months.nbytes
    budget = int((4 * STEPS * per_block + own) / (1 - HEADROOM)) + 1  # four origins at once
    free = plan_chunks(model, design, PARTITION, budget=budget)
    half = plan_chunks(model, design, PARTITION, budget=budget, held=budget * 3 // 8)
    full = plan_chunks(model, design, PARTITION, budget=budget, held=budget)
    assert [len(c.origins) for c in free][:3] == [4, 4, 4]
    assert len(free) < len(half) < len(full) == N_ORIGINS * STEPS
    for plan in (free, half, full):
        assert planned_rows(design, plan) == planned_rows(design, free)
    # held below the design's own bytes changes nothing: the design is always reserved
    assert plan_chunks(model, design, PARTITION, budget=budget, held=1) == free


def test_streamed_file_is_the_whole_forecast(fitted, design: Design, tmp_path: Path) -> None:
    model, whole = fitted
    meta = {"model": "m", "target": "ged_sb"}
    streamed, rows, n_samples, _ = write_predictions(model, design, PARTITION,
                                                     tmp_path / "a.parquet", budget=1,
                                                     metadata=meta)
    held, _, _, _ = write_predictions(model, design, PARTITION, tmp_path / "b.parquet",
                                      budget=1 << 40, metadata=meta)
    assert streamed is None and held is not None  # many chunks: read it back from the file
    assert (rows, n_samples) == (len(whole), 40)
    _same(held, whole)
    for name in ("a.parquet", "b.parquet"):
        got, got_meta = read_forecast(tmp_path / name)
        _same(got, whole)
        assert got_meta["rows"] == len(whole) and got_meta["n_samples"] == 40
    groups = list(iter_forecast(tmp_path / "a.parquet"))
    assert len(groups) == N_ORIGINS * STEPS  # a row group per chunk (one step each here)
    _same(Forecast.concat(groups), whole)


def test_plausibility_is_checked_across_chunks(design: Design, tmp_path: Path) -> None:
    model = Conflictology(w=6, n_samples=20, seed=1).fit(design, train_last=TRAIN_LAST)
    whole = predict_origins(model, design, PARTITION)
    ceiling = float(np.quantile(whole.point, 0.99))
    found = [write_predictions(model, design, PARTITION, tmp_path / f"{b}.parquet", budget=b,
                               metadata={}, ceiling=ceiling)[3] for b in (1, 1 << 40)]
    assert found[0] is not None and found[0] == found[1]
    assert found[0].rows_above == int((whole.point > ceiling).sum())


@pytest.mark.parametrize(("text", "size"), [("6GiB", 6 << 30), ("512MiB", 512 << 20),
                                            ("1.5 GB", 1_500_000_000), ("64MiB", 64 << 20)])
def test_memory_sizes(text: str, size: int) -> None:
    assert parse_memory_size(text) == size


@pytest.mark.parametrize("text", ["6", "6 gigs", "GiB", "-1GiB", ""])
def test_memory_size_refused_names_the_units(text: str) -> None:
    with pytest.raises(ValueError, match="MiB"):
        parse_memory_size(text)
