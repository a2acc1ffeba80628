"""Predict in chunks that fit a memory budget, so a sampling model's draws are never all in
memory (66,205 cells x 36 steps x 1,000 draws are ~19 GB as float64).

A chunk is a run of whole (origin, step) blocks in forecast order: all units of one origin and
one step are in the same chunk, unless one step does not fit the budget (the global grid at
S = 1,000 is 530 MB a copy): then a chunk is a run of whole unit blocks
(:data:`ewspipe.models.sampling.UNIT_BLOCK` units in the origin's unit order) of one
(origin, step). Draws are seeded per (seed, origin, step, unit block)
(:func:`ewspipe.models.sampling.block_rng`), so a chunk's forecast is exactly the rows of the
whole forecast whatever the chunk size: the planner only decides how many blocks are alive at
once. :func:`plan_chunks` makes the plan, :func:`predict_chunk` computes one chunk (the unit a
Dask task can run) and :func:`predict_chunks` streams them (the unit runs of one step share
its point forecast, computed once).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise

from ewspipe.features.design import Design
from ewspipe.models import sampling
from ewspipe.models.base import BaseForecaster
from ewspipe.models.forecast import Forecast
from ewspipe.partitions import Partition
from ewspipe.progress import current as current_reporter
from ewspipe.threads import single_threaded_blas

__all__ = ["Block", "Chunk", "blocks_per_chunk", "model_samples", "plan_chunks",
           "planned_rows", "predict_chunk", "predict_chunks", "rows_per_chunk", "split_blocks",
           "split_parts",
           "split_units", "units_per_chunk"]

#: an origin and a run of its consecutive steps, predicted together
Block = tuple[int, tuple[int, ...]]

#: bytes of one draw while it is computed (float64)
DRAW_BYTES = 8
#: bytes of a row besides its draws: the index (4 x int64), the point, pandas overhead
ROW_BYTES = 64
#: copies of a chunk's draws alive at its peak: the model's array and per-step temporaries
#: (picks, residuals, draws, counts), assemble's clipped copy, the chunk's concatenation,
#: the Parquet table and the quantiles' sort (measured on the pgm demo grid, bench_draws)
WORKING_COPIES = 6
#: share of the budget left to the model, the panel, the design and the interpreter
HEADROOM = 0.25


@dataclass(frozen=True)
class Chunk:
    """(origin, steps) blocks predicted together, in forecast order; with ``units``, the
    units [start, stop) (positions in the origin's sorted unit order) of a single
    (origin, (step,)) block."""

    blocks: tuple[tuple[int, tuple[int, ...]], ...]
    units: tuple[int, int] | None = None

    @property
    def origins(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(o for o, _ in self.blocks))


def _row_bytes(n_samples: int) -> int:
    """Bytes a forecast row costs at a chunk's peak."""
    return (max(1, n_samples) * DRAW_BYTES + ROW_BYTES) * WORKING_COPIES


def _usable(budget: int, reserved: int) -> float:
    return budget * (1.0 - HEADROOM) - reserved


def blocks_per_chunk(rows_per_step: int, n_samples: int, budget: int, *,
                     reserved: int = 0) -> int:
    """How many (origin, step) blocks of ``rows_per_step`` rows with ``n_samples`` draws each
    fit ``budget`` bytes, after :data:`HEADROOM` and ``reserved`` bytes (e.g. the design);
    at least 1 (below one step, :func:`units_per_chunk` splits the step)."""
    per_block = max(1, rows_per_step) * _row_bytes(n_samples)
    return max(1, int(_usable(budget, reserved) // per_block))


def units_per_chunk(n_samples: int, budget: int, *, reserved: int = 0) -> int:
    """How many units of one step with ``n_samples`` draws fit ``budget`` bytes (as in
    :func:`blocks_per_chunk`), in whole unit blocks: at least one block (the smallest chunk:
    a budget below it is exceeded)."""
    block = sampling.UNIT_BLOCK
    fit = int(_usable(budget, reserved) // (block * _row_bytes(n_samples)))
    return max(1, fit) * block


def rows_per_chunk(n_samples: int, budget: int, *, reserved: int = 0, alive: int = 1) -> int:
    """Rows of ``n_samples`` draws that fit ``budget`` bytes (as in :func:`blocks_per_chunk`)
    with ``alive`` such chunks in memory at once; at least one unit block
    (:data:`ewspipe.models.sampling.UNIT_BLOCK` rows)."""
    fit = int(_usable(budget, reserved) // (max(1, alive) * _row_bytes(n_samples)))
    return max(sampling.UNIT_BLOCK, fit)


def model_samples(model: BaseForecaster) -> int:
    """Draws per prediction of a (fitted) model: its ``n_samples``, 1 for a point model."""
    return int(model.get_params().get("n_samples", 1) or 1)


def _design_bytes(design: Design) -> int:
    return int(design.X.nbytes + design.y.nbytes + design.units.nbytes + design.months.nbytes)


def plan_chunks(model: BaseForecaster, design: Design, partition: Partition, *,
                budget: int, held: int = 0, blocks: Sequence[Block] | None = None,
                ) -> list[Chunk]:
    """The chunks of the partition's forecast (steps 1..steps from every origin) that fit
    ``budget`` bytes: whole origins grouped when several fit, else each origin split into
    blocks of consecutive steps. ``blocks``: only these (origin, steps) blocks, in order (a
    part of the forecast, :func:`split_parts`), each split the same way.

    ``held`` is what the process already holds (its resident bytes, which include the design:
    :func:`ewspipe.memory.resident_bytes`); the design's bytes are reserved when more. The
    plan only decides how many blocks are alive at once, never the values."""
    steps = tuple(range(1, partition.steps + 1))
    if blocks is None:
        blocks = [(s.origin, steps) for s in partition.rolling_origins()]
    origins = list(dict.fromkeys(o for o, _ in blocks))
    units = {o: design.month_rows(o).stop - design.month_rows(o).start for o in origins}
    rows = max(units.values(), default=1)
    n_samples, reserved = model_samples(model), max(held, _design_bytes(design))
    if rows * _row_bytes(n_samples) > _usable(budget, reserved):  # one step does not fit
        per = units_per_chunk(n_samples, budget, reserved=reserved)
        if per < rows:
            return [c for o, s in blocks for c in split_units([o], s, units, per)]
    fit = blocks_per_chunk(rows, n_samples, budget, reserved=reserved)
    if all(s == steps for _, s in blocks):
        return split_blocks(origins, steps, fit)
    return [c for o, s in blocks for c in split_blocks([o], s, fit)]


def split_blocks(origins: Sequence[int], steps: Sequence[int], blocks: int) -> list[Chunk]:
    """Chunks of at most ``blocks`` (origin, step) blocks each, in forecast order: whole
    origins grouped when ``blocks`` holds one or more, else each origin in runs of
    ``blocks`` consecutive steps."""
    steps = tuple(steps)
    if blocks >= len(steps):
        per = blocks // len(steps)
        return [Chunk(tuple((o, steps) for o in origins[i:i + per]))
                for i in range(0, len(origins), per)]
    return [Chunk(((o, steps[i:i + blocks]),)) for o in origins
            for i in range(0, len(steps), blocks)]


def split_units(origins: Sequence[int], steps: Sequence[int], units: Mapping[int, int],
                per: int) -> list[Chunk]:
    """One chunk per run of at most ``per`` units (a multiple of the unit block) of each
    (origin, step), in forecast order; ``units`` is the number of units at each origin."""
    return [Chunk(((o, (s,)),), units=(start, min(start + per, units[o])))
            for o in origins for s in steps for start in range(0, units[o], per)]


def split_parts(origins: Sequence[int], steps: Sequence[int], parts: int) -> list[list[Block]]:
    """The forecast's (origin, step) pairs, in forecast order, as at most ``parts`` runs of
    near-equal length, each given as its (origin, consecutive steps) blocks: the parts of one
    model's prediction that separate tasks compute (whole origins where a run holds them)."""
    pairs = [(o, s) for o in origins for s in steps]
    if not pairs or parts < 1:
        return []
    n = min(parts, len(pairs))
    edges = [len(pairs) * i // n for i in range(n + 1)]
    return [[(o, tuple(s for _, s in run))
             for o, run in groupby(pairs[lo:hi], key=lambda p: p[0])]
            for lo, hi in pairwise(edges)]


def planned_rows(design: Design, chunks: Sequence[Chunk]) -> int:
    """Rows of the forecast the chunks make: the units at each origin times its steps."""
    return sum(chunk.units[1] - chunk.units[0] if chunk.units is not None else
               sum((design.month_rows(o).stop - design.month_rows(o).start) * len(s)
                   for o, s in chunk.blocks)
               for chunk in chunks)


def predict_chunk(model: BaseForecaster, design: Design, chunk: Chunk) -> Forecast:
    """One chunk's forecast: its blocks' rows of the whole forecast, bit for bit."""
    if chunk.units is not None:
        return next(_unit_runs(model, design, [chunk]))
    parts = [model.predict(design, origin=o, steps=list(s))  # type: ignore[attr-defined]
             for o, s in chunk.blocks]
    return parts[0] if len(parts) == 1 else Forecast.concat(parts)


def _unit_runs(model: BaseForecaster, design: Design,
               chunks: Sequence[Chunk]) -> Iterator[Forecast]:
    """The forecasts of unit-run chunks of one (origin, step), its point computed once."""
    (origin, (step,)), = chunks[0].blocks
    runs = [slice(*c.units) for c in chunks if c.units is not None]
    return model.predict_units(design, origin=origin, step=step,  # type: ignore[attr-defined]
                               units=runs)


def _forecasts(model: BaseForecaster, design: Design,
               plan: Sequence[Chunk]) -> Iterator[Forecast]:
    """The plan's forecasts in order; consecutive unit runs of a step share its point."""
    for key, group in groupby(plan, key=lambda c: None if c.units is None else c.blocks):
        chunks = list(group)
        if key is None:
            for chunk in chunks:
                with single_threaded_blas():  # set once per chunk, not once per step
                    forecast = predict_chunk(model, design, chunk)
                yield forecast
        else:
            yield from _unit_runs(model, design, chunks)


def predict_chunks(model: BaseForecaster, design: Design, partition: Partition, *,
                   budget: int, label: str = "",
                   chunks: Sequence[Chunk] | None = None) -> Iterator[Forecast]:
    """The forecast of :func:`plan_chunks` (or ``chunks``) chunk by chunk, in forecast
    order; with a ``label``, each origin done is reported to
    :func:`ewspipe.progress.current`."""
    plan = list(chunks) if chunks is not None else plan_chunks(model, design, partition,
                                                               budget=budget)
    origins = [s.origin for s in partition.rolling_origins()]
    last_step = partition.steps
    report = current_reporter()
    done = 0
    for chunk, forecast in zip(plan, _forecasts(model, design, plan), strict=True):
        yield forecast
        if label:
            for origin, steps in chunk.blocks:
                rows = design.month_rows(origin)
                whole = chunk.units is None or chunk.units[1] == rows.stop - rows.start
                if steps and steps[-1] == last_step and whole:
                    done += 1
                    report.step(label, done, len(origins), f"origin {origin}")

