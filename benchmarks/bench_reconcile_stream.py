"""Streamed per-draw reconciliation at global scale: 66,205 cells x 36 months x 1,000 draws.

The issue's global target: reconciliation per draw at S = 1,000, streamed by month, with
bounded memory. The child process (``python -m benchmarks.bench_reconcile_stream``) reads the
real cell -> country table (``<SHARED>/data/priogrid_country/priogrid.parquet``: 66,205 cells,
187 countries), makes a seeded cm forecast (187 countries x 36 months x 1,000 draws, 60% of
the draws 0) and feeds a :class:`ewspipe.ensembles.reconcile.Reconciler` one month at a time:
each month's pgm draws are generated from the seed when the reconciler asks for them (66,205 x
1,000 float64 = 505 MiB), so at most one month of draws in and one out are alive. The draws
are mostly zeros like a pgm model's: 5% of the cells are "active" (positive in 30% of the
draws), the rest are positive in 0.05% of the draws, and each country has one cell positive in
every draw, so that every country-month-draw can be placed and checked.

``verify`` checks, from the child's independent ``np.add.reduceat`` over the cells sorted by
country, that **every** country-month-draw (187 x 36 x 1,000 = 6.7 M) sums to its cm draw
within 1e-9 relative; the memory target is peak RSS ≤ 4 GiB (the whole child).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    Benchmark,
    Case,
    SetupError,
    Target,
    VerificationError,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

MAPPING = "data/priogrid_country/priogrid.parquet"
CELLS, STEPS, SAMPLES = 66_205, 36, 1_000
ORIGIN, SEED = 540, 20_261_206
ACTIVE_SHARE, ACTIVE_P, RARE_P = 0.05, 0.3, 5e-4
CM_ZERO_SHARE = 0.6
CHECK_DRAWS = 125  # draws per block of the reference sums: (cells x 125) float64 = 63 MiB
REL_TOL = 1e-9
MEMORY = Target(peak_rss_mib=4096.0)


def _ownership(path: Path) -> tuple[Any, Any, Any]:
    import numpy as np
    import pandas as pd

    from ewspipe.ensembles.reconcile import Ownership

    table = pd.read_parquet(path)
    own = Ownership.from_frame(table, source="priogrid_country/priogrid.parquet")
    gids = np.sort(table["priogrid_id"].to_numpy(dtype=np.int64))
    return own, gids, own.countries(gids, np.zeros(len(gids), dtype=np.int64))


def _country_forecast(countries: Any) -> Any:
    import numpy as np
    import pandas as pd

    from ewspipe.models.forecast import Forecast

    rng = np.random.default_rng([SEED, 0])
    n = len(countries) * STEPS
    step = np.repeat(np.arange(1, STEPS + 1), len(countries))
    frame = pd.DataFrame({"origin": np.full(n, ORIGIN), "step": step, "month_id": ORIGIN + step,
                          "country_id": np.tile(countries, STEPS)})
    draws = rng.gamma(0.5, 40.0, (n, SAMPLES))
    draws[rng.random((n, SAMPLES)) < CM_ZERO_SHARE] = 0.0
    return Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                    unit_column="country_id")


def _months(gids: Any, owner: Any, clock: dict[str, float]) -> Iterator[Any]:
    """One pgm month at a time, generated from (seed, step) when asked for."""
    import numpy as np
    import pandas as pd

    from ewspipe.models.forecast import Forecast

    pick = np.random.default_rng([SEED, 1])
    active = np.sort(pick.choice(len(gids), int(ACTIVE_SHARE * len(gids)), replace=False))
    hot = np.unique(owner, return_index=True)[1]  # each country's first cell
    size = len(gids) * SAMPLES
    for step in range(1, STEPS + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([SEED, 2, step])
        draws = np.zeros((len(gids), SAMPLES))
        vals = rng.gamma(0.6, 6.0, (len(active), SAMPLES))
        vals[rng.random((len(active), SAMPLES)) >= ACTIVE_P] = 0.0
        draws[active] = vals
        gaps = rng.geometric(RARE_P, int(size * RARE_P * 1.2) + 100)
        flat = np.cumsum(gaps) - 1
        flat = flat[flat < size]
        draws.reshape(-1)[flat] = rng.gamma(0.5, 2.0, len(flat))
        draws[hot] = rng.gamma(1.0, 0.5, (len(hot), SAMPLES)) + 1e-3
        frame = pd.DataFrame({"origin": np.full(len(gids), ORIGIN), "step": step,
                              "month_id": ORIGIN + step, "priogrid_gid": gids})
        month = Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                         unit_column="priogrid_gid")
        del draws, vals
        clock["generate_s"] += time.perf_counter() - t0
        yield month


def _child() -> dict[str, Any]:
    import numpy as np

    from ewspipe.ensembles.reconcile import Reconciler

    path = shared_dir() / MAPPING
    if not path.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{MAPPING}")
    t_start = time.perf_counter()
    own, gids, owner = _ownership(path)
    countries = np.unique(owner[owner >= 0])
    country = _country_forecast(countries)
    rec = Reconciler(country, own, grid_model="synthetic pgm", country_model="synthetic cm")
    setup_s = time.perf_counter() - t_start

    # the reference: cells sorted by country, summed per country with np.add.reduceat
    order = np.argsort(owner, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(owner[order]) != 0])
    ref_countries = owner[order][starts]
    clock = {"generate_s": 0.0, "reconcile_s": 0.0, "check_s": 0.0}
    worst, checked, not_equal, zeros, rows = 0.0, 0, 0, 0.0, 0
    stream = rec.run(_months(gids, owner, clock))
    while True:
        t0 = time.perf_counter()
        out = next(stream, None)
        if out is None:
            break
        t1 = time.perf_counter()
        step = int(out.frame["step"].iloc[0])
        c_rows = slice((step - 1) * len(countries), step * len(countries))
        assert np.array_equal(country.frame["country_id"].to_numpy()[c_rows], ref_countries)
        want = country.samples[c_rows]
        zeros += float(np.count_nonzero(out.samples == 0)) / out.samples.size
        for j in range(0, SAMPLES, CHECK_DRAWS):
            sums = np.add.reduceat(out.samples[order, j:j + CHECK_DRAWS], starts, axis=0)
            w = want[:, j:j + CHECK_DRAWS]
            rel = np.abs(sums - w) / np.maximum(np.abs(w), 1e-300)
            rel[w == 0] = np.abs(sums[w == 0])  # a zero cm draw: the cells must be 0
            worst = max(worst, float(rel.max()))
            not_equal += int(np.count_nonzero(rel > REL_TOL))
            checked += rel.size
        rows += len(out)
        del out
        t2 = time.perf_counter()
        clock["reconcile_s"] += t1 - t0
        clock["check_s"] += t2 - t1
    clock["reconcile_s"] -= clock["generate_s"]  # next() above includes making the month
    report = rec.report()
    return {
        "cells": len(gids), "months": STEPS, "samples": SAMPLES, "rows": rows,
        "countries": len(countries), "country_month_draws": checked, "not_equal": not_equal,
        "max_rel_diff": worst, "zero_share": zeros / STEPS,
        "zero_sum_draws": report.summary["zero_sum_draws"],
        "factor_alerts": report.summary["factor_alerts"],
        "country_months": report.summary["country_months"],
        "setup_s": setup_s, **clock, "total_s": time.perf_counter() - t_start,
        "reconcile_per_month_s": clock["reconcile_s"] / STEPS,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _argv(_: Path) -> list[str]:
    # the run directory is the cwd: the repository (benchmarks) and its src go on PYTHONPATH
    path = os.pathsep.join([str(REPO), str(REPO / "src")])
    return ["env", f"PYTHONPATH={path}", sys.executable, "-m", "benchmarks.bench_reconcile_stream"]


def _verify(stdout: str) -> str:
    try:
        doc = json.loads(stdout)
    except ValueError as exc:
        raise VerificationError(f"no JSON result in the output ({exc})") from exc
    want = doc.get("countries", 0) * STEPS * SAMPLES
    problems = []
    if doc.get("rows") != CELLS * STEPS:
        problems.append(f"{doc.get('rows')} rows reconciled, expected {CELLS * STEPS:,}")
    if not want or doc.get("country_month_draws") != want:
        problems.append(f"{doc.get('country_month_draws')} country-month-draws checked, "
                        f"expected {want:,}")
    if doc.get("not_equal") != 0 or not doc.get("max_rel_diff", 1.0) <= REL_TOL:
        problems.append(f"{doc.get('not_equal')} country-month-draws do not sum to their cm "
                        f"draw (max rel. diff {doc.get('max_rel_diff')})")
    if doc.get("zero_sum_draws") != 0:
        problems.append(f"{doc.get('zero_sum_draws')} draws had no positive cell")
    if problems:
        raise VerificationError("; ".join(problems))
    return (
        f"{doc['cells']:,} cells x {STEPS} months x {SAMPLES:,} draws ({doc['rows']:,} rows, "
        f"{doc['zero_share']:.1%} of cell draws 0) streamed month by month through a "
        f"Reconciler with a {doc['countries']}-country cm forecast of {SAMPLES:,} draws: all "
        f"{doc['country_month_draws']:,} country-month-draws sum to their cm draw (max rel. "
        f"diff {doc['max_rel_diff']:.1e}, np.add.reduceat reference); reconcile "
        f"{doc['reconcile_s']:.1f} s ({doc['reconcile_per_month_s']:.2f} s a month), generating "
        f"{doc['generate_s']:.1f} s, checking {doc['check_s']:.1f} s, child peak RSS "
        f"{doc['peak_rss_mib']:,.0f} MiB"
    )


def _cases() -> list[Case]:
    if not (shared_dir() / MAPPING).is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{MAPPING}")
    return [
        Case(
            label="global pgm -> cm, 1,000 draws, by month",
            display="PYTHONPATH=<repo>:<repo>/src .venv/bin/python -m "
                    "benchmarks.bench_reconcile_stream",
            argv=_argv,
            verify=_verify,
            target=MEMORY,
            note=(
                f"{CELLS:,} real cells (187 countries) x {STEPS} months x {SAMPLES:,} draws "
                "(2.4 billion cell-draws, 17.8 GiB as float64 if held at once) reconciled per "
                "draw, one month in memory at a time; wall and memory include generating the "
                "draws and the reduceat reference check."
            ),
        )
    ]


BENCHMARKS = [
    Benchmark(
        name="reconcile_stream",
        title="Streamed per-draw reconciliation, global grid at 1,000 draws",
        description=(
            "`ewspipe.ensembles.reconcile.Reconciler` fed one month at a time: the real "
            f"{CELLS:,}-cell PRIO-GRID -> country table, seeded mostly-zero pgm draws "
            f"(S = {SAMPLES:,}, {STEPS} months) and a seeded cm forecast of the same draws. "
            "Every country-month-draw must sum to its cm draw; target: peak RSS of the whole "
            f"child ≤ {MEMORY.peak_rss_mib:g} MiB."
        ),
        cases=_cases,
    )
]


def _main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m benchmarks.bench_reconcile_stream", file=sys.stderr)
        return 2
    print(json.dumps(_child()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
