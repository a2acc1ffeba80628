"""Streamed scoring (evaluation.streamed) against the in-memory evaluate, bit for bit, and the
engine's constant-draw fast path against the sorted-draws formula."""

from __future__ import annotations

import json
from itertools import pairwise
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ewspipe.errors import InputError
from ewspipe.evaluation import metrics as engine
from ewspipe.evaluation.metrics import Accumulator, get_metric, names
from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.evaluation.streamed import StreamedScorer, iter_chunks, score_streamed
from ewspipe.models.forecast import Forecast

UNIT = "priogrid_gid"


def _forecast(seed: int, *, origins: int, steps: int, units: int, s: int, const_share: float,
              integer: bool) -> tuple[Forecast, pd.DataFrame]:
    """Draws with a share of constant rows (zeros and other values), actuals with gaps."""
    rng = np.random.default_rng(seed)
    o = np.repeat(np.arange(200, 200 + origins), steps * units)
    step = np.tile(np.repeat(np.arange(1, steps + 1), units), origins)
    unit = np.tile(np.arange(10, 10 + units), origins * steps)
    n = len(o)
    samples = rng.gamma(0.5, 8.0, size=(n, s))
    const = rng.random(n) < const_share
    values = np.where(rng.random(n) < 0.7, 0.0, rng.gamma(1.0, 3.0, n))
    samples[const] = values[const, None]
    if integer:
        samples = np.floor(samples)
    point = samples.mean(axis=1) if s > 1 else samples[:, 0].copy()
    frame = pd.DataFrame({"origin": o, "step": step, "month_id": o + step, UNIT: unit})
    actuals = frame[["month_id", UNIT]].drop_duplicates()
    actuals = actuals[rng.random(len(actuals)) < 0.9].sample(frac=1.0, random_state=seed)
    m = len(actuals)
    actuals = actuals.assign(value=np.floor(rng.gamma(0.4, 6.0, m)) * (rng.random(m) < 0.4))
    return Forecast(frame, point, samples, UNIT), actuals


def _cut(forecast: Forecast, cuts: list[int]) -> list[Forecast]:
    """Chunks at arbitrary row boundaries (inside (origin, step) blocks too)."""
    edges = sorted({0, len(forecast), *(c % (len(forecast) + 1) for c in cuts)})
    return [Forecast(forecast.frame.iloc[a:b], forecast.point[a:b], forecast.samples[a:b], UNIT)
            for a, b in pairwise(edges)]


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), origins=st.integers(1, 3), steps=st.integers(1, 4),
       units=st.integers(2, 15), s=st.sampled_from([1, 2, 9, 40]),
       const_share=st.sampled_from([0.0, 0.6, 1.0]), integer=st.booleans(),
       block=st.sampled_from([3, 16, 4096]), point_source=st.sampled_from(["point",
                                                                           "sample_mean"]),
       cuts=st.lists(st.integers(0, 400), max_size=8))
def test_streamed_equals_in_memory_for_any_chunking(
    seed: int, origins: int, steps: int, units: int, s: int, const_share: float,
    integer: bool, block: int, point_source: str, cuts: list[int],
) -> None:
    """Every registry metric, pooled and in every scheme, with unscored rows: the streamed
    result is the in-memory one to the last bit, whatever the chunk and block boundaries."""
    forecast, actuals = _forecast(seed, origins=origins, steps=steps, units=units, s=s,
                                  const_share=const_share, integer=integer)
    with patch.object(engine, "_sample_chunk_rows", lambda _: block), \
            patch.object(engine, "POINT_CHUNK_ROWS", block):
        try:
            expected = evaluate(join_actuals(forecast, actuals), names(),
                                point_source=point_source).to_dict()  # type: ignore[arg-type]
        except InputError as exc:  # e.g. no actual at all: the stream refuses the same way
            with pytest.raises(InputError, match="nothing to score"):
                score_streamed(_cut(forecast, cuts), actuals, names())
            assert "nothing to score" in str(exc)
            return
        got = score_streamed(_cut(forecast, cuts), actuals, names(),
                             point_source=point_source).to_dict()  # type: ignore[arg-type]
    _same(got, expected)


def _sample_terms() -> list[engine._Term]:
    metrics = [get_metric(n) for n in names()]
    terms = [t for m in metrics if m.input == "samples" for t in (*m.terms(), *m.collected())]
    return list(dict.fromkeys(terms))


@pytest.mark.parametrize("s", [1, 2, 7, 100, 1000])
def test_constant_rows_closed_form_equals_sorted_formula(s: int) -> None:
    """Rows whose draws are all equal: every sample term's closed form (no sort) gives the
    very bits of the sorted-draws formula, for float and integer values, including y == c."""
    rng = np.random.default_rng(s)
    c = np.concatenate([np.zeros(20), np.floor(rng.gamma(1.0, 20.0, 40)),
                        rng.gamma(1.0, 20.0, 40), [25.0, 25.0, 0.1, 0.3]])
    y = np.concatenate([np.floor(rng.gamma(0.5, 30.0, len(c) - 6)), [0.0, 25.0, 26.0, 0.1,
                                                                      0.0, 0.3]])
    draws = np.repeat(c[:, None], s, axis=1)
    general = engine._Rows(y, None, draws.copy(), np.empty_like(draws), None, None)
    fast = engine._ConstRows(y, c, s)
    for term in _sample_terms():
        want = engine._KERNELS[term.kind](general, term.param)
        got = engine._CONST_KERNELS[term.kind](fast, term.param)
        assert np.array_equal(got, want), term
    assert not np.array_equal(engine._CONST_KERNELS["crps"](fast, 0.0), np.abs(c - y)) or \
        s < 100, "float copies: a naive |c - y| would not be the general formula's bits"


