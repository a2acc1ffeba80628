"""Streamed evaluation: a 13-origin global-grid evaluation at S = 1,000 draws in bounded memory.

The issue's target: a 13-origin calibration evaluation of one sampling model at S = 1,000 on the
global grid (66,205 cells x 36 steps x 13 origins = 30,983,940 rows, ~31 billion draws, 248 GB
as float64) computes CRPS for every row with peak RSS ≤ 8 GiB. The child
(``python -m benchmarks.bench_metrics_stream global|side``) needs no file:

* ``global``: draws are generated chunk by chunk from a seed (about 1 % of the rows non-zero,
  like pgm; the rest all-zero draws) and fed to ``evaluation.streamed.score_streamed`` with
  the run's metric set (the point metrics and every sample metric a run scores: CRPS, twCRPS,
  MIS, coverages, PIT coverages, Brier). The child checks the pooled CRPS against its own
  sort-based computation per chunk and prints the time.
* ``side``: a cm-size forecast (190 countries x 36 x 13 at S = 1,000, 712 MB of draws) scored
  in memory (``evaluate``) and streamed (``iter_chunks``): every registry metric, both results
  equal bit for bit, and their speed ratio.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Benchmark, Case, Target, VerificationError

__all__ = ["BENCHMARKS"]

CELLS, SEQUENCES, STEPS, SAMPLES = 66_205, 13, 36, 1_000
FIRST_ORIGIN = 444  # calibration: origins 444..456, target months 445..492
GLOBAL_ROWS = CELLS * SEQUENCES * STEPS  # 30,983,940
NONZERO_SHARE = 0.01
CHUNK_ROWS = 16_384  # 125 MiB of float64 draws per chunk
SIDE_UNITS = 190
REL_TOL = 1e-9
GLOBAL_MEMORY = Target(peak_rss_mib=8192.0)  # the bound
SIDE_MEMORY = Target(peak_rss_mib=4096.0)  # ours: the in-memory side holds 712 MB of draws


def _global_chunks(seed: int, stats: dict[str, float]) -> Iterator[Any]:
    """The forecast in (origin, step, unit) order, CHUNK_ROWS rows at a time; accumulates an
    independent pooled CRPS (sorted-draws formula here, |c - y| for constant rows)."""
    import numpy as np
    import pandas as pd

    from ewspipe.models.forecast import Forecast

    rng = np.random.default_rng(seed)
    units = np.arange(1, CELLS + 1) * 3  # ids only matter for the join
    actual = _global_actuals(seed)["value"].to_numpy().reshape(-1, CELLS)
    s = SAMPLES
    weights = (2.0 * np.arange(1, s + 1) - s - 1) / (s * s)
    # One buffer, reset where the last chunk wrote: the scorer copies what it keeps, so a
    # producer may reuse its arrays, and the time measured is the scoring's, not calloc's.
    buffer = np.zeros((CHUNK_ROWS, s))
    busy = np.zeros(0, dtype=np.intp)
    for origin in range(FIRST_ORIGIN, FIRST_ORIGIN + SEQUENCES):
        for step in range(1, STEPS + 1):
            y_month = actual[origin + step - FIRST_ORIGIN - 1]
            for lo in range(0, CELLS, CHUNK_ROWS):
                t0 = time.perf_counter()
                hi = min(lo + CHUNK_ROWS, CELLS)
                n = hi - lo
                buffer[busy] = 0.0
                draws = buffer[:n]
                busy = np.flatnonzero(rng.random(n) < NONZERO_SHARE)
                part = np.floor(rng.gamma(0.6, 15.0, size=(len(busy), s)))
                part[rng.random(part.shape) < 0.4] = 0.0
                draws[busy] = part
                point = np.zeros(n)
                point[busy] = part.mean(axis=1)
                y = y_month[lo:hi]
                ordered = np.sort(part, axis=1)
                crps_busy = (np.abs(ordered - y[busy, None]).mean(axis=1)
                             - (ordered @ weights))
                stats["crps_sum"] += float(y.sum() - y[busy].sum() + crps_busy.sum())
                stats["rows"] += n
                frame = pd.DataFrame({"origin": origin, "step": step,
                                      "month_id": origin + step,
                                      "priogrid_gid": units[lo:hi]})
                chunk = Forecast(frame, point, draws, "priogrid_gid")
                stats["generate_s"] += time.perf_counter() - t0
                yield chunk


def _global_actuals(seed: int) -> Any:
    """Zero-inflated counts (about 1 % non-zero, heavy tail) for every cell and target month."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed + 1)
    months = np.arange(FIRST_ORIGIN + 1, FIRST_ORIGIN + SEQUENCES + STEPS)
    n = len(months) * CELLS
    value = np.where(rng.random(n) < NONZERO_SHARE, np.floor(rng.pareto(1.1, n) * 3) + 1, 0.0)
    return pd.DataFrame({"month_id": np.repeat(months, CELLS),
                         "priogrid_gid": np.tile(np.arange(1, CELLS + 1) * 3, len(months)),
                         "value": value})


