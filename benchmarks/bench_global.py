"""`global_run`, `global_calibration`: the monthly run and a calibration evaluation on the
global demo world at S = 1,000.

The global demo world (``ewspipe data demo --cells global``: 66,205 PRIO-GRID cells x 443
months, ~29 M pgm rows, and its cm countries) is imported into a fresh state directory per
case, then one of issue 21's done-when commands runs on it:

* ``run 6 GiB``, ``run 4 GiB``: the monthly run (``ewspipe run``: every shipped model and
  ensemble, the pgm ones copper_mesh, grid_mean, zero_grid and copper_chorus included, plus
  ``grid_draws``, the draws benchmark's pgm conflictology model at n_samples = 1,000 written
  here: 66,205 cells x 36 steps x 1,000 draws = 2.4 billion draws, 9.5 GB as float32) at
  ``[run] memory_budget`` 6 GiB and 4 GiB. Targets: peak RSS <= 8 GiB (6 GiB budget) and
  <= 4 GiB (4 GiB budget), 30 minutes.
* ``run dask 2 x 4 GiB``: the same run with ``--executor dask`` on a local cluster of 2
  workers (``[run] dask_workers = 2``, ``dask_memory_limit = "4GiB"``): no worker restarted,
  and every stored partition's data bit-identical to the in-process 6 GiB run's (listed only
  when the settings know ``dask_workers``).
* ``calibration``: ``ewspipe evaluate --run-type calibration --model grid_draws``: 13 origins
  x 36 steps x 66,205 cells at 1,000 draws scored streamed; CRPS for every row, peak <= 8 GiB.

Each case's child (``python -m benchmarks.bench_global child CASE``) runs the import, then
times the measured command alone while sampling the RSS of its whole process tree (psutil,
every 0.2 s; summed over processes, an upper bound for Dask), then checks the store: rows and
draws counted back with DuckDB, the stored quantile columns, and a sha256 per stored partition
over its Parquet data column by column, row group by row group (never the whole partition in
memory; the file's metadata, which holds provenance, is left out). The harness's peak RSS is
the largest single process of the child (import, run or check).

`global_run` runs the cases in the order run 6 GiB, run 4 GiB, Dask (the Dask case needs the
6 GiB run's digests); `global_calibration` (about an hour) is its own benchmark. A measured
command that fails (out of memory, a killed worker) makes its case FAIL with the failure and
its figures recorded rather than aborting the later cases; every
child's result document is also appended to ``<tmp>/ewspipe-bench-global.jsonl``. One case
can be run alone: ``python -m benchmarks.bench_global child run4`` in an empty folder (it
prints the result document). Expect about 10 minutes per monthly run on the 2-core machine
and much longer for the calibration case (13 origins of draws).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_draws import MODEL, SAMPLES, draws_model_file
from benchmarks.harness import (
    REPO,
    Benchmark,
    Case,
    SetupError,
    Target,
    TreeRss,
    VerificationError,
    ewspipe_command,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

CELLS, STEPS, ORIGINS = 66_205, 36, 13  # SAMPLES and MODEL: bench_draws' model file
PGM_MODELS = ("copper_mesh", "grid_mean", "zero_grid", "copper_chorus", MODEL)
TIMEOUT_S = 3600.0
SAMPLE_EVERY_S = 0.2
_TABLE = "data/priogrid_country/priogrid.parquet"
MODEL_FILE = draws_model_file("global")
# case -> (memory budget GiB, executor, dask workers, peak target MiB)
CASES: dict[str, tuple[int, str, int, float | None]] = {
    "run6": (6, "local", 0, 8192.0),
    "run4": (4, "local", 0, 4096.0),
    "dask2": (6, "dask", 2, None),
    "calibration": (6, "local", 0, 8192.0),
}
DASK_MEMORY_LIMIT = "4GiB"
# every child's result document, one line each, also appended here: a case's figures survive a
# benchmark stopped before its end (the result JSON is written only after the last case)
LOG = Path(tempfile.gettempdir()) / "ewspipe-bench-global.jsonl"


# --- the child: import, the measured command under an RSS sampler, the store checked --------


def _workspace(dest: Path, case: str) -> Path:
    """The repository's models, ensembles and settings plus grid_draws, at the case's budget."""
    budget, _, workers, _ = CASES[case]
    for folder in ("models", "ensembles"):
        (dest / folder).mkdir(parents=True)
        for spec in sorted((REPO / folder).glob("*.toml")):
            (dest / folder / spec.name).write_bytes(spec.read_bytes())
    (dest / "models" / f"{MODEL}.toml").write_text(MODEL_FILE, encoding="utf-8")
    text = (REPO / "ewspipe.toml").read_text(encoding="utf-8")
    text, n = re.subn(r'^memory_budget = "6GiB"$', f'memory_budget = "{budget}GiB"', text,
                      count=1, flags=re.M)
    if n != 1:
        raise SetupError("ewspipe.toml: no `memory_budget = \"6GiB\"` line under [run]")
    if workers:
        for key, value in (("dask_workers", str(workers)),
                           ("dask_memory_limit", f'"{DASK_MEMORY_LIMIT}"')):
            text, n = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, count=1,
                              flags=re.M)
            if n != 1:
                raise SetupError(f"ewspipe.toml: no `{key} = ...` line under [run]")
    (dest / "ewspipe.toml").write_text(text, encoding="utf-8")
    return dest


def _column_bytes(column: Any) -> bytes:
    """The values of one column chunk as bytes (lists flattened; strings joined)."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        array = array.flatten()  # the draws of every row, in row order
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return "\x00".join(str(v) for v in array.to_pylist()).encode()
    return bytes(array.to_numpy(zero_copy_only=False).tobytes())


