"""Unit-block chunks: a step too big for the budget is predicted in runs of whole unit blocks,
and every sampling algorithm draws the same values whatever the chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ewspipe.features.design import Design
from ewspipe.flows.modelrun import predict_origins, write_predictions
from ewspipe.models import sampling
from ewspipe.models.base import BaseForecaster
from ewspipe.models.baselines import Conflictology
from ewspipe.models.chunking import (
    HEADROOM,
    Chunk,
    _design_bytes,
    _row_bytes,
    plan_chunks,
    planned_rows,
    predict_chunk,
    predict_chunks,
    split_blocks,
    split_units,
)
from ewspipe.models.forecast import Forecast
from ewspipe.models.hurdle import Hurdle
from ewspipe.models.stepshifter import Stepshifter
from ewspipe.panel.schema import Level
from ewspipe.partitions import Partition, RunType, Window
from ewspipe.progress import NullReporter, reporting
from ewspipe.store.predictions import read_forecast

FIRST, TRAIN_LAST, STEPS, N_ORIGINS = 121, 170, 3, 2
PARTITION = Partition(RunType.CALIBRATION, Window(FIRST, TRAIN_LAST),
                      Window(TRAIN_LAST + 1, TRAIN_LAST + N_ORIGINS + STEPS - 1), steps=STEPS,
                      sequences=N_ORIGINS)
ORIGINS = [s.origin for s in PARTITION.rolling_origins()]
BLOCK = 7  # UNIT_BLOCK in these tests: 40 units are 6 blocks (the last one short)
N_UNITS = 40
SMALL = {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5}

MODELS = {
    "conflictology": lambda: Conflictology(w=6, n_samples=30, seed=3),
    "residual": lambda: Stepshifter(learner="ridge", steps=STEPS, n_samples=30, seed=2,
                                    n_jobs=1),
    "holdout": lambda: Stepshifter(learner="ridge", steps=STEPS, n_samples=30, seed=2,
                                   sampling="holdout", holdout_months=12, spread=1.5,
                                   n_jobs=1),
    "hurdle": lambda: Hurdle(classifier_params=SMALL, regressor_params=SMALL, steps=STEPS,
                             n_samples=30, seed=4, n_jobs=1),
}


def _design(n_units: int = N_UNITS, n_months: int = TRAIN_LAST + N_ORIGINS - FIRST,
            seed: int = 0) -> Design:
    """Counts driven by a lagged feature, with many zeros (for the hurdle's classifier)."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.3, 20.0, (n_months, n_units))
    y = np.zeros_like(x)
    y[2:] = rng.poisson(x[:-2])
    t, u = np.nonzero(np.ones_like(y, dtype=bool))
    return Design(Level.PGM, "priogrid_gid", "ged_sb", (FIRST + t).astype(np.int64),
                  (u + 1).astype(np.int64), y[t, u], np.log1p(x[t, u])[:, None], ("x",))


@pytest.fixture(scope="module")
def design() -> Design:
    return _design()


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request: pytest.FixtureRequest, design: Design) -> tuple[str, BaseForecaster]:
    model = MODELS[request.param]()
    model.fit(design, train_last=TRAIN_LAST)  # type: ignore[attr-defined]
    return request.param, model


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "UNIT_BLOCK", BLOCK)


class _Steps(NullReporter):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, str]] = []

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        self.seen.append((done, total, detail))


def _same(a: Forecast, b: Forecast) -> None:
    assert a.frame.equals(b.frame)
    assert np.array_equal(a.point, b.point)
    assert np.array_equal(a.samples, b.samples)  # bit for bit, not approximately


@pytest.mark.usefixtures("small_blocks")
def test_unit_chunks_are_the_step_chunks_and_the_whole_forecast(fitted, design: Design) -> None:
    _, model = fitted
    whole = predict_origins(model, design, PARTITION)
    assert whole.n_samples == 30
    steps = split_blocks(ORIGINS, range(1, STEPS + 1), 1)
    _same(Forecast.concat(list(predict_chunks(model, design, PARTITION, budget=0,
                                              chunks=steps))), whole)
    units = dict.fromkeys(ORIGINS, N_UNITS)
    for per in (BLOCK, 3 * BLOCK):
        chunks = split_units(ORIGINS, range(1, STEPS + 1), units, per)
        assert planned_rows(design, chunks) == len(whole)
        report = _Steps()
        with reporting(report):
            parts = list(predict_chunks(model, design, PARTITION, budget=0, chunks=chunks,
                                        label="m"))
        assert report.seen == [(i, N_ORIGINS, f"origin {o}")  # once per origin, at its end
                               for i, o in enumerate(ORIGINS, start=1)]
        assert [len(p) for p in parts] == [c.units[1] - c.units[0] for c in chunks]
        _same(Forecast.concat(parts), whole)
    # one chunk alone (a Dask task), even a run that does not start on a block boundary
    last = ORIGINS[-1] - ORIGINS[0]
    rows = slice(last * STEPS * N_UNITS + N_UNITS + 10, last * STEPS * N_UNITS + N_UNITS + 30)
    alone = predict_chunk(model, design, Chunk(((ORIGINS[-1], (2,)),), units=(10, 30)))
    assert np.array_equal(alone.samples, whole.samples[rows])
    assert np.array_equal(alone.point, whole.point[rows])


