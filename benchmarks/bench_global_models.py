"""`global_models`: the shipped pgm models fit and forecast on the global PRIO-GRID in-process.

copper_mesh (a LightGBM stepshifter, 17 features incl. splag and country_sum) and grid_mean
are fitted up to the last month and forecast its 36 steps, on a synthetic panel of every cell
of the global PRIO-GRID table (66,205 cells, their real countries, 443 months: ~29 M rows),
through the path of the monthly forecasting run: ``flows.modelrun.model_design``, the model's
``fit`` and ``flows.modelrun.predict_origins``. Issue 21's budget for the whole monthly run
is 8 GiB peak and 30 minutes. The child builds the ``Panel`` directly (zero-inflated counts
clustered by country and month, ~1 % non-zero, seeded): the streaming import of a global
snapshot is the subject of the import benchmarks, not of this one.

Every run's output is checked: one forecast row per cell and step, finite and >= 0; grid_mean
equal to expm1(mean(log1p)) of each cell's last 12 months computed here independently;
copper_mesh forecasting more for cells with recent conflict than for quiet ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.harness import (
    REPO,
    Benchmark,
    Case,
    SetupError,
    Target,
    VerificationError,
    shared_dir,
)

__all__ = ["BENCHMARKS", "GLOBAL_CELLS"]

PRIOGRID_FILE = "data/priogrid_country/priogrid.parquet"
GLOBAL_CELLS = 66_205
MONTHS = 443
STEPS = 36
MODELS = ("copper_mesh", "grid_mean")
TARGET = Target(wall_s=1800.0, peak_rss_mib=8192.0)
TIMEOUT_S = 1800.0

# Runs in the measured interpreter: argv = [source folder, priogrid table, models folder,
# months]; the code measured is this checkout's (the source folder goes first on the path).
_CHILD = """\
import sys
sys.path.insert(0, sys.argv[1])
import json, time, tomllib
import numpy as np, pandas as pd
t0 = time.perf_counter()

def hwm_mib():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024

from ewspipe.catalog.spec import ModelSpec
from ewspipe.flows.modelrun import model_design, predict_origins
from ewspipe.models import registry
from ewspipe.panel.schema import Level, Panel, PanelSpec
from ewspipe.panel.snapshot import Manifest
from ewspipe.partitions import RunType
from ewspipe.settings import Settings

table, models, n_months = sys.argv[2], sys.argv[3], int(sys.argv[4])
cells = pd.read_parquet(table).sort_values("priogrid_id")
gids = cells["priogrid_id"].to_numpy(np.int32)
countries = cells["country_id"].to_numpy(np.int64)
rng = np.random.default_rng(20261206)
ids, owner = np.unique(countries, return_inverse=True)
prone = rng.random(len(ids)) < 0.25  # a quarter of the countries ever fight
at_war = np.zeros(len(ids), dtype=bool)
hot = rng.beta(0.5, 3.0, len(gids))  # each cell's share of its country's conflict months
counts = np.zeros((n_months, len(gids)), dtype=np.int32)
for m in range(n_months):  # wars start and end by country, and cluster in time
    flip = rng.random(len(ids))
    at_war = np.where(at_war, flip > 0.04, prone & (flip < 0.02))
    hit = rng.random(len(gids)) < np.where(at_war[owner], hot, 0.0008)
    counts[m, hit] = 1 + np.floor(rng.lognormal(0.5, 1.2, int(hit.sum()))).astype(np.int32)
first = 121
frame = pd.DataFrame({
    "month_id": np.repeat(np.arange(first, first + n_months, dtype=np.int16), len(gids)),
    "priogrid_gid": np.tile(gids, n_months),
    "country_id": np.tile(countries.astype(np.int16), n_months),
    "ged_sb": counts.reshape(-1),
})
last = first + n_months - 1
recent = counts[-12:].astype(np.float64)
del counts
panel = Panel(frame=frame, spec=PanelSpec(level=Level.PGM, count_columns=("ged_sb",)))
manifest = Manifest(
    id="synthetic-global", sha256="", file_sha256="", level="pgm", source={}, imported_at="",
    fetched_at="", columns={}, count_columns=["ged_sb"], rows=len(frame), first_month=first,
    last_month=last, months=n_months, units=len(gids), units_last_month=len(gids), totals={},
    validation={}, ewspipe_version="")
part = Settings().partition_scheme().partition(RunType.FORECASTING, last_observed=last)
report = {"rows": len(frame), "cells": len(gids), "nonzero": float((recent > 0).mean()),
          "panel_s": time.perf_counter() - t0, "panel_hwm_mib": hwm_mib(), "models": {}}
for name in ("copper_mesh", "grid_mean"):
    with open(f"{models}/{name}.toml", "rb") as fh:
        spec = ModelSpec.model_validate(tomllib.load(fh))
    t1 = time.perf_counter()
    design = model_design(spec, panel, manifest, train_last=part.train.last)
    t2 = time.perf_counter()
    design_hwm = hwm_mib()
    model = registry.create(spec.algorithm, spec.hyperparameters_dict())
    model.fit(design, train_last=part.train.last)
    t3 = time.perf_counter()
    fit_hwm = hwm_mib()
    forecast = predict_origins(model, design, part)
    t4 = time.perf_counter()
    point = forecast.point.reshape(-1, len(gids))  # (step, cell), cells in gid order
    quiet = recent.sum(axis=0) == 0
    report["models"][name] = {
        "design_rows": len(design), "features": len(design.feature_names),
        "design_s": t2 - t1, "fit_s": t3 - t2, "predict_s": t4 - t3,
        "design_hwm_mib": design_hwm, "fit_hwm_mib": fit_hwm, "predict_hwm_mib": hwm_mib(),
        "forecast_rows": len(forecast),
        "steps": sorted(set(forecast.frame["step"].tolist())),
        "finite_nonneg": bool(np.isfinite(point).all() and (point >= 0).all()),
        "units_sorted": bool(
            (forecast.frame["priogrid_gid"].to_numpy().reshape(-1, len(gids)) == gids).all()),
        "mean_quiet": float(point[:, quiet].mean()), "mean_active": float(point[:, ~quiet].mean()),
        "point": point[0].tolist() if name == "grid_mean" else None,
    }
    del design, model, forecast, point
