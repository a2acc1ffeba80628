"""A 13-origin evaluation of one sampling model on 2 Dask workers, its prediction as one task
and split into one (origin, step block) task per worker, side by side.

``ewspipe evaluate --run-type calibration --model grid_draws --executor dask`` on the Africa +
Middle East pgm set (13,110 cells x 415 months) with the draws benchmark's model (conflictology
at 1,000 draws, ``bench_draws.draws_model_file``): 13 x 36 x 13,110 = 6.1 M rows x 1,000 draws,
a fifth of the global calibration case. With one model, an unsplit run has one predict task, so
one of the two workers idles while the other predicts ~80 % of the run; with
``[run] split_draws`` at its default the prediction runs as ``predict:grid_draws[1/2]`` and
``[2/2]`` side by side, then ``predict:grid_draws`` joins them and scores once.

The child (``python -m benchmarks.bench_split run``) imports the pgm data into two fresh state
directories and times ``ewspipe evaluate`` in each, unsplit (``split_draws = 0``) then split,
sampling the RSS of the whole process tree (psutil, every 0.1 s). The verification holds the
split run's forecast file (point and all draws, without the file's metadata) and its scores
against the unsplit run's: identical. Target: the split run takes at most 0.8 x the unsplit
run's wall time, measured in the same child (a ratio: the machine's speed cancels).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.bench_dask import MEMORY_LIMIT, _load, _set_run, restarts, run_measured
from benchmarks.bench_draws import MODEL, draws_model_file
from benchmarks.bench_monthly import _source, _workspace
from benchmarks.harness import (
    PGM_FILE,
    REPO,
    Benchmark,
    Case,
    VerificationError,
    ewspipe_command,
)

__all__ = ["BENCHMARKS"]

WORKERS = 2
#: the split run's wall time over the unsplit run's, at most
TARGET_RATIO = 0.8


def _digest(path: Path) -> str:
    """sha256 over each column's values (the draws flattened), read batch by batch: the
    file's data whatever its row groups, without holding its 6 billion draws (48 GB)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        names = parquet.schema_arrow.names
        hashes = {name: hashlib.sha256() for name in names}
        for batch in parquet.iter_batches(batch_size=1 << 16):
            for name in names:
                column = batch.column(name)
                if name == "samples":
                    column = column.flatten()
                hashes[name].update(column.to_numpy(zero_copy_only=False).tobytes())
    return hashlib.sha256("".join(f"{n}:{h.hexdigest()}" for n, h in hashes.items())
                          .encode()).hexdigest()


