"""One model's prediction split into parts that Dask workers compute side by side.

A 13-origin evaluation of a sampling model at S = 1,000 on the global grid spends ~75 % of
its time predicting and writing draws (1,034 of 1,358 s, docs/benchmarks.md
``global_calibration``); as one task it keeps one worker busy while the others wait. On an
executor with several workers (:attr:`ewspipe.flows.executors.Executor.workers`), a model
whose forecast holds at least ``[run] split_draws`` values (rows x draws) is predicted by
``predict:<model>[i/n]`` tasks, each a run of consecutive (origin, step) blocks
(:func:`ewspipe.models.chunking.split_parts`) written to its own file, and ``predict:<model>``
joins them in forecast order into the one forecast file, checks plausibility and scores it,
reading each part once. Draws are seeded per (origin, step, unit block), so the joined file
holds the values of the unsplit prediction bit for bit, and the streamed scorer gives the same
scores for any chunking of the same rows: splitting changes where the work runs, never a
number.

The join removes the part files once the joined file is in place (the draws are stored once).
A part's task record names its file under ``part``, not ``path``, so a finished run's records
stay reusable without them; should the join have to run again (its file was deleted), it
predicts a missing part itself, the same rows.

This module plans the split (:func:`split_counts`, :func:`part_tasks`) and holds the join's
read-ahead/write-behind (:func:`pipelined`); the two task bodies are
``ewspipe.flows.modelrun.predict_part`` and ``join_parts``, beside the unsplit
``predict_model`` whose helpers they share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ewspipe.catalog import ModelSpec
from ewspipe.flows.graph import Task
from ewspipe.models import registry
from ewspipe.models.chunking import (
    model_samples,
    split_parts,
)
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.partitions import Partition

__all__ = ["part_tasks", "pipelined", "split_counts"]

Output = dict[str, Any]


def split_counts(specs: Sequence[ModelSpec], panels: Mapping[str, Panel],
                 partitions: Mapping[str, Partition], *, workers: int,
                 min_draws: int) -> dict[str, int]:
    """Model -> number of parts, for the models worth splitting: on ``workers`` >= 2, those
    whose forecast holds at least ``min_draws`` values (0: none is split)."""
    if workers < 2 or min_draws <= 0:
        return {}
    out: dict[str, int] = {}
    for spec in specs:
        partition = partitions[spec.level]
        origins = [s.origin for s in partition.rolling_origins()]
        months = panels[spec.level].frame[TIME_COLUMN].to_numpy()
        rows = partition.steps * int(sum(np.searchsorted(months, o, side="right")
                                         - np.searchsorted(months, o, side="left")
                                         for o in origins))
        draws = model_samples(registry.create(spec.algorithm, spec.hyperparameters_dict()))
        if rows * draws >= min_draws:
            out[spec.name] = min(workers, len(origins) * partition.steps)
    return {m: n for m, n in out.items() if n > 1}


def part_tasks(model: str, partition: Partition, n: int, params: Mapping[str, Any],
               finish: Mapping[str, Any], *, predict: Callable[..., Output],
               join: Callable[..., Output]) -> list[Task]:
    """The ``predict:<model>[i/n]`` tasks (``predict``: ``modelrun.predict_part``) and the
    ``predict:<model>`` task that joins them (``join``: ``modelrun.join_parts``, its output
    an unsplit ``predict_model``'s)."""
    origins = [s.origin for s in partition.rolling_origins()]
    runs = split_parts(origins, range(1, partition.steps + 1), n)
    names = [f"predict:{model}[{i}/{len(runs)}]" for i in range(1, len(runs) + 1)]
    tasks = [Task(name, predict, {"fitted": f"fit:{model}"},
                  {**params, "blocks": [[o, list(s)] for o, s in blocks]},
                  cost=1.0, lane="finish")
             for name, blocks in zip(names, runs, strict=True)]
    tasks.append(Task(f"predict:{model}", join,
                      {"fitted": f"fit:{model}", "parts": tuple(names)},
                      {**finish, "order": names}, cost=1.0, lane="finish"))
    return tasks


def pipelined(source: Iterator[Forecast], write: Callable[[Forecast], None],
              ) -> Iterator[Forecast]:
    """``source``'s chunks, each also given to ``write``, in order: the next chunk is read
    and the previous one written in two threads while the caller checks and scores this one
    (Parquet decoding, zstd and the draws' sort release the GIL). The join runs after its
    parts, when their workers' cores are free: read, score and write take about as long
    each, so overlapped they take about as long as the slowest. Three chunks are alive at
    most; an error in any of the three is raised here."""
    with ThreadPoolExecutor(2, thread_name_prefix="ewspipe-join") as pool:
        ahead = pool.submit(next, source, None)
        behind: Future[None] | None = None
        while (chunk := ahead.result()) is not None:
            ahead = pool.submit(next, source, None)
            if behind is not None:
                behind.result()
            behind = pool.submit(write, chunk)
            yield chunk
        if behind is not None:
            behind.result()