@pytest.mark.parametrize(("n", "share"), [(300, 0.8), (301, 0.5), (263, 0.97)])
def test_mixed_block_fast_path_equals_sorted_formula(n: int, share: float) -> None:
    """A block mixing constant and varying rows: per-row terms from the accumulator (one row
    per cell) equal the sorted-draws formula over the whole block, to the last bit (BLAS
    rounds a row by its place in the call, so the varying rows keep their places)."""
    rng = np.random.default_rng(n)
    s = 1000
    draws = rng.gamma(0.4, 10.0, size=(n, s))
    const = rng.random(n) < share
    draws[const] = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(1.0, 4.0, n))[const, None]
    y = np.floor(rng.gamma(0.5, 10.0, n))
    metrics = [get_metric(m) for m in names() if get_metric(m).input == "samples"]
    acc = Accumulator(metrics, block=n, n_cells=n)
    acc.add(y, None, draws, np.arange(n))
    totals = acc.close()
    ordered = np.sort(draws, axis=1)
    general = engine._Rows(y, None, ordered, np.empty_like(ordered), None, None)
    for term in _sample_terms():
        want = engine._KERNELS[term.kind](general, term.param)
        got = totals.sums[term] if term in totals.sums else totals.collected[term]
        assert np.array_equal(got, want), term


def test_iter_chunks_whole_blocks_in_order() -> None:
    forecast, _ = _forecast(1, origins=3, steps=4, units=10, s=5, const_share=0.5,
                            integer=True)
    for rows in (1, 10, 25, 1000):
        chunks = list(iter_chunks(forecast, rows))
        assert np.array_equal(np.concatenate([c.samples for c in chunks]), forecast.samples)
        assert all(len(c) <= max(rows, 10) for c in chunks)
        for a, b in pairwise(chunks):  # never split inside a block
            last, first = a.frame.iloc[-1], b.frame.iloc[0]
            assert (last["origin"], last["step"]) != (first["origin"], first["step"])
    assert len(list(iter_chunks(forecast, 10))) == 12
    with pytest.raises(InputError, match="chunk rows"):
        next(iter_chunks(forecast, 0))


def test_streamed_refusals_match_in_memory() -> None:
    """Bad draws in a later chunk: the same message (metric, count, first row) as in memory;
    chunks of different widths and a stream with no actuals are refused clearly."""
    forecast, actuals = _forecast(2, origins=2, steps=3, units=8, s=6, const_share=0.5,
                                  integer=False)
    samples = forecast.samples.copy()
    samples[40, 2] = np.nan
    samples[41] = np.inf  # a constant row of inf is not a finite forecast either
    bad = Forecast(forecast.frame, forecast.point, samples, UNIT)
    with pytest.raises(InputError) as in_memory:
        evaluate(join_actuals(bad, actuals), ["crps", "mse"])
    with pytest.raises(InputError) as streamed:
        score_streamed(iter_chunks(bad, 8), actuals, ["crps", "mse"])
    assert str(streamed.value) == str(in_memory.value)
    assert "2 of" in str(streamed.value) and "NaN or infinite sample" in str(streamed.value)

    scorer = StreamedScorer(actuals, ["crps"])
    chunks = list(iter_chunks(forecast, 8))
    scorer.add(chunks[0])
    wide = Forecast(chunks[1].frame, chunks[1].point,
                    np.repeat(chunks[1].samples, 2, axis=1), UNIT)
    with pytest.raises(InputError, match="same number of samples"):
        scorer.add(wide)
    with pytest.raises(InputError, match="nothing to score"):
        score_streamed(iter_chunks(forecast, 8), actuals.iloc[:0], ["crps"])


def test_run_scoring_streams_and_matches_the_whole_forecast() -> None:
    """flows.modelrun.score_chunks (what a run stores) on chunks of a sample forecast: the
    run's metric set, equal to scoring the whole forecast; no chunk at all is refused."""
    from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS, score_chunks
    from ewspipe.panel.schema import Level, Panel, PanelSpec

    forecast, actuals = _forecast(3, origins=2, steps=3, units=9, s=20, const_share=0.6,
                                  integer=True)
    frame = actuals.rename(columns={"value": "ged_sb"}).sort_values(["month_id", UNIT])
    panel = Panel(frame.reset_index(drop=True), PanelSpec(Level.PGM, ("ged_sb",)))
    got = score_chunks(iter_chunks(forecast, 7), panel, "ged_sb")
    want = evaluate(join_actuals(forecast, actuals), POINT_METRICS + SAMPLE_METRICS).to_dict()
    _same(got, want)
    with pytest.raises(InputError, match="no rows"):
        score_chunks(iter(()), panel, "ged_sb")