def _partition(path: Path) -> dict[str, Any]:
    """Rows, draws (DuckDB), columns and a digest of one stored partition's data."""
    import duckdb
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        names = parquet.schema_arrow.names
        hashers = {name: hashlib.sha256() for name in names}
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            for name in names:
                hashers[name].update(_column_bytes(table.column(name)))
            del table
        groups = parquet.num_row_groups
    total = hashlib.sha256()
    for name in names:
        total.update(name.encode() + hashers[name].digest())
    select = ("count(*), sum(len(samples))" if "samples" in names else "count(*), 0")
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout holds our JSON document
        rows, draws = con.execute(f"SELECT {select} FROM read_parquet(?)",
                                  [str(path)]).fetchall()[0]
    return {"rows": int(rows), "draws": int(draws or 0), "row_groups": groups,
            "quantiles": [n for n in names if n.startswith("q")], "digest": total.hexdigest()}


def _running(tasks: list[dict[str, Any]], at: float) -> list[str]:
    """The tasks that were running at epoch second ``at`` (finished_at has 1 s resolution)."""
    found = []
    for task in tasks:
        if "finished_at" not in task:
            continue
        end = datetime.strptime(task["finished_at"], "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
        if end.timestamp() - task["seconds"] - 1 <= at <= end.timestamp() + 1:
            found.append(task["task"])
    return found


def _child(case: str) -> dict[str, Any]:
    budget, executor, _, _ = CASES[case]
    work = _workspace(Path.cwd() / "ws", case)
    base = [*ewspipe_command(), "--config", str(work / "ewspipe.toml"), "--state-dir",
            str(work / "state")]
    t0 = time.perf_counter()
    subprocess.run([*base, "data", "demo", "--cells", "global", "--no-alerts", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    demo_s = time.perf_counter() - t0
    if case == "calibration":
        command = [*base, "evaluate", "--run-type", "calibration", "--model", MODEL,
                   "--no-alerts", "--quiet", "--json"]
    else:
        command = [*base, "run", "--executor", executor, "--no-alerts", "--quiet", "--json"]
    t0, started = time.perf_counter(), time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    rss = TreeRss(proc.pid, every_s=SAMPLE_EVERY_S)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    rss.stop()
    if proc.returncode != 0:  # recorded as a missed target with its figures, not aborted
        return {"case": case, "failed": (
            f"{' '.join(command[len(base):])} exited {proc.returncode} after {wall:.0f} s "
            f"(demo import {demo_s:.0f} s), tree peak {rss.peak / 2**20:,.0f} MiB at "
            f"{rss.peak_at - started:.0f} s: {' | '.join(err.strip().splitlines()[-6:])}")}
    doc = json.loads(out)
    result: dict[str, Any] = {
        "case": case, "budget_gib": budget, "executor": executor, "demo_s": demo_s,
        "wall_s": wall, "seconds": doc.get("seconds"), "status": doc.get("status"),
        "tree_peak_rss_mib": rss.peak / 2**20, "processes": rss.most_processes,
        "peak_at_s": rss.peak_at - started,
        "running_at_peak": _running(doc.get("tasks", []), rss.peak_at),
        "workers_restarted": len(re.findall(r"exceeded \d+% memory budget|[Rr]estarting worker",
                                            err)),
        "tasks": {t["task"]: round(t["seconds"], 1) for t in doc.get("tasks", [])}}
    t0 = time.perf_counter()
    if case == "calibration":
        result["models"] = [{"model": m["model"], "rows": m["rows"],
                             "n_samples": m["n_samples"], "timings": m["timings"],
                             "metrics": {k: v for k, v in (m["metrics"] or {}).items()
                                         if k in ("pooled", "n_scored", "n_unscored")}}
                            for m in doc["models"]]
    else:
        result["qa_passed"] = doc["qa"]["passed"]
        env = work / "state" / "development"
        result["partitions"] = {p["model"]: _partition(env / p["path"])
                                for p in doc["outputs"]["partitions"]}
    result["check_s"] = time.perf_counter() - t0
    return result


# --- the cases ------------------------------------------------------------------------------


_DIGESTS: dict[str, dict[str, str]] = {}  # case -> model -> digest, filled in case order


def _load(stdout: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no result document in the output ({exc})") from exc
    return doc


def _met(stdout: str) -> bool:
    """False when the measured command failed (OOM, a killed worker): the case FAILs with
    its figures recorded instead of aborting the cases after it."""
    return "failed" not in _load(stdout)


def _phases(tasks: dict[str, float]) -> str:
    slow = sorted(tasks.items(), key=lambda kv: -kv[1])[:8]
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in slow)


def _verify_run(case: str) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        doc = _load(stdout)
        if "failed" in doc:
            return f"FAILED: {doc['failed']}"
        parts: dict[str, dict[str, Any]] = doc["partitions"]
        problems = []
        if doc["status"] != "ok" or not doc["qa_passed"]:
            problems.append(f"run status {doc['status']}, QA passed {doc['qa_passed']}")
        for model in PGM_MODELS:
            rows = parts.get(model, {}).get("rows")
            if rows != CELLS * STEPS:
                problems.append(f"{model}: {rows} rows stored, expected {CELLS * STEPS:,}")
        draws = parts.get(MODEL, {})
        if draws.get("draws") != CELLS * STEPS * SAMPLES:
            problems.append(f"{MODEL}: {draws.get('draws')} draws stored, expected "
                            f"{CELLS * STEPS * SAMPLES:,}")
        if len(draws.get("quantiles", [])) != 7:
            problems.append(f"{MODEL}: stored quantile columns {draws.get('quantiles')}")
        if doc["workers_restarted"]:
            problems.append(f"{doc['workers_restarted']} Dask worker(s) restarted")
        digests = {m: p["digest"] for m, p in parts.items()}
        reference = _DIGESTS.get("run6") if case == "dask2" else None
        if reference is not None:
            differ = sorted(m for m in reference if reference[m] != digests.get(m))
            if differ:
                problems.append(f"stored data differ from the in-process run's: {differ}")
        if problems:
            raise VerificationError("; ".join(problems))
        _DIGESTS[case] = digests
        same = ("; every stored partition bit-identical to the in-process 6 GiB run's"
                if reference is not None else "")
        return (f"status ok, QA passed; {len(parts)} partitions stored; {MODEL}: "
                f"{draws['rows']:,} rows x {SAMPLES:,} draws counted back with DuckDB "
                f"({draws['row_groups']} row groups, quantiles {', '.join(draws['quantiles'])})"
                f"{same}; demo import {doc['demo_s']:.0f} s; run {doc['wall_s']:.0f} s (its "
                f"own {doc['seconds']:.0f} s), tree peak {doc['tree_peak_rss_mib']:,.0f} MiB "
                f"({doc['processes']} processes) at {doc['peak_at_s']:.0f} s, running "
                f"{', '.join(doc['running_at_peak']) or '-'}; check {doc['check_s']:.0f} s; "
                f"slowest tasks: {_phases(doc['tasks'])}")

    return verify


def _verify_calibration(stdout: str) -> str:
    doc = _load(stdout)
    if "failed" in doc:
        return f"FAILED: {doc['failed']}"
    model = next((m for m in doc["models"] if m["model"] == MODEL), None)
    if model is None:
        raise VerificationError(f"{MODEL} not in the evaluation")
    metrics = model["metrics"] or {}
    pooled = {k.lower(): v for k, v in (metrics.get("pooled") or {}).items()}.get("crps")
    rows, want = model["rows"], ORIGINS * STEPS * CELLS
    problems = []
    if rows != want:
        problems.append(f"{rows} rows evaluated, expected {want:,}")
    if model["n_samples"] != SAMPLES:
        problems.append(f"n_samples {model['n_samples']}, expected {SAMPLES}")
    n_scored = metrics.get("n_scored")
    if n_scored is not None and n_scored != want:
        problems.append(f"{n_scored} rows scored, expected {want:,}")
    if not isinstance(pooled, float) or not math.isfinite(pooled) or pooled < 0:
        problems.append(f"pooled CRPS {pooled!r}")
    if problems:
        raise VerificationError("; ".join(problems))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in model["timings"].items())
    return (f"{rows:,} rows x {SAMPLES:,} draws scored, CRPS {pooled:.4g} (n_scored "
            f"{n_scored}); demo import {doc['demo_s']:.0f} s; evaluate {doc['wall_s']:.0f} s, "
            f"tree peak {doc['tree_peak_rss_mib']:,.0f} MiB at {doc['peak_at_s']:.0f} s; model "
            f"timings: {timings}")


def _dask_settings() -> bool:
    from ewspipe.settings import RunSettings

    return "dask_workers" in RunSettings.model_fields


def _argv(case: str) -> Callable[[Path], list[str]]:
    def argv(run_dir: Path) -> list[str]:
        return ["env", f"PYTHONPATH={REPO / 'src'}:{REPO}", sys.executable, "-m",
                "benchmarks.bench_global", "child", case]

    return argv


def _require_table() -> None:
    if not (shared_dir() / _TABLE).is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{_TABLE}")


def _cases() -> list[Case]:
    _require_table()
    run = ("python -m benchmarks.bench_global child {case}: ewspipe data demo --cells global "
           "&& ewspipe run --json")
    cases = []
    for case, label in (("run6", "global monthly run in-process, memory_budget 6 GiB"),
                        ("run4", "global monthly run in-process, memory_budget 4 GiB"),
                        ("dask2", "global monthly run, Dask 2 workers x 4 GiB")):
        budget, _, _, peak = CASES[case]
        if case == "dask2" and not _dask_settings():
            continue
        cases.append(Case(
            label=label, display=run.format(case=case) + (
                " --executor dask ([run] dask_workers = 2, dask_memory_limit = \"4GiB\")"
                if case == "dask2" else f"  ([run] memory_budget = \"{budget}GiB\")"),
            argv=_argv(case), verify=_verify_run(case), timeout_s=TIMEOUT_S, met=_met,
            target=Target(wall_s=1800.0 + 300.0, peak_rss_mib=peak),
            note=("every shipped model and ensemble plus grid_draws (S = 1,000) on 66,205 "
                  "cells x 36 steps; fresh state; wall includes the demo import (~15 s) and "
                  "the store check; target 30 min for the run plus 5 min for import and "
                  "check")))
    return cases


def _calibration_cases() -> list[Case]:
    _require_table()
    return [Case(
        label="global calibration evaluation of grid_draws, S = 1,000",
        display=("python -m benchmarks.bench_global child calibration: ewspipe data demo "
                 "--cells global && ewspipe evaluate --run-type calibration --model "
                 f"{MODEL} --json"),
        argv=_argv("calibration"), verify=_verify_calibration, timeout_s=TIMEOUT_S, met=_met,
        target=Target(peak_rss_mib=8192.0),
        note=f"13 origins x 36 steps x {CELLS:,} cells x {SAMPLES:,} draws, scored streamed")]


BENCHMARKS = [
    Benchmark(
        name="global_run",
        title="the global grid at 1,000 draws: the monthly run in-process and on Dask",
        description=(
            "Issue 21's done-when runs on the global demo world (66,205 cells): the monthly "
            "run with every shipped model plus a pgm sampling model at S = 1,000 at memory "
            "budgets 6 and 4 GiB (peak <= 8 / 4 GiB, <= 30 min) and the same run on 2 local "
            "Dask workers of 4 GiB (bit-identical store)."),
        cases=_cases,
    ),
    Benchmark(
        name="global_calibration",
        title="the global grid at 1,000 draws: a 13-origin calibration evaluation",
        description=(
            "A 13-origin calibration evaluation of the pgm sampling model at S = 1,000 on the "
            "global demo world: CRPS for every row, peak <= 8 GiB (draws streamed)."),
        cases=_calibration_cases,
    ),
]


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "child" and argv[1] in CASES:
        line = json.dumps(_child(argv[1]))
        with LOG.open("a", encoding="utf-8") as fh:  # kept when the benchmark is stopped early
            fh.write(line + "\n")
        print(line)
        return 0
    print(f"usage: python -m benchmarks.bench_global child {{{','.join(CASES)}}}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
