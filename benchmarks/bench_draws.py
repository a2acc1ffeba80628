"""A sampling model's 1,000 draws on the pgm grid, streamed within ``[run] memory_budget``.

The monthly run (`ewspipe run`) of one pgm sampling model, conflictology with
``n_samples = 1000`` (draws from each cell's last 12 months; the model file is written by
this benchmark, not taken from the catalog), on the Africa + Middle East demo grid (13,110
cells, ``ewspipe data demo --pgm-cells 13110``): 36 steps x 13,110 cells x 1,000 draws =
472 million draws, 3.8 GB as float64. The forecast, QA and the prediction store work chunk by
chunk (:mod:`ewspipe.models.chunking`), so the peak RSS follows the budget, not S:

* budget 6 GiB: peak <= 6 GiB;
* budget 2 GiB: peak <= 2 GiB (more, smaller chunks);
* both: every draw lands in the store (rows x S counted back with DuckDB, the stored
  quantile columns present) and the stored draws are identical between the two budgets (a
  sha256 over the stored point and samples, row group by row group).

Each case is one child: the demo import, the run, then ``python -m benchmarks.bench_draws
check`` reading the stored partition back; the wall time includes all three (the run's own
time is in the checked line).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    Benchmark,
    Case,
    Target,
    VerificationError,
    ewspipe_command,
)

__all__ = ["BENCHMARKS"]

CELLS, STEPS, SAMPLES = 13_110, 36, 1_000
MODEL = "grid_draws"
BUDGETS_GIB = (6, 2)


def draws_model_file(benchmark: str) -> str:
    """The TOML of the pgm conflictology model at SAMPLES draws that the draws and global
    benchmarks add to the shipped catalog."""
    return f"""name = "{MODEL}"
level = "pgm"
target = "ged_sb"
algorithm = "conflictology"
features = []
status = "shadow"
owner = "benchmarks"
description = "Conflictology on the grid with {SAMPLES:,} draws (the {benchmark} benchmark)."