def _global_child() -> dict[str, Any]:
    from ewspipe.evaluation.streamed import score_streamed
    from ewspipe.flows.modelrun import POINT_METRICS, SAMPLE_METRICS

    seed = 20_261_206
    stats = {"crps_sum": 0.0, "rows": 0.0, "generate_s": 0.0}
    metrics = POINT_METRICS + SAMPLE_METRICS
    t0 = time.perf_counter()
    result = score_streamed(_global_chunks(seed, stats), _global_actuals(seed), metrics)
    total_s = time.perf_counter() - t0
    crps = result.pooled["crps"]
    want = stats["crps_sum"] / stats["rows"]
    return {
        "case": "global", "rows": result.n_scored, "unscored": result.n_unscored,
        "samples": SAMPLES, "draws": result.n_scored * SAMPLES, "metrics": list(metrics),
        "groups": {s: int(t["group"].nunique()) for s, t in result.groups.items()},
        "pooled": result.pooled,
        "rel_diff_crps_vs_own": abs(crps - want) / abs(want) if crps is not None else None,
        "seconds": total_s, "generate_s": stats["generate_s"],
        "score_s": total_s - stats["generate_s"],
        "rows_per_s": result.n_scored / (total_s - stats["generate_s"]),
    }


def _side_child() -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from ewspipe.evaluation import evaluate, join_actuals, names
    from ewspipe.evaluation.streamed import iter_chunks, score_streamed
    from ewspipe.models.forecast import Forecast

    rng = np.random.default_rng(20_261_207)
    units = np.arange(1, SIDE_UNITS + 1)
    origin = np.repeat(np.arange(FIRST_ORIGIN, FIRST_ORIGIN + SEQUENCES), STEPS * SIDE_UNITS)
    step = np.tile(np.repeat(np.arange(1, STEPS + 1), SIDE_UNITS), SEQUENCES)
    unit = np.tile(units, SEQUENCES * STEPS)
    n = len(origin)
    draws = np.empty((n, SAMPLES))
    for lo in range(0, n, 10_000):  # cm-like: most countries forecast some violence
        block = draws[lo:lo + 10_000]
        block[:] = np.floor(rng.gamma(0.5, 40.0, size=block.shape))
        block[rng.random(block.shape) < 0.5] = 0.0
        block[rng.random(len(block)) < 0.3] = 0.0  # and some all-zero rows
    frame = pd.DataFrame({"origin": origin, "step": step, "month_id": origin + step,
                          "country_id": unit})
    forecast = Forecast(frame, draws.mean(axis=1), draws, "country_id")
    months = np.arange(FIRST_ORIGIN + 1, FIRST_ORIGIN + SEQUENCES + STEPS)
    m = len(months) * SIDE_UNITS
    actuals = pd.DataFrame({"month_id": np.repeat(months, SIDE_UNITS),
                            "country_id": np.tile(units, len(months)),
                            "value": np.floor(rng.gamma(0.3, 60.0, m)) * (rng.random(m) < 0.3)})
    metrics = names()
    t0 = time.perf_counter()
    whole = evaluate(join_actuals(forecast, actuals), metrics).to_dict()
    memory_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    streamed = score_streamed(iter_chunks(forecast), actuals, metrics).to_dict()
    streamed_s = time.perf_counter() - t0
    worst = 0.0
    for name, want in whole["pooled"].items():
        got = streamed["pooled"][name]
        if want is not None and got is not None:
            worst = max(worst, abs(got - want) / max(abs(want), 1e-300))
    return {
        "case": "side", "rows": n, "samples": SAMPLES, "metrics": len(metrics),
        "identical": json.dumps(whole, sort_keys=True) == json.dumps(streamed, sort_keys=True),
        "max_rel_diff_pooled": worst, "in_memory_s": memory_s, "streamed_s": streamed_s,
        "ratio_streamed_over_in_memory": streamed_s / memory_s,
    }


def _child(argv: list[str]) -> int:
    cases = {"global": _global_child, "side": _side_child}
    if len(argv) != 1 or argv[0] not in cases:
        print(f"usage: python -m benchmarks.bench_metrics_stream {'|'.join(cases)}",
              file=sys.stderr)
        return 2
    print(json.dumps(cases[argv[0]]()))
    return 0


