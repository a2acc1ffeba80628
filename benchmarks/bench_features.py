"""`features_pgm`: a ~20-feature design on the full semi-synthetic pgm panel within 30 s and 4 GiB.

The measured command is a fresh interpreter that reads and validates the panel, then builds the
design; it reports the time of ``build_design`` alone next to the whole run. Every run's output is
checked (rows, target total, canonical feature names, NaN counts that only a correct per-cell time
layout gives, and lag 1 summing to the total minus the last month), so a fast wrong design fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.harness import (
    PGM_FILE,
    Benchmark,
    Case,
    SetupError,
    Target,
    VerificationError,
    shared_dir,
)

__all__ = ["BENCHMARKS", "FEATURES"]

PGM_ROWS = 5_440_650
PGM_CELLS = 13_110
PGM_TOTAL = 1_755_451
TARGET = Target(wall_s=30.0, peak_rss_mib=4096.0)

FEATURES = (
    "lag(ged_sb, 1)", "lag(ged_sb, 2)", "lag(ged_sb, 3)", "lag(ged_sb, 6)", "lag(ged_sb, 12)",
    "msum(ged_sb, 3)", "msum(ged_sb, 12)", "msum(ged_sb, 36)", "mmean(ged_sb, 6)",
    "time_since(ged_sb, 1)", "decay(ged_sb, 12)", "decay(ged_sb, 24, 5)",
    "splag(lag(ged_sb, 1))", "splag(msum(ged_sb, 12))", "country_sum(lag(ged_sb, 1))",
    "country_mean(msum(ged_sb, 12))", "log1p(msum(ged_sb, 12))", "lat()", "lon()",
)

# NaN cells each feature must have when every cell is present in every month.
_EXPECTED_NAN_MONTHS = {
    "lag(ged_sb, 1)": 1, "lag(ged_sb, 2)": 2, "lag(ged_sb, 3)": 3, "lag(ged_sb, 6)": 6,
    "lag(ged_sb, 12)": 12, "msum(ged_sb, 3)": 2, "msum(ged_sb, 12)": 11, "msum(ged_sb, 36)": 35,
    "mmean(ged_sb, 6)": 5, "time_since(ged_sb, 1)": 0, "decay(ged_sb, 12)": 0,
    "splag(lag(ged_sb, 1))": 1, "splag(msum(ged_sb, 12))": 11, "lat()": 0, "lon()": 0,
}

# Runs in the measured interpreter: argv = [panel file, JSON list of features].
_CHILD = """\
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from ewspipe.features import build_design
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.sources.table import read_table
panel, _ = validate_panel(read_table(sys.argv[1]), "pgm", source=sys.argv[1])
t1 = time.perf_counter()
design = build_design(panel, "ged_sb", json.loads(sys.argv[2]))
t2 = time.perf_counter()
j = design.feature_names.index("lag(ged_sb, 1)")
last = design.months == design.last_month
print(json.dumps({
    "rows": len(design), "load_s": t1 - t0, "build_s": t2 - t1,
    "features": list(design.feature_names), "y_sum": float(design.y.sum()),
    "last_month_sum": float(design.y[last].sum()), "lag1_sum": float(np.nansum(design.X[:, j])),
    "nan": np.isnan(design.X).sum(axis=0).tolist(),
}))
"""


def _verify(stdout: str) -> str:
    try:
        doc = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no JSON report in the output ({exc})") from exc
    problems = []
    if doc["rows"] != PGM_ROWS:
        problems.append(f"rows {doc['rows']:,}, expected {PGM_ROWS:,}")
    if doc["y_sum"] != PGM_TOTAL:
        problems.append(f"target total {doc['y_sum']:,.0f}, expected {PGM_TOTAL:,}")
    if tuple(doc["features"]) != FEATURES:
        problems.append(f"feature names {doc['features']}, expected {list(FEATURES)}")
    if doc["lag1_sum"] != doc["y_sum"] - doc["last_month_sum"]:
        problems.append(f"lag 1 sums to {doc['lag1_sum']:,.0f}, expected the total minus the "
                        f"last month, {doc['y_sum'] - doc['last_month_sum']:,.0f}")
    nan = dict(zip(doc["features"], doc["nan"], strict=False))
    for name, months in _EXPECTED_NAN_MONTHS.items():
        if nan.get(name) != months * PGM_CELLS:
            problems.append(f"{name}: {nan.get(name)} NaN, expected {months * PGM_CELLS:,}")
    if problems:
        raise VerificationError("; ".join(problems))
    return (
        f"rows {PGM_ROWS:,}, {len(FEATURES)} features with canonical names, target total "
        f"{PGM_TOTAL:,}, lag 1 = total minus last month, NaN counts of lags and windows exact. "
        f"Last run: read + validate {doc['load_s']:.2f} s, build_design {doc['build_s']:.2f} s"
    )


def _cases() -> list[Case]:
    source = shared_dir() / PGM_FILE
    if not source.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{PGM_FILE} ({source})")
    features = json.dumps(list(FEATURES))

    def argv(run_dir: Path) -> list[str]:
        return [sys.executable, "-I", "-c", _CHILD, str(source), features]

    return [
        Case(
            label="pgm, 19 features",
            display=f"python -c <benchmarks/bench_features.py:_CHILD> <SHARED>/{PGM_FILE} "
            "'<FEATURES>'",
            argv=argv,
            verify=_verify,
            target=TARGET,
            note="read + validate the full pgm panel, then build_design with FEATURES: lags "
            "1/2/3/6/12, msum 3/12/36, mmean 6, time_since, two decays, splag of lag 1 and of "
            "msum 12, country_sum of lag 1, country_mean and log1p of msum 12, lat(), lon().",
        )
    ]


BENCHMARKS = [
    Benchmark(
        name="features_pgm",
        title="build a feature design on the full semi-synthetic pgm panel",
        description=(
            "`build_design` on the full semi-synthetic pgm panel (5,440,650 rows) with 19 "
            "features, in a fresh interpreter that first reads and validates the panel. Target "
            "from the issue: at most 30 s wall and 4 GiB (4,096 MiB) peak memory for the whole "
            "command on the 2-core reference machine; the time of `build_design` alone is in "
            "the checked line. `<SHARED>` is `$EWSPIPE_SHARED_DIR` or `../shared`."
        ),
        cases=_cases,
    )
]