[hyperparameters]
w = 12
n_samples = {SAMPLES}
seed = 7
"""


MODEL_FILE = draws_model_file("draws")
# stored digests by budget: the second case must match the first
_DIGESTS: dict[int, str] = {}


def _workspace(dest: Path, budget_gib: int) -> Path:
    (dest / "models").mkdir(parents=True)
    (dest / "ensembles").mkdir()
    (dest / "models" / f"{MODEL}.toml").write_text(MODEL_FILE, encoding="utf-8")
    text = (REPO / "ewspipe.toml").read_text(encoding="utf-8")
    if 'memory_budget = "6GiB"' not in text:
        raise VerificationError("ewspipe.toml: no `memory_budget = \"6GiB\"` line under [run]")
    text = text.replace('memory_budget = "6GiB"', f'memory_budget = "{budget_gib}GiB"', 1)
    (dest / "ewspipe.toml").write_text(text, encoding="utf-8")
    return dest


def _argv(budget_gib: int) -> Callable[[Path], list[str]]:
    def argv(run_dir: Path) -> list[str]:
        work = _workspace(run_dir / "ws", budget_gib)
        base = [*ewspipe_command(), "--config", str(work / "ewspipe.toml"), "--state-dir",
                str(work / "state")]
        check = ["env", f"PYTHONPATH={REPO / 'src'}:{REPO}", sys.executable, "-m",
                 "benchmarks.bench_draws", "check", str(work / "state"), str(work / "run.json")]
        script = " && ".join([
            shlex.join([*base, "data", "demo", "--pgm-cells", str(CELLS)]) + " > /dev/null",
            shlex.join([*base, "run", "--quiet", "--json"]) + f" > {shlex.quote(str(work))}"
            "/run.json",
            shlex.join(check),
        ])
        return ["env", f"PYTHONPATH={REPO / 'src'}", "bash", "-c", script]

    return argv


def _check(state: Path, run_json: Path) -> dict[str, Any]:
    """Read the stored partition back: rows and draws with DuckDB, the quantile columns,
    and a digest of the stored point and samples (row group by row group)."""
    import duckdb
    import pyarrow.parquet as pq

    doc = json.loads(run_json.read_text(encoding="utf-8"))
    part = next(p for p in doc["outputs"]["partitions"] if p["model"] == MODEL)
    path = state / "development" / part["path"]
    rows, draws = duckdb.sql(
        "SELECT count(*), sum(len(samples)) FROM read_parquet(?)",
        params=[str(path)]).fetchall()[0]
    digest = hashlib.sha256()
    with pq.ParquetFile(path) as parquet:
        names = parquet.schema_arrow.names
        groups = parquet.num_row_groups
        for group in range(groups):
            table = parquet.read_row_group(group, columns=["point", "samples"])
            digest.update(table.column("point").to_numpy().tobytes())
            digest.update(table.column("samples").combine_chunks().flatten().to_numpy()
                          .tobytes())
    tasks = {t["task"]: round(t["seconds"], 1) for t in doc["tasks"]}
    return {"status": doc["status"], "qa_passed": doc["qa"]["passed"],
            "seconds": doc["seconds"], "tasks": tasks, "rows": int(rows), "draws": int(draws),
            "row_groups": groups, "quantiles": [n for n in names if n.startswith("q")],
            "digest": digest.hexdigest()}


def _verify(budget_gib: int) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        try:
            doc = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise VerificationError(f"no check document in the output ({exc})") from exc
        problems = []
        if doc["status"] != "ok" or not doc["qa_passed"]:
            problems.append(f"run status {doc['status']}, QA passed {doc['qa_passed']}")
        if doc["rows"] != CELLS * STEPS or doc["draws"] != CELLS * STEPS * SAMPLES:
            problems.append(f"{doc['rows']:,} rows and {doc['draws']:,} draws stored, "
                            f"expected {CELLS * STEPS:,} and {CELLS * STEPS * SAMPLES:,}")
        if len(doc["quantiles"]) != 7:
            problems.append(f"stored quantile columns {doc['quantiles']}")
        others = {b: d for b, d in _DIGESTS.items() if b != budget_gib}
        if any(d != doc["digest"] for d in others.values()):
            problems.append(f"the stored draws differ from those at budget(s) "
                            f"{sorted(others)} GiB")
        if problems:
            raise VerificationError("; ".join(problems))
        _DIGESTS[budget_gib] = doc["digest"]
        same = (f"identical to the {', '.join(f'{b} GiB' for b in sorted(others))} run's"
                if others else "recorded")
        t = doc["tasks"]
        return (f"status ok, QA passed; {doc['rows']:,} rows x {SAMPLES:,} draws stored "
                f"({doc['row_groups']} row groups, quantiles {', '.join(doc['quantiles'])}) "
                f"and counted back with DuckDB; stored draws sha256 {doc['digest'][:12]} "
                f"{same}; run's own time {doc['seconds']:.1f} s (forecast "
                f"{t.get(f'forecast:{MODEL}')} s, qa {t.get('qa')} s, store {t.get('store')} s)")

    return verify


def _cases() -> list[Case]:
    display = ("ewspipe data demo --pgm-cells 13110 && ewspipe run --quiet --json && "
               "python -m benchmarks.bench_draws check <state> <run.json>")
    return [
        Case(label=f"pgm S = 1,000, memory_budget {b} GiB", argv=_argv(b), verify=_verify(b),
             display=display + f"  ([run] memory_budget = \"{b}GiB\")",
             target=Target(peak_rss_mib=b * 1024.0),
             note=(f"one conflictology model with n_samples = {SAMPLES:,} on the {CELLS:,}-cell "
                   "demo grid, 36 steps; fresh state; includes the demo import and the "
                   "read-back check"))
        for b in BUDGETS_GIB
    ]


BENCHMARKS = [
    Benchmark(
        name="draws",
        title="1,000 draws on the pgm grid within the memory budget",
        description=(
            "The monthly run of a pgm sampling model at S = 1,000 (13,110 cells x 36 steps: "
            "472 million draws) at [run] memory_budget 6 GiB and 2 GiB: the peak RSS stays "
            "within the budget, every draw lands in the store (DuckDB) and the stored draws "
            "are identical at both budgets."),
        cases=_cases,
    ),
]


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "check":
        print(json.dumps(_check(Path(argv[1]), Path(argv[2]))))
        return 0
    print("usage: python -m benchmarks.bench_draws check STATE RUN_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