@pytest.mark.usefixtures("small_blocks")
def test_blocks_draw_from_their_own_generators(design: Design) -> None:
    """Block 0 keeps the (seed, origin, step) key; block b draws from (seed, origin, step, b),
    not from the continuation of block 0's generator."""
    model = Conflictology(w=6, n_samples=30, seed=3).fit(design, train_last=TRAIN_LAST)
    fc = model.predict(design, origin=TRAIN_LAST, steps=[2])
    values, group, counts = model._window(design, TRAIN_LAST, design.month_rows(TRAIN_LAST), 6)

    def boot(block: int, rng: np.random.Generator) -> np.ndarray:
        part = slice(block * BLOCK, min((block + 1) * BLOCK, N_UNITS))
        return sampling.bootstrap_history(values, group, len(counts), 30, rng, groups=part)

    first = sampling.step_rng(3, TRAIN_LAST, 2)
    assert np.array_equal(fc.samples[:BLOCK], boot(0, first))
    assert np.array_equal(fc.samples[BLOCK:2 * BLOCK],
                          boot(1, sampling.step_rng(3, TRAIN_LAST, 2, 1)))
    assert not np.array_equal(fc.samples[BLOCK:2 * BLOCK], boot(1, first))


def test_at_most_one_block_draws_as_before_unit_blocks(design: Design) -> None:
    """A grid of <= UNIT_BLOCK units is one block seeded (seed, origin, step): the draws of
    the code before unit blocks, byte for byte."""
    assert N_UNITS <= sampling.UNIT_BLOCK
    model = Conflictology(w=6, n_samples=30, seed=3).fit(design, train_last=TRAIN_LAST)
    fc = model.predict(design, origin=TRAIN_LAST, steps=[1, 2])
    values, group, counts = model._window(design, TRAIN_LAST, design.month_rows(TRAIN_LAST), 6)
    before = np.stack([sampling.bootstrap_history(values, group, len(counts), 30,
                                                  sampling.step_rng(3, TRAIN_LAST, s))
                       for s in (1, 2)])
    assert np.array_equal(fc.samples, before.reshape(-1, 30))


def test_real_unit_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shipped UNIT_BLOCK: a step of more than two blocks in unit chunks is the whole
    step, bit for bit."""
    n = 2 * sampling.UNIT_BLOCK + 5
    big = _design(n_units=n, n_months=8)
    model = Conflictology(w=3, n_samples=4, seed=1).fit(big, train_last=FIRST + 7)
    whole = model.predict(big, origin=FIRST + 7, steps=[1, 2])
    runs = [slice(0, sampling.UNIT_BLOCK), slice(sampling.UNIT_BLOCK, n)]
    parts = [f for s in (1, 2) for f in model.predict_units(big, origin=FIRST + 7, step=s,
                                                             units=runs)]
    _same(Forecast.concat(parts), whole)


@pytest.mark.usefixtures("small_blocks")
def test_budget_below_one_step_plans_unit_blocks_that_fit(design: Design,
                                                          tmp_path: Path) -> None:
    model = Conflictology(w=6, n_samples=1000, seed=3).fit(design, train_last=TRAIN_LAST)
    reserved, per_unit = _design_bytes(design), _row_bytes(1000)
    step = N_UNITS * per_unit
    budget = int((reserved + 0.5 * step) / (1 - HEADROOM))  # half a step fits: 2 blocks of 7
    plan = plan_chunks(model, design, PARTITION, budget=budget)
    assert all(c.units is not None for c in plan)
    sizes = [c.units[1] - c.units[0] for c in plan]  # type: ignore[index]
    assert sizes == [2 * BLOCK, 2 * BLOCK, N_UNITS - 4 * BLOCK] * N_ORIGINS * STEPS
    assert all(c.units[0] % BLOCK == 0 for c in plan)  # type: ignore[index]
    assert max(sizes) * per_unit <= budget * (1 - HEADROOM) - reserved
    assert planned_rows(design, plan) == N_ORIGINS * STEPS * N_UNITS
    # a whole step fits: whole (origin, step) blocks as before; nothing fits: one block a chunk
    fits = int((reserved + step) / (1 - HEADROOM)) + 1
    assert all(c.units is None for c in plan_chunks(model, design, PARTITION, budget=fits))
    tiny = plan_chunks(model, design, PARTITION, budget=1)
    assert {c.units[1] - c.units[0] for c in tiny} == {BLOCK, N_UNITS % BLOCK}  # type: ignore
    # streamed to the store under that budget: the file is the whole forecast
    whole = predict_origins(model, design, PARTITION)
    streamed, rows, n_samples, _ = write_predictions(model, design, PARTITION,
                                                     tmp_path / "f.parquet", budget=budget,
                                                     metadata={"model": "m"})
    assert streamed is None and (rows, n_samples) == (len(whole), 1000)
    got, meta = read_forecast(tmp_path / "f.parquet")
    _same(got, whole)
    assert meta["rows"] == len(whole)
