"""Predict in chunks that fit a memory budget, so a sampling model's draws are never all in
memory (66,205 cells x 36 steps x 1,000 draws are ~19 GB as float64).

A chunk is a run of whole (origin, step) blocks in forecast order: all units of one origin and
one step are always in the same chunk. Draws are seeded per (seed, origin, step)
(:func:`ewspipe.models.sampling.step_rng`), so a chunk's forecast is exactly the rows of the
whole forecast whatever the chunk size: the planner only decides how many blocks are alive at
once. :func:`plan_chunks` makes the plan, :func:`predict_chunk` computes one chunk (the unit a
Dask task can run) and :func:`predict_chunks` streams them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ewspipe.features.design import Design
from ewspipe.models.base import BaseForecaster
from ewspipe.models.forecast import Forecast
from ewspipe.partitions import Partition
from ewspipe.progress import current as current_reporter

__all__ = ["Chunk", "blocks_per_chunk", "model_samples", "plan_chunks", "planned_rows",
           "predict_chunk", "predict_chunks", "split_blocks"]

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
    """(origin, steps) blocks predicted together, in forecast order."""

    blocks: tuple[tuple[int, tuple[int, ...]], ...]

    @property
    def origins(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(o for o, _ in self.blocks))


def blocks_per_chunk(rows_per_step: int, n_samples: int, budget: int, *,
                     reserved: int = 0) -> int:
    """How many (origin, step) blocks of ``rows_per_step`` rows with ``n_samples`` draws each
    fit ``budget`` bytes, after :data:`HEADROOM` and ``reserved`` bytes (e.g. the design);
    at least 1 (a single step is the smallest chunk: a budget below it is exceeded)."""
    usable = budget * (1.0 - HEADROOM) - reserved
    per_block = max(1, rows_per_step) * (max(1, n_samples) * DRAW_BYTES + ROW_BYTES) \
        * WORKING_COPIES
    return max(1, int(usable // per_block))


def model_samples(model: BaseForecaster) -> int:
    """Draws per prediction of a (fitted) model: its ``n_samples``, 1 for a point model."""
    return int(model.get_params().get("n_samples", 1) or 1)


def _design_bytes(design: Design) -> int:
    return int(design.X.nbytes + design.y.nbytes + design.units.nbytes + design.months.nbytes)


def plan_chunks(model: BaseForecaster, design: Design, partition: Partition, *,
                budget: int) -> list[Chunk]:
    """The chunks of the partition's forecast (steps 1..steps from every origin) that fit
    ``budget`` bytes: whole origins grouped when several fit, else each origin split into
    blocks of consecutive steps."""
    steps = tuple(range(1, partition.steps + 1))
    origins = [s.origin for s in partition.rolling_origins()]
    rows = max((design.month_rows(o).stop - design.month_rows(o).start for o in origins),
               default=1)
    fit = blocks_per_chunk(rows, model_samples(model), budget, reserved=_design_bytes(design))
    return split_blocks(origins, steps, fit)


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


def planned_rows(design: Design, chunks: Sequence[Chunk]) -> int:
    """Rows of the forecast the chunks make: the units at each origin times its steps."""
    return sum((design.month_rows(o).stop - design.month_rows(o).start) * len(s)
               for chunk in chunks for o, s in chunk.blocks)


def predict_chunk(model: BaseForecaster, design: Design, chunk: Chunk) -> Forecast:
    """One chunk's forecast: its blocks' rows of the whole forecast, bit for bit."""
    parts = [model.predict(design, origin=o, steps=list(s))  # type: ignore[attr-defined]
             for o, s in chunk.blocks]
    return parts[0] if len(parts) == 1 else Forecast.concat(parts)


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
    for chunk in plan:
        yield predict_chunk(model, design, chunk)
        if label:
            for origin, steps in chunk.blocks:
                if steps and steps[-1] == last_step:
                    done += 1
                    report.step(label, done, len(origins), f"origin {origin}")