def _evaluate(root: Path, split: bool) -> dict[str, Any]:
    work = _workspace(root, "pgm", ensembles=False)
    for old in (work / "models").glob("*.toml"):
        old.unlink()
    (work / "models" / f"{MODEL}.toml").write_text(draws_model_file("split_predict"),
                                                   encoding="utf-8")
    config = work / "ewspipe.toml"
    _set_run(config, "dask", WORKERS)
    text = config.read_text(encoding="utf-8")
    text, n = re.subn(r"^split_draws\s*=.*$", f"split_draws = {100_000_000 if split else 0}",
                      text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit("ewspipe.toml: no `split_draws = ...` line under [run]")
    config.write_text(text, encoding="utf-8")
    base = [*ewspipe_command(), "--config", str(config), "--state-dir", str(work / "state")]
    subprocess.run([*base, "data", "import", "panel", str(_source(PGM_FILE)), "--level",
                    "pgm"], check=True, capture_output=True)
    doc, err, wall, rss = run_measured(
        [*base, "evaluate", "--run-type", "calibration", "--model", MODEL, "--executor",
         "dask", "--no-alerts", "--quiet", "--json"], what=f"evaluate (split={split})")
    (model,) = doc["models"]
    return {"wall_s": wall, "tree_peak_rss_mib": rss.peak / 2**20,
            "restarted": restarts(err),
            "tasks": {t["task"]: t["seconds"] for t in doc["tasks"]},
            "digest": _digest(Path(doc["path"]) / model["predictions"]),
            "metrics": model["metrics"], "rows": model["rows"],
            "n_samples": model["n_samples"]}


def _child() -> dict[str, Any]:
    runs = {mode: _evaluate(Path.cwd() / mode, mode == "split") for mode in ("unsplit", "split")}
    return {**runs, "ratio": runs["split"]["wall_s"] / runs["unsplit"]["wall_s"]}


def _verify(stdout: str) -> str:
    doc = _load(stdout)
    one, two = doc["unsplit"], doc["split"]
    parts = sorted(t for t in two["tasks"] if t.startswith(f"predict:{MODEL}["))
    problems = []
    if parts != [f"predict:{MODEL}[1/{WORKERS}]", f"predict:{MODEL}[2/{WORKERS}]"]:
        problems.append(f"the split run's part tasks are {parts}")
    if any(t.startswith(f"predict:{MODEL}[") for t in one["tasks"]):
        problems.append("the unsplit run split its prediction")
    if one["digest"] != two["digest"]:
        problems.append("the split run's forecast file differs from the unsplit run's")
    if one["metrics"] != two["metrics"]:
        problems.append("the split run's scores differ from the unsplit run's")
    if one["restarted"] or two["restarted"]:
        problems.append("a worker was restarted above its memory limit")
    if problems:
        raise VerificationError("; ".join(problems))

    def slow(run: dict[str, Any]) -> str:
        top = sorted(run["tasks"].items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{t} {s:.0f} s" for t, s in top)

    return (f"{one['rows']:,} rows x {one['n_samples']:,} draws; forecast file and scores "
            f"identical. Unsplit: evaluate {one['wall_s']:.0f} s, tree peak "
            f"{one['tree_peak_rss_mib']:,.0f} MiB ({slow(one)}). Split in {WORKERS}: "
            f"{two['wall_s']:.0f} s, tree peak {two['tree_peak_rss_mib']:,.0f} MiB "
            f"({slow(two)}). **Split / unsplit wall: {doc['ratio']:.2f}** (target ≤ "
            f"{TARGET_RATIO}); no worker restarted")


def _met(stdout: str) -> bool:
    return bool(_load(stdout)["ratio"] <= TARGET_RATIO)


def _argv(_: Path) -> list[str]:
    path = f"{REPO}{os.pathsep}{REPO / 'src'}"
    return ["env", f"PYTHONPATH={path}", sys.executable, "-m", "benchmarks.bench_split", "run"]


def _cases() -> list[Case]:
    return [Case(
        label=f"calibration evaluation of {MODEL}, S = 1,000, {WORKERS} Dask workers: "
              "unsplit then split",
        argv=_argv, verify=_verify, met=_met, timeout_s=3600.0,
        display=("PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_split run  # twice: "
                 f"ewspipe evaluate --run-type calibration --model {MODEL} --executor dask "
                 f"with [run] dask_workers = {WORKERS}, dask_memory_limit = "
                 f"\"{MEMORY_LIMIT}\", split_draws = 0, then 100000000"),
        note=("Both runs in one child, each in a fresh state directory (the pgm import is in "
              "the table's wall time, not in the ratio)."),
    )]


BENCHMARKS = [
    Benchmark(
        name="split_predict",
        title="one model's prediction split across Dask workers",
        description=(
            "A 13-origin calibration evaluation of one pgm sampling model at S = 1,000 on the "
            f"Africa + Middle East grid on {WORKERS} local Dask workers of {MEMORY_LIMIT}: "
            "its prediction as one task, then split into (origin, step block) tasks, one per "
            "worker, joined and scored once. Target (issue 21, \"splits a model's work where "
            f"that pays\"): split wall ≤ {TARGET_RATIO} x unsplit, with an identical forecast "
            "file and scores."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m benchmarks.bench_split run", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child()))
