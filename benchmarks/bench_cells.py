"""One global step at S = 1,000 predicted and written in unit-block chunks.

A step of the global PRIO-GRID (66,205 cells) with 1,000 draws is 530 MB a copy as float64;
the planner counts 6 working copies, so below ~4.3 GiB of ``[run] memory_budget`` one step
does not fit and :mod:`ewspipe.models.chunking` splits it into runs of whole unit blocks
(``UNIT_BLOCK`` = 8,192 cells). The child builds a synthetic 13-month design on 66,205 cells
in memory (no demo import: this measures the forecast, not the panel), fits conflictology
(``w = 12``, ``n_samples = 1000``) and writes step 1 of one origin with
:func:`ewspipe.flows.modelrun.write_predictions` under the budget:

* budget 2 GiB: 3 chunks of 24,576 cells, peak <= 2 GiB;
* budget 1 GiB: 9 chunks of one block, peak <= 1 GiB;
* both: every row and draw lands in the file (counted back with DuckDB) and the stored draws
  are identical at both budgets (a sha256 over the stored point and samples; the child also
  prints its own peak before the read-back, i.e. of predicting and writing).
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Benchmark, Case, Target, VerificationError

__all__ = ["BENCHMARKS"]

CELLS, MONTHS, SAMPLES, FIRST = 66_205, 13, 1_000, 500
BUDGETS_GIB = (2, 1)
_DIGESTS: dict[int, str] = {}


def _step(budget_gib: int, out: Path) -> dict[str, Any]:
    """Predict and write one global step; the check document."""
    import duckdb
    import numpy as np
    import pyarrow.parquet as pq

    from ewspipe.features.design import Design
    from ewspipe.flows.modelrun import write_predictions
    from ewspipe.models.baselines import Conflictology
    from ewspipe.models.chunking import plan_chunks
    from ewspipe.panel.schema import Level
    from ewspipe.partitions import Partition, RunType, Window

    rng = np.random.default_rng(0)
    y = rng.poisson(rng.gamma(0.05, 20.0, (MONTHS, CELLS))).astype(float)
    t, u = np.nonzero(np.ones_like(y, dtype=bool))
    design = Design(Level.PGM, "priogrid_gid", "ged_sb", (FIRST + t).astype(np.int64),
                    (u + 1).astype(np.int64), y[t, u], np.zeros((len(t), 1)), ("x",))
    last = FIRST + MONTHS - 1
    part = Partition(RunType.FORECASTING, Window(FIRST, last), Window(last + 1, last + 1),
                     steps=1, sequences=1)
    model = Conflictology(w=12, n_samples=SAMPLES, seed=7).fit(design, train_last=last)
    budget = budget_gib << 30
    chunks = plan_chunks(model, design, part, budget=budget)
    start = time.perf_counter()
    write_predictions(model, design, part, out, budget=budget, metadata={"model": "cells"})
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before reading
    rows, draws = duckdb.sql("SELECT count(*), sum(len(samples)) FROM read_parquet(?)",
                             params=[str(out)]).fetchall()[0]
    digests = {"point": hashlib.sha256(), "samples": hashlib.sha256()}  # whatever the groups
    with pq.ParquetFile(out) as parquet:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["point", "samples"])
            digests["point"].update(table.column("point").to_numpy().tobytes())
            digests["samples"].update(table.column("samples").combine_chunks().flatten()
                                      .to_numpy().tobytes())
    digest = hashlib.sha256(b"".join(d.digest() for d in digests.values()))
    return {"chunks": len(chunks), "seconds": seconds, "rows": int(rows), "draws": int(draws),
            "digest": digest.hexdigest(), "peak_write_mib": round(peak_mib)}


def _verify(budget_gib: int) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        try:
            doc = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise VerificationError(f"no check document in the output ({exc})") from exc
        problems = []
        if doc["rows"] != CELLS or doc["draws"] != CELLS * SAMPLES:
            problems.append(f"{doc['rows']:,} rows and {doc['draws']:,} draws stored")
        if doc["chunks"] < 2:
            problems.append(f"{doc['chunks']} chunk(s): the step was not split")
        others = {b: d for b, d in _DIGESTS.items() if b != budget_gib}
        if any(d != doc["digest"] for d in others.values()):
            problems.append(f"the stored draws differ from those at {sorted(others)} GiB")
        if problems:
            raise VerificationError("; ".join(problems))
        _DIGESTS[budget_gib] = doc["digest"]
        same = "identical to the other budget's" if others else "recorded"
        return (f"{doc['chunks']} unit-block chunks; {doc['rows']:,} rows x {SAMPLES:,} draws "
                f"counted back with DuckDB; stored draws sha256 {doc['digest'][:12]} {same}; "
                f"predict + write {doc['seconds']:.1f} s, peak {doc['peak_write_mib']:,} MiB "
                "before the read-back")

    return verify


def _argv(budget_gib: int) -> Callable[[Path], list[str]]:
    def argv(run_dir: Path) -> list[str]:
        return ["env", f"PYTHONPATH={REPO / 'src'}:{REPO}", sys.executable, "-m",
                "benchmarks.bench_cells", "step", str(budget_gib),
                str(run_dir / "step.parquet")]

    return argv


def _cases() -> list[Case]:
    return [
        Case(label=f"one global step, S = 1,000, memory_budget {b} GiB", argv=_argv(b),
             verify=_verify(b), target=Target(peak_rss_mib=b * 1024.0),
             display=f"python -m benchmarks.bench_cells step {b} <out.parquet>",
             note=(f"conflictology n_samples = {SAMPLES:,} on a synthetic {CELLS:,}-cell "
                   "design (13 months, built in memory), step 1 of one origin"))
        for b in BUDGETS_GIB
    ]


BENCHMARKS = [
    Benchmark(
        name="cells",
        title="One global step at 1,000 draws in unit-block chunks",
        description=(
            "A step of the global grid (66,205 cells x 1,000 draws) does not fit a 2 GiB or "
            "1 GiB memory budget whole: it is predicted and written in runs of 8,192-cell "
            "unit blocks, the peak RSS stays within the budget and the stored draws are "
            "identical at both budgets."),
        cases=_cases,
    ),
]


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "step":
        print(json.dumps(_step(int(argv[1]), Path(argv[2]))))
        return 0
    print("usage: python -m benchmarks.bench_cells step BUDGET_GIB OUT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
