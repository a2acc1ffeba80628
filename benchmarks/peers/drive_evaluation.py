"""views-evaluation 2.0.0 driver: score aligned arrays step-, month- and sequence-wise.

Runs inside the views-evaluation venv (numpy, scipy, views_evaluation; no pandas, no ewspipe):

    drive_evaluation.py INPUT_DIR point|crps WARM

INPUT_DIR holds .npy files written by benchmarks/bench_peers.py: actual, month, unit, origin,
step, and point (point case) or samples (crps case). The timed call is what a caller of the
peer does with aligned arrays: build an ``EvaluationFrame`` and run ``NativeEvaluator.evaluate``
(one cold call, then WARM warm ones). Prints one JSON document: timings and every group's
values per scheme, keyed like ewspipe's (scheme -> group -> metric).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from views_evaluation import EvaluationFrame, NativeEvaluator

METRICS = {"point": ["MSE", "MSLE", "RMSLE"], "crps": ["CRPS"]}
SCHEMES = {"step": ("step", 4), "month": ("month", 5), "time_series": ("sequence", 2)}


def main(argv: list[str]) -> int:
    folder, case, warm = Path(argv[0]), argv[1], int(argv[2])
    t_load = time.perf_counter()
    actual = np.load(folder / "actual.npy")
    ids = {
        "time": np.load(folder / "month.npy"),
        "unit": np.load(folder / "unit.npy"),
        "origin": np.load(folder / "origin.npy"),
        "step": np.load(folder / "step.npy"),
    }
    if case == "point":
        pred = np.load(folder / "point.npy")[:, None]  # the peer's point shape: (N, 1)
        config = {"regression_point_metrics": METRICS["point"]}
    else:
        pred = np.load(folder / "samples.npy")
        config = {"regression_sample_metrics": METRICS["crps"]}
    load_s = time.perf_counter() - t_load
    config.update({"steps": list(range(1, int(ids["step"].max()) + 1)),
                   "regression_targets": ["ged_sb"]})
    evaluator = NativeEvaluator(config)

    times, report = [], None
    for _ in range(1 + warm):
        t0 = time.perf_counter()
        frame = EvaluationFrame(actual, pred, ids, metadata={"target": "ged_sb"})
        report = evaluator.evaluate(frame)
        times.append(time.perf_counter() - t0)

    results = report.to_dict()["schemas"]
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for key, (scheme, prefix) in SCHEMES.items():
        groups[scheme] = {
            str(int(name[prefix:])): {m.lower(): float(v) for m, v in values.items()}
            for name, values in results[key].items()
        }
    print(json.dumps({
        "rows": len(actual), "samples": int(pred.shape[1]), "load_s": load_s,
        "cold_s": times[0], "warm_median_s": statistics.median(times[1:]) if warm else None,
        "all_s": times, "groups": groups,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
