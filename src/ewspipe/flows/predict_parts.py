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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ewspipe.catalog import ModelSpec
from ewspipe.evaluation.plausibility import Implausible, check_forecast, combine
from ewspipe.flows import modelrun
from ewspipe.flows.graph import TRACE, Task
from ewspipe.memory import resident_bytes
from ewspipe.models import registry
from ewspipe.models.chunking import (
    Block,
    model_samples,
    plan_chunks,
    predict_chunks,
    rows_per_chunk,
    split_parts,
)
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.panel.snapshot import Manifest
from ewspipe.partitions import Partition, RunType
from ewspipe.store.predictions import forecast_writer, iter_forecast

__all__ = ["join_parts", "part_tasks", "pipelined", "predict_part", "split_counts"]

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
               finish: Mapping[str, Any]) -> list[Task]:
    """The ``predict:<model>[i/n]`` tasks and the ``predict:<model>`` task that joins them
    (its output is an unsplit ``predict_model``'s)."""
    origins = [s.origin for s in partition.rolling_origins()]
    runs = split_parts(origins, range(1, partition.steps + 1), n)
    names = [f"predict:{model}[{i}/{len(runs)}]" for i in range(1, len(runs) + 1)]
    tasks = [Task(name, predict_part, {"fitted": f"fit:{model}"},
                  {**params, "blocks": [[o, list(s)] for o, s in blocks]},
                  cost=1.0, lane="finish")
             for name, blocks in zip(names, runs, strict=True)]
    tasks.append(Task(f"predict:{model}", join_parts,
                      {"fitted": f"fit:{model}", "parts": tuple(names)},
                      {**finish, "order": names}, cost=1.0, lane="finish"))
    return tasks


def _blocks(value: Sequence[Sequence[Any]]) -> list[Block]:
    return [(int(o), tuple(int(s) for s in steps)) for o, steps in value]


def predict_part(ctx: modelrun.ModelRunContext, *, key: str, fitted: Output, model: str,
                 config_hash: str, snapshot: dict[str, Any], run_type: str,
                 partition: dict[str, Any], blocks: list[list[Any]]) -> Output:
    """Predict one part's (origin, steps) ``blocks`` with the fitted model into a file of its
    own (named by the task key), in chunks within the memory budget."""
    t0 = time.perf_counter()
    spec = ctx.spec(model, config_hash)
    manifest, panel = modelrun.load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = modelrun.partition_of(ctx, run_type, manifest.last_month)
    fitted_model = modelrun.fitted_artifact(ctx, spec, fitted, manifest, part)
    wanted = _blocks(blocks)
    design = modelrun.model_design(spec, panel, manifest, predict_from=wanted[0][0])
    budget = modelrun.task_budget(ctx.settings)
    del panel
    modelrun.spare_panels(budget)
    rel = f"work/forecasts/{model}/parts/{key[:16]}.parquet"
    _, rows, n_samples, _ = modelrun.write_predictions(
        fitted_model, design, part, ctx.settings.layout.resolve(rel), budget=budget,
        blocks=wanted, metadata=modelrun.forecast_metadata(spec, fitted, manifest, run_type),
        compression="lz4")  # read once, by the join
    return {"model": model, "part": rel, "rows": rows, "n_samples": n_samples,
            "blocks": blocks, TRACE: {"predict": time.perf_counter() - t0}}


def join_parts(ctx: modelrun.ModelRunContext, *, key: str, fitted: Output,
               parts: Mapping[str, Output], order: list[str], model: str, config_hash: str,
               snapshot: dict[str, Any], run_type: str, partition: dict[str, Any],
               ceiling: float) -> Output:
    """The parts, in order, as the model's one forecast file (named by the task key), held
    against the plausibility ``ceiling`` and, outside forecasting runs, scored: the output of
    an unsplit ``predict_model``. The part files are removed once it is in place."""
    t0 = time.perf_counter()
    spec = ctx.spec(model, config_hash)
    manifest, panel = modelrun.load_snapshot(str(ctx.settings.snapshot_dir), snapshot["id"])
    part = modelrun.partition_of(ctx, run_type, manifest.last_month)
    ordered = [parts[name] for name in order]
    layout = ctx.settings.layout
    rows = sum(int(p["rows"]) for p in ordered)
    rel = f"work/forecasts/{model}/{key[:16]}.parquet"
    found: list[Implausible | None] = [None]

    # three chunks alive at once (read ahead, scored, written behind), within the budget
    batch = rows_per_chunk(max(int(p["n_samples"]) for p in ordered),
                           modelrun.task_budget(ctx.settings), reserved=resident_bytes(),
                           alive=3)

    def chunks() -> Iterator[Forecast]:
        for p in ordered:
            path = layout.resolve(p["part"])
            yield from (iter_forecast(path, rows=batch) if path.is_file()
                        else _predict_again(ctx, spec, fitted, manifest, part, p["blocks"]))

    with forecast_writer(layout.resolve(rel), rows=rows,
                         metadata=modelrun.forecast_metadata(spec, fitted, manifest,
                                                             run_type)) as out:
        def written() -> Iterator[Forecast]:
            for chunk in pipelined(chunks(), out.write):
                found[0] = combine(found[0], check_forecast(chunk, ceiling))
                yield chunk

        metrics = None
        if part.run_type is not RunType.FORECASTING:
            metrics = modelrun.json_ready(modelrun.score_chunks(written(), panel, spec.target))
        else:
            for _ in written():
                pass
        n_samples = int(out.n_samples or 1)
    for p in ordered:  # stored once: the joined file holds every part's rows
        layout.resolve(p["part"]).unlink(missing_ok=True)
    predict = sum(float(p.get(TRACE, {}).get("predict", 0.0)) for p in ordered)
    return {"model": model, "path": rel, "rows": rows, "n_samples": n_samples,
            "metrics": metrics,
            "plausibility": None if found[0] is None else found[0].to_dict(),
            TRACE: {"predict": predict, "evaluate": time.perf_counter() - t0,
                    "parts": len(ordered)}}


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


def _predict_again(ctx: modelrun.ModelRunContext, spec: ModelSpec, fitted: Output,
                   manifest: Manifest, part: Partition, blocks: list[list[Any]],
                   ) -> Iterator[Forecast]:
    """A part whose file is gone (removed by an earlier join whose own file was then lost):
    its rows again, from the fitted artifact."""
    fitted_model = modelrun.fitted_artifact(ctx, spec, fitted, manifest, part)
    wanted = _blocks(blocks)
    _, panel = modelrun.load_snapshot(str(ctx.settings.snapshot_dir), manifest.id)
    design = modelrun.model_design(spec, panel, manifest, predict_from=wanted[0][0])
    budget = modelrun.task_budget(ctx.settings) // 3  # three chunks alive in the join
    plan = plan_chunks(fitted_model, design, part, budget=budget, held=resident_bytes(),
                       blocks=wanted)
    yield from predict_chunks(fitted_model, design, part, budget=budget, chunks=plan)
