"""The pgm forecast run in-process and on local Dask clusters of 1, 2 and 4 workers.

``ewspipe forecast --level pgm`` on the Africa + Middle East grid (the full semi-synthetic pgm
set, 13,110 cells x 415 months) with the repository's pgm models (copper_mesh, grid_mean,
zero_grid) and one pgm sampling model written here (``grid_draws``: ridge with 100 residual
draws per cell-month): each model a ``fit:`` and a ``predict:`` task on the executor, as in
the monthly run's train and forecast tasks. Four cases, one per executor: ``--executor
local``, and ``--executor dask`` with ``[run] dask_workers`` = 1, 2, 4 and
``dask_memory_limit = "4GiB"``. On the 2-core reference machine 4 workers oversubscribe the
cores (each worker one thread; in-process, a model's steps are fitted on every core and the
next model fits while the last is predicted).

Each case's child (``python -m benchmarks.bench_dask run MODE``) imports the pgm data into a
fresh state directory, then times ``ewspipe forecast`` alone and samples the RSS of its
whole process tree (the run, whose nannies run inside it, and the worker processes; psutil,
every 0.1 s) for the peak: RSS summed over processes, an upper bound (pages shared between
them count twice). The harness's own peak RSS column is the largest single process. Then it
digests every model's forecast file (the Parquet data, point and all draws, without the
file's metadata). The verification holds each Dask run's digests against the in-process
run's: the forecasts and draws must be bit-identical on every executor. No target (the
issue's Dask targets are at global scale); the figures feed docs/scaling.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_monthly import LAST_MONTH, _source, _workspace
from benchmarks.harness import (
    PGM_FILE,
    REPO,
    Benchmark,
    Case,
    SetupError,
    TreeRss,
    VerificationError,
    ewspipe_command,
)

__all__ = ["BENCHMARKS"]

MEMORY_LIMIT = "4GiB"
MODES: dict[str, tuple[str, int]] = {  # mode -> (executor, workers)
    "local": ("local", 0), "dask1": ("dask", 1), "dask2": ("dask", 2), "dask4": ("dask", 4)}
SAMPLES = 100
SAMPLING_MODEL = f"""name = "grid_draws"
level = "pgm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "benchmarks"
description = "Ridge on the cell's recent history with {SAMPLES} residual draws (bench_dask)."
features = ["log1p(ged_sb)", "lag(log1p(ged_sb), 1)", "mmean(log1p(ged_sb), 12)",
            "splag(ged_sb)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "ridge"
log_target = true
n_samples = {SAMPLES}
sampling = "residual"
seed = 20240705
"""
SAMPLE_EVERY_S = 0.1


# --- the child: import, run under an RSS sampler, digest the store ---------------------------


def _set_run(config: Path, executor: str, workers: int) -> None:
    text = config.read_text(encoding="utf-8")
    for key, value in (("executor", f'"{executor}"'), ("dask_workers", str(workers)),
                       ("dask_memory_limit", f'"{MEMORY_LIMIT}"')):
        text, n = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, count=1, flags=re.M)
        if n != 1:
            raise SetupError(f"ewspipe.toml: no `{key} = ...` line under [run] to set; "
                             "update benchmarks/bench_dask.py")
    config.write_text(text, encoding="utf-8")


def _digest(path: Path) -> str:
    """sha256 of a stored partition's data (schema and columns; not its metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path).replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def run_measured(argv: list[str], *, what: str) -> tuple[dict[str, Any], str, float, TreeRss]:
    """Run an ``ewspipe ... --json`` command under a process-tree RSS sampler: its JSON
    document, its stderr, its wall time and the sampler (``.peak``, ``.most_processes``);
    SystemExit naming ``what`` when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = TreeRss(proc.pid, every_s=SAMPLE_EVERY_S)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{what} exited {proc.returncode}: {err[-3000:]}")
    doc: dict[str, Any] = json.loads(out)
    return doc, err, wall, rss


def restarts(stderr: str) -> int:
    """Dask workers restarted above their memory limit, as the nanny logged them."""
    return len(re.findall(r"exceeded \d+% memory budget", stderr))


def _child(mode: str) -> dict[str, Any]:
    executor, workers = MODES[mode]
    work = _workspace(Path.cwd() / "ws", "pgm", ensembles=False)
    (work / "models" / "grid_draws.toml").write_text(SAMPLING_MODEL, encoding="utf-8")
    _set_run(work / "ewspipe.toml", executor, workers)
    base = [*ewspipe_command(), "--config", str(work / "ewspipe.toml"), "--state-dir",
            str(work / "state")]
    subprocess.run([*base, "data", "import", "panel", str(_source(PGM_FILE)), "--level",
                    "pgm"], check=True, capture_output=True)
    doc, err, wall, rss = run_measured(
        [*base, "forecast", "--level", "pgm", "--executor", executor, "--no-alerts",
         "--quiet", "--json"], what=f"{mode}: ewspipe forecast")
    killed = restarts(err)
    digests = {m["model"]: _digest(Path(doc["path"]) / m["predictions"]) for m in doc["models"]}
    return {"mode": mode, "executor": doc["executor"],
            "reused": [t["task"] for t in doc["tasks"] if t["status"] != "ran"],
            "wall_s": wall, "run_s": doc["seconds"],
            "tree_peak_rss_mib": rss.peak / 2**20, "processes": rss.most_processes,
            "workers_restarted": killed,
            "tasks": {t["task"]: t["seconds"] for t in doc["tasks"]}, "digests": digests}


# --- the cases -------------------------------------------------------------------------------


_SEEN: dict[str, dict[str, str]] = {}  # mode -> digests, filled by verify in case order


def _load(stdout: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        return doc
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no JSON result in the output ({exc})") from exc


def _verify(mode: str) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        doc = _load(stdout)
        problems = []
        if doc["reused"]:
            problems.append(f"tasks reused in a fresh state directory: {doc['reused']}")
        if doc["workers_restarted"]:
            problems.append(f"{doc['workers_restarted']} worker(s) restarted above their "
                            "memory limit")
        if not {"grid_draws", "copper_mesh"} <= doc["digests"].keys():
            problems.append(f"forecasts of {sorted(doc['digests'])}: grid_draws and "
                            "copper_mesh expected")
        _SEEN[mode] = doc["digests"]
        reference = _SEEN.get("local")
        if mode != "local":
            if reference is None:
                problems.append("the in-process case did not run first: nothing to compare")
            elif reference != doc["digests"]:
                differ = sorted(m for m in reference.keys() | doc["digests"].keys()
                                if reference.get(m) != doc["digests"].get(m))
                problems.append(f"forecasts differ from in-process: {differ}")
        if problems:
            raise VerificationError("; ".join(problems))
        same = ("" if mode == "local" else
                f"all {len(doc['digests'])} forecasts bit-identical to in-process (point "
                "and draws); ")
        slow = sorted(doc["tasks"].items(), key=lambda kv: -kv[1])[:3]
        return (f"{doc['executor']}: {len(doc['digests'])} models forecast, no worker "
                f"restarted; {same}`ewspipe forecast` alone {doc['wall_s']:.1f} s wall (its "
                "record "
                f"{doc['run_s']:.1f} s); **peak RSS of the process tree "
                f"{doc['tree_peak_rss_mib']:,.0f} MiB** ({doc['processes']} processes at "
                f"most); slowest tasks: " + ", ".join(f"{t} {s:.1f} s" for t, s in slow))
    return verify


def _argv(mode: str) -> Callable[[Path], list[str]]:
    # the repository first, then its src: the CLI the child starts runs this checkout
    path = f"{REPO}{os.pathsep}{REPO / 'src'}"
    return lambda _: ["env", f"PYTHONPATH={path}", sys.executable, "-m",
                      "benchmarks.bench_dask", "run", mode]


def _cases() -> list[Case]:
    notes = {
        "local": "in-process (`--executor local`: steps fitted on every core, the next model "
                 "fitting while the last is predicted)",
        "dask1": "a local Dask cluster of 1 worker process (1 thread)",
        "dask2": "a local Dask cluster of 2 worker processes (1 thread each): one per core",
        "dask4": "a local Dask cluster of 4 worker processes (1 thread each): on 2 cores "
                 "they oversubscribe, 2 workers per core",
    }
    cases = []
    for mode, (executor, workers) in MODES.items():
        setting = ("" if executor == "local" else
                   f" with [run] dask_workers = {workers}, dask_memory_limit = "
                   f"\"{MEMORY_LIMIT}\"")
        cases.append(Case(
            label=f"pgm forecast run, {mode}", argv=_argv(mode), verify=_verify(mode),
            display=("PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_dask run "
                     f"{mode}  # ewspipe forecast --level pgm --executor {executor}{setting}"),
            note=(f"{notes[mode]}. Workspace: the repo's ewspipe.toml ([qa] "
                  f"expected_last_month = {LAST_MONTH}) and pgm models plus grid_draws "
                  f"({SAMPLES} draws), no ensembles; the pgm import is in the table's wall "
                  "time, not in the checked line's."),
            timeout_s=1800.0,  # a loaded 2-core machine: 4 workers of one thread each
        ))
    return cases


BENCHMARKS = [
    Benchmark(
        name="dask",
        title="the pgm forecast run in-process and on local Dask clusters of 1, 2, 4 workers",
        description=(
            "`ewspipe forecast --level pgm` on the Africa + Middle East pgm set (13,110 cells) "
            "with the shipped pgm models plus a 100-draw sampling model, in-process and with "
            f"`--executor dask` on 1, 2 and 4 local workers of {MEMORY_LIMIT} each: wall time "
            "of the run, peak RSS of its whole process tree, and every forecast and draw "
            "bit-identical to the in-process run's. No target: figures for docs/scaling.md."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "run" or sys.argv[2] not in MODES:
        print(f"usage: python -m benchmarks.bench_dask run {'|'.join(MODES)}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child(sys.argv[2])))