report["expected_grid_mean"] = np.expm1(np.log1p(recent).mean(axis=0)).tolist()
report["total_s"] = time.perf_counter() - t0
print(json.dumps(report))
"""


def _verify(stdout: str) -> str:
    try:
        doc = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no JSON report in the output ({exc})") from exc
    problems = []
    if doc["cells"] != GLOBAL_CELLS or doc["rows"] != GLOBAL_CELLS * MONTHS:
        problems.append(f"panel of {doc['cells']:,} cells / {doc['rows']:,} rows, expected "
                        f"{GLOBAL_CELLS:,} x {MONTHS}")
    for name in MODELS:
        got = doc["models"][name]
        if got["forecast_rows"] != GLOBAL_CELLS * STEPS or got["steps"] != list(
                range(1, STEPS + 1)):
            problems.append(f"{name}: {got['forecast_rows']:,} forecast rows, expected one per "
                            f"cell and step 1..{STEPS}")
        if not got["finite_nonneg"] or not got["units_sorted"]:
            problems.append(f"{name}: forecasts not all finite and >= 0, or not one per cell "
                            "in gid order")
    mesh = doc["models"]["copper_mesh"]
    if not mesh["mean_active"] > 5 * mesh["mean_quiet"]:
        problems.append(f"copper_mesh forecasts {mesh['mean_active']:.3g} on average for cells "
                        f"with conflict in the last 12 months, {mesh['mean_quiet']:.3g} for "
                        "quiet ones: expected at least 5 times more")
    got_mean, want_mean = doc["models"]["grid_mean"]["point"], doc["expected_grid_mean"]
    worst = max(abs(a - b) / (1.0 + b) for a, b in zip(got_mean, want_mean, strict=True))
    if worst > 1e-9:
        problems.append(f"grid_mean differs from expm1(mean(log1p(last 12 months))) by up to "
                        f"{worst:.3g} (relative)")
    if problems:
        raise VerificationError("; ".join(problems))
    parts = []
    for name in MODELS:
        got = doc["models"][name]
        parts.append(
            f"{name}: design {got['design_rows']:,} rows x {got['features']} features "
            f"{got['design_s']:.1f} s (peak so far {got['design_hwm_mib']:,.0f} MiB), fit "
            f"{got['fit_s']:.1f} s (peak {got['fit_hwm_mib']:,.0f} MiB), forecast "
            f"{got['predict_s']:.1f} s")
    return (
        f"{doc['cells']:,} cells x {MONTHS} months ({doc['rows']:,} rows, "
        f"{doc['nonzero']:.1%} of the last year's cell-months non-zero); every model one "
        f"finite forecast >= 0 per cell and step; grid_mean = expm1(mean(log1p(last 12))) "
        f"exactly; copper_mesh {mesh['mean_active'] / max(mesh['mean_quiet'], 1e-12):.0f}x "
        f"higher where conflict was recent. Last run: panel {doc['panel_s']:.1f} s; "
        + "; ".join(parts)
    )


def _cases() -> list[Case]:
    table = shared_dir() / PRIOGRID_FILE
    if not table.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{PRIOGRID_FILE} ({table})")

    def argv(run_dir: Path) -> list[str]:
        return [sys.executable, "-I", "-c", _CHILD, str(REPO / "src"), str(table),
                str(REPO / "models"), str(MONTHS)]

    return [
        Case(
            label="global pgm, copper_mesh + grid_mean",
            display=f"python -c <benchmarks/bench_global_models.py:_CHILD> src "
            f"<SHARED>/{PRIOGRID_FILE} models {MONTHS}",
            argv=argv,
            verify=_verify,
            target=TARGET,
            timeout_s=TIMEOUT_S,
            note="synthetic global panel built in the child (no import); copper_mesh then "
            "grid_mean: model_design, fit up to the last month, forecast steps 1..36.",
        )
    ]


BENCHMARKS = [
    Benchmark(
        name="global_models",
        title="fit and forecast the shipped pgm models on the global PRIO-GRID",
        description=(
            "copper_mesh (LightGBM stepshifter, 17 features) and grid_mean fitted up to the "
            "last month and forecasting 36 steps on a synthetic panel of all 66,205 cells of "
            "the global PRIO-GRID table x 443 months (~29 M rows), in one fresh interpreter, "
            "through `flows.modelrun.model_design`, `fit` and `predict_origins`. Target from "
            "issue 21: within the monthly run's budget of 8 GiB (8,192 MiB) peak and 30 "
            "minutes on the 2-core reference machine. `<SHARED>` is `$EWSPIPE_SHARED_DIR` or "
            "`../shared`."
        ),
        cases=_cases,
    )
]
