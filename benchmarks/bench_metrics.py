"""Evaluation speed: a full pgm point evaluation, and sample CRPS on a million rows.

Targets from the issue, for the 2-core reference machine:

* point: 13,110 cells x 13 sequences x 36 steps = 6,135,480 rows scored with MSE, MSLE and RMSLE,
  step-, month- and sequence-wise plus pooled, in at most 0.35 s;
* crps: CRPS of 100 samples per row on 1,000,000 rows (all schemes) at >= 1.3 M rows/s,
  i.e. at most 0.77 s, without any rows x S x S intermediate.

The targets are for the scoring call alone, so each case runs a child process
(``python -m benchmarks.bench_metrics point|crps``) that builds seeded synthetic data, times
``evaluate`` itself (one cold call, then warm repeats) and prints JSON. ``verify`` checks the
scores against independent references and fails the benchmark if the slowest timed call misses
its target; the harness's own Target bounds peak memory of the whole child.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Benchmark, Case, Target, VerificationError

__all__ = ["BENCHMARKS"]

CELLS, SEQUENCES, STEPS = 13_110, 13, 36
FIRST_ORIGIN = 444  # calibration: origins 444..456, target months 445..492
POINT_ROWS = CELLS * SEQUENCES * STEPS  # 6,135,480
POINT_TARGET_S = 0.35
CRPS_ROWS, CRPS_SAMPLES = 1_000_000, 100
CRPS_TARGET_ROWS_PER_S = 1.3e6
WARM_REPEATS = 5
REL_TOL = 1e-9

# Peak memory bounds for the whole child (data generation included). The crps samples alone
# are 763 MiB; a rows x S x S array would be 74 GiB, so staying near the input size proves the
# sorted-samples path. The point data (frame, actuals, arrays) take about 0.5 GiB.
POINT_MEMORY = Target(peak_rss_mib=1536.0)
CRPS_MEMORY = Target(peak_rss_mib=2048.0)


# --- the child: build data, time evaluate, print JSON ---------------------------------------


def _timed(call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """One cold call, then WARM_REPEATS warm ones; the worst of all is what the target sees."""
    times, result = [], None
    for _ in range(1 + WARM_REPEATS):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return result, {"cold_s": times[0], "warm_median_s": statistics.median(times[1:]),
                    "worst_s": max(times), "all_s": times}


def _grid(rng: Any, units_per_cell: int) -> dict[str, Any]:
    import numpy as np

    units = np.sort(rng.choice(259_200, size=units_per_cell, replace=False)) + 1
    block = units_per_cell
    origin = np.repeat(np.arange(FIRST_ORIGIN, FIRST_ORIGIN + SEQUENCES), STEPS * block)
    step = np.tile(np.repeat(np.arange(1, STEPS + 1), block), SEQUENCES)
    unit = np.tile(units, SEQUENCES * STEPS)
    return {"units": units, "origin": origin, "step": step, "unit": unit}


def _forecast_and_actuals(rng: Any, grid: dict[str, Any], point: Any, samples: Any) -> Any:
    import numpy as np
    import pandas as pd

    from ewspipe.models.forecast import Forecast

    frame = pd.DataFrame({"origin": grid["origin"], "step": grid["step"],
                          "month_id": grid["origin"] + grid["step"],
                          "priogrid_gid": grid["unit"]})
    forecast = Forecast(frame=frame, point=point, samples=samples, unit_column="priogrid_gid")
    months = np.arange(FIRST_ORIGIN + 1, FIRST_ORIGIN + SEQUENCES + STEPS)
    n = len(months) * len(grid["units"])
    # zero-inflated, heavy-tailed counts, like pgm fatalities
    value = np.where(rng.random(n) < 0.04, np.floor(rng.pareto(1.1, n) * 3) + 1, 0.0)
    actuals = pd.DataFrame({"month_id": np.repeat(months, len(grid["units"])),
                            "priogrid_gid": np.tile(grid["units"], len(months)),
                            "value": value})
    return forecast, actuals


def _point_child() -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from ewspipe.evaluation import evaluate, join_actuals

    rng = np.random.default_rng(20_240_444)
    grid = _grid(rng, CELLS)
    x = rng.gamma(0.3, 2.0, POINT_ROWS)
    forecast, actuals = _forecast_and_actuals(rng, grid, x, x[:, None])
    t0 = time.perf_counter()
    scored = join_actuals(forecast, actuals)
    join_s = time.perf_counter() - t0
    result, timing = _timed(lambda: evaluate(scored, ["mse", "msle", "rmsle"]))

    # independent reference: pandas merge + groupby on the same data
    ref = forecast.frame.assign(x=x).merge(actuals, on=["month_id", "priogrid_gid"])
    ref["se"] = (ref["value"] - ref["x"]) ** 2
    ref["sle"] = (np.log1p(ref["value"]) - np.log1p(ref["x"])) ** 2
    worst = 0.0
    for scheme, key in (("step", "step"), ("month", "month_id"), ("sequence", "origin")):
        want = ref.groupby(key)[["se", "sle"]].mean()
        table = result.groups[scheme].pivot(index="group", columns="metric", values="value")
        got = pd.DataFrame({"se": table["mse"].astype(float), "sle": table["msle"].astype(float)})
        worst = max(worst, float((got - want.to_numpy()).abs().div(want.abs()).max().max()))
    pooled_ref = {"mse": ref["se"].mean(), "msle": ref["sle"].mean(),
                  "rmsle": float(np.sqrt(ref["sle"].mean()))}
    for name, want in pooled_ref.items():
        worst = max(worst, abs(result.pooled[name] - want) / abs(want))
    return {
        "case": "point", "rows": result.n_scored, "unscored": result.n_unscored,
        "groups": {s: int(t["group"].nunique()) for s, t in result.groups.items()},
        "pooled": result.pooled, "max_rel_diff_vs_pandas": worst,
        "join_s": join_s, **timing,
    }


def _crps_brute(y: Any, samples: Any) -> float:
    import numpy as np

    s = samples.shape[1]
    first = np.abs(samples - y[:, None]).mean(axis=1)
    second = np.abs(samples[:, :, None] - samples[:, None, :]).sum(axis=(1, 2)) / (2 * s * s)
    return float(np.mean(first - second))


def _crps_child() -> dict[str, Any]:
    import numpy as np

    from ewspipe.evaluation import evaluate, get_metric, join_actuals

    rng = np.random.default_rng(20_240_100)
    grid = _grid(rng, -(-CRPS_ROWS // (SEQUENCES * STEPS)))
    grid = {k: (v[:CRPS_ROWS] if k != "units" else v) for k, v in grid.items()}
    samples = np.empty((CRPS_ROWS, CRPS_SAMPLES))
    for lo in range(0, CRPS_ROWS, 50_000):  # in blocks: generation must not set the peak
        block = samples[lo:lo + 50_000]
        block[:] = rng.gamma(0.4, 20.0, size=block.shape)
        block[rng.random(block.shape) < 0.6] = 0.0
        np.floor(block, out=block)  # counts, with the ties real sample forecasts have
    forecast, actuals = _forecast_and_actuals(rng, grid, samples.mean(axis=1), samples)
    scored = join_actuals(forecast, actuals)
    result, timing = _timed(lambda: evaluate(scored, ["crps"]))

    sub = slice(0, 2_000)
    brute = _crps_brute(scored.actual[sub], scored.samples[sub])
    fast = get_metric("crps")(scored.actual[sub], scored.samples[sub])
    step = result.groups["step"]
    weighted = float((step["value"].astype(float) * step["n"]).sum() / step["n"].sum())
    return {
        "case": "crps", "rows": result.n_scored, "samples": CRPS_SAMPLES,
        "groups": {s: int(t["group"].nunique()) for s, t in result.groups.items()},
        "pooled": result.pooled,
        "rel_diff_vs_quadratic_2000_rows": abs(fast - brute) / abs(brute),
        "rel_diff_pooled_vs_step_weighted": abs(result.pooled["crps"] - weighted) / weighted,
        "rows_per_s_worst": result.n_scored / timing["worst_s"], **timing,
    }


def _child(argv: list[str]) -> int:
    cases = {"point": _point_child, "crps": _crps_child}
    if len(argv) != 1 or argv[0] not in cases:
        print(f"usage: python -m benchmarks.bench_metrics {'|'.join(cases)}", file=sys.stderr)
        return 2
    print(json.dumps(cases[argv[0]]()))
    return 0


# --- the harness side: commands and checks ---------------------------------------------------


def _argv(case: str) -> Callable[[Path], list[str]]:
    def argv(_: Path) -> list[str]:
        # the run directory is the cwd, so the repository goes on PYTHONPATH for this child only
        return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "benchmarks.bench_metrics",
                case]

    return argv


def _load(stdout: str) -> dict[str, Any]:
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise VerificationError(f"no JSON result in the output ({exc})") from exc


def _check_groups(doc: dict[str, Any], problems: list[str]) -> None:
    want = {"step": STEPS, "month": STEPS + SEQUENCES - 1, "sequence": SEQUENCES}
    if doc.get("groups") != want:
        problems.append(f"groups {doc.get('groups')}, expected {want}")


def _verify_point(stdout: str) -> str:
    doc, problems = _load(stdout), []
    if doc.get("rows") != POINT_ROWS or doc.get("unscored") != 0:
        problems.append(f"rows {doc.get('rows')} / unscored {doc.get('unscored')}, expected "
                        f"{POINT_ROWS:,} / 0")
    _check_groups(doc, problems)
    if not doc.get("max_rel_diff_vs_pandas", 1.0) <= REL_TOL:
        problems.append(f"scores differ from pandas by {doc.get('max_rel_diff_vs_pandas')}")
    if problems:
        raise VerificationError("; ".join(problems))
    worst = doc["worst_s"]
    if worst > POINT_TARGET_S:
        raise VerificationError(
            f"evaluate took {worst:.3f} s in its slowest call, target {POINT_TARGET_S} s"
        )
    return (
        f"{POINT_ROWS:,} rows, 36 + 48 + 13 groups and pooled MSE/MSLE/RMSLE equal a pandas "
        f"merge + groupby (max rel. diff {doc['max_rel_diff_vs_pandas']:.1e}); evaluate: cold "
        f"{doc['cold_s']:.3f} s, warm median {doc['warm_median_s']:.3f} s, worst "
        f"{worst:.3f} s (target ≤ {POINT_TARGET_S} s: met); join_actuals {doc['join_s']:.2f} s "
        "(no target)"
    )


def _verify_crps(stdout: str) -> str:
    doc, problems = _load(stdout), []
    if doc.get("rows") != CRPS_ROWS:
        problems.append(f"rows {doc.get('rows')}, expected {CRPS_ROWS:,}")
    _check_groups(doc, problems)
    for key in ("rel_diff_vs_quadratic_2000_rows", "rel_diff_pooled_vs_step_weighted"):
        if not doc.get(key, 1.0) <= REL_TOL:
            problems.append(f"{key} = {doc.get(key)}")
    if problems:
        raise VerificationError("; ".join(problems))
    rate = doc["rows_per_s_worst"]
    if rate < CRPS_TARGET_ROWS_PER_S:
        raise VerificationError(
            f"CRPS ran at {rate / 1e6:.2f} M rows/s in its slowest call, target "
            f"{CRPS_TARGET_ROWS_PER_S / 1e6:.1f} M rows/s"
        )
    return (
        f"{CRPS_ROWS:,} rows x {CRPS_SAMPLES} samples; CRPS equals the O(S^2) formula on 2,000 "
        f"rows (rel. diff {doc['rel_diff_vs_quadratic_2000_rows']:.1e}) and pooled equals the "
        f"n-weighted step-wise values; evaluate: cold {doc['cold_s']:.3f} s, warm median "
        f"{doc['warm_median_s']:.3f} s, worst {doc['worst_s']:.3f} s = {rate / 1e6:.2f} M rows/s "
        f"(target ≥ {CRPS_TARGET_ROWS_PER_S / 1e6:.1f} M rows/s: met)"
    )


def _cases() -> list[Case]:
    display = "PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_metrics {}"
    return [
        Case(
            label="point",
            display=display.format("point"),
            argv=_argv("point"),
            verify=_verify_point,
            target=POINT_MEMORY,
            note=(
                "full pgm point evaluation: 13,110 cells x 13 sequences x 36 steps = 6,135,480 "
                "rows, MSE + MSLE + RMSLE, step-, month-, sequence-wise and pooled. Time target "
                f"≤ {POINT_TARGET_S} s for `evaluate` (checked in every run, below); wall and "
                "memory in the table include building the synthetic data and a pandas reference."
            ),
        ),
        Case(
            label="crps",
            display=display.format("crps"),
            argv=_argv("crps"),
            verify=_verify_crps,
            target=CRPS_MEMORY,
            note=(
                "CRPS of 100 samples per row on 1,000,000 rows, all schemes and pooled. Time "
                f"target ≥ {CRPS_TARGET_ROWS_PER_S / 1e6:.1f} M rows/s for `evaluate` (checked "
                "in every run, below); the samples alone are 763 MiB, a rows x S x S "
                "intermediate would be 74 GiB."
            ),
        ),
    ]


BENCHMARKS = [
    Benchmark(
        name="metrics",
        title="evaluation speed: pgm point schemes and sample CRPS",
        description=(
            "`ewspipe.evaluation.evaluate` on seeded synthetic data of the issue's shapes. "
            "Targets from the issue, for `evaluate` alone on the 2-core reference machine: the "
            f"full pgm point evaluation (MSE, MSLE, RMSLE; three schemes + pooled) in ≤ "
            f"{POINT_TARGET_S} s, and CRPS with 100 samples at ≥ 1.3 M rows/s. Each run times one "
            f"cold and {WARM_REPEATS} warm calls in the child process and the *slowest* must "
            "meet the target, else the benchmark fails. The table's wall time is the whole "
            "child (data generation, join, references); its memory bound (ours) shows that no "
            "rows x S x S intermediate exists."
        ),
        cases=_cases,
    )
]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