# --- the harness side: commands and checks ---------------------------------------------------


def _argv(case: str) -> Callable[[Path], list[str]]:
    def argv(_: Path) -> list[str]:
        # the run directory is the cwd; this checkout's src and benchmarks for this child only
        path = os.pathsep.join([str(REPO / "src"), str(REPO)])
        return ["env", f"PYTHONPATH={path}", sys.executable, "-m",
                "benchmarks.bench_metrics_stream", case]

    return argv


def _load(stdout: str) -> dict[str, Any]:
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise VerificationError(f"no JSON result in the output ({exc})") from exc


def _verify_global(stdout: str) -> str:
    doc, problems = _load(stdout), []
    if doc.get("rows") != GLOBAL_ROWS or doc.get("unscored") != 0:
        problems.append(f"rows {doc.get('rows')} / unscored {doc.get('unscored')}, expected "
                        f"{GLOBAL_ROWS:,} / 0")
    want = {"step": STEPS, "month": STEPS + SEQUENCES - 1, "sequence": SEQUENCES}
    if doc.get("groups") != want:
        problems.append(f"groups {doc.get('groups')}, expected {want}")
    missing = [k for k, v in doc.get("pooled", {}).items() if v is None or not math.isfinite(v)]
    if missing:
        problems.append(f"pooled values missing: {missing}")
    diff = doc.get("rel_diff_crps_vs_own")
    if diff is None or not diff <= REL_TOL:
        problems.append(f"pooled CRPS differs from the child's own computation by {diff}")
    if problems:
        raise VerificationError("; ".join(problems))
    return (
        f"{GLOBAL_ROWS:,} rows x {SAMPLES:,} draws ({doc['draws'] / 1e9:.1f} billion, "
        f"{NONZERO_SHARE:.0%} of rows non-zero), {len(doc['metrics'])} metrics (the run's set), "
        f"three schemes + pooled, streamed in chunks of {CHUNK_ROWS:,} rows: "
        f"{doc['score_s']:.1f} s scoring = {doc['rows_per_s'] / 1e6:.2f} M rows/s (+ "
        f"{doc['generate_s']:.1f} s generating the draws and the child's own CRPS); pooled "
        f"CRPS {doc['pooled']['crps']:.6g} equals the child's own sorted-draws sum (rel. "
        f"diff {diff:.1e})"
    )


def _verify_side(stdout: str) -> str:
    doc = _load(stdout)
    if not doc.get("identical"):
        raise VerificationError(f"streamed and in-memory results differ (max rel. diff of the "
                                f"pooled values {doc.get('max_rel_diff_pooled')})")
    return (
        f"{doc['rows']:,} rows x {SAMPLES:,} draws (cm size), all {doc['metrics']} registry "
        f"metrics: streamed (iter_chunks) == in-memory evaluate bit for bit; in memory "
        f"{doc['in_memory_s']:.2f} s, streamed {doc['streamed_s']:.2f} s (ratio "
        f"{doc['ratio_streamed_over_in_memory']:.2f})"
    )


def _cases() -> list[Case]:
    display = "PYTHONPATH=<repo>/src:<repo> .venv/bin/python -m benchmarks.bench_metrics_stream {}"
    return [
        Case(
            label="global",
            display=display.format("global"),
            argv=_argv("global"),
            verify=_verify_global,
            target=GLOBAL_MEMORY,
            note=(
                "13-origin evaluation of a sampling model at S = 1,000 on the global grid "
                "(66,205 cells): CRPS and the other sample metrics for every row, draws "
                "generated and scored chunk by chunk (no file). Peak RSS target ≤ 8 GiB from "
                "the issue; the time is reported, not bounded."
            ),
        ),
        Case(
            label="side",
            display=display.format("side"),
            argv=_argv("side"),
            verify=_verify_side,
            target=SIDE_MEMORY,
            note="cm size, streamed vs in memory: same bits, and the speed ratio.",
        ),
    ]


BENCHMARKS = [
    Benchmark(
        name="metrics_stream",
        title="streamed evaluation: global grid at 1,000 draws in bounded memory",
        description=(
            "`ewspipe.evaluation.streamed.score_streamed` on seeded synthetic draws generated "
            "chunk by chunk. The global case scores 31 million rows x 1,000 draws; the draws "
            "are never all in memory (248 GB as float64), and the peak RSS must stay ≤ 8 GiB. "
            "The side-by-side case checks that streaming changes no bit of the scores."
        ),
        cases=_cases,
    )
]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
