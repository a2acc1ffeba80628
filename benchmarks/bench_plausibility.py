"""Plausibility: the learners' target cap and the QA ceiling on real cm data, accuracy before
and after (issue 16, item 10).

Before the cap, the deployed ridge amber_ridge predicted 21.9 million deaths for Ethiopia on
the validation partition and the deployed ensemble steady_chorus carried it at 11.0 million.
Each case evaluates every shipped cm model and ensemble on one partition and checks that no
forecast is above the QA plausibility ceiling ([qa] max_forecast_factor x the largest count
observed); the tables are this revision's accuracy, the note the before/after comparison.
Accuracy context only: no time target (the engine benchmark times the evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from benchmarks.bench_engine import _crps, _models, _msle, _script
from benchmarks.harness import CM_FILE, Benchmark, Case, VerificationError

__all__ = ["BENCHMARKS"]

BEFORE_AFTER = (
    "Before (revision 1d4ad7a, no cap) amber_ridge predicted 21,932,958 deaths for Ethiopia "
    "(country_id 57) from origin 504 at step 12 (month 516, actual 4; the largest month it "
    "was trained on had 48,183), and steady_chorus carried it at 10,966,982: above the QA "
    "ceiling of 1,244,270, with no alert. After (the cap: at most 2 x (1 + the largest "
    "training target), docs/models.md), 96,367 and 49,204. Pooled MSLE before -> after, "
    "calibration (where choices are made): amber_ridge 0.3610 -> 0.3610, steady_chorus "
    "0.3532 -> 0.3532 (no calibration forecast reaches the cap); validation (read once, to "
    "confirm): amber_ridge 0.7179 -> 0.7159, steady_chorus 0.7404 -> 0.7385 (MSE of "
    "amber_ridge 5.58e9 -> 4.76e6). The tree learners amber_tree and twin_gate give "
    "identical forecasts, point for point, on both partitions; the sampled models lose only "
    "the far tail of their residual draws (CRPS, calibration: ridge_cloud 14.850 -> 14.801, "
    "amber_cloud 17.226 -> 16.991, cloudy_chorus 14.414 -> 14.338; their points identical). "
    "The before/after pairs come from, at each revision and in a fresh state directory: "
    "`ewspipe --state-dir <tmp> data import panel <SHARED>/data/views_ged_cm/"
    "views_fat002_ged_sb_cm.parquet --level cm && ewspipe --state-dir <tmp> evaluate "
    "--run-type RUN_TYPE --model steady_chorus --model quiet_chorus --model ridge_cloud "
    "--json` (RUN_TYPE calibration, validation; for the sampled models `--model "
    "cloudy_chorus` on calibration, `--model amber_cloud` on validation), compared forecast "
    "file by forecast file; the tables below are this revision's runs."
)


def _verify(run_type: str) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        try:
            doc = json.loads(stdout)
        except ValueError as exc:
            raise VerificationError(f"no run record in the output ({exc})") from exc
        wild = doc.get("implausible")
        if wild is None or wild:
            raise VerificationError(f"implausible forecasts on {run_type}: {wild}")
        models = _models(stdout)
        msle, crps = _msle(models), _crps(models)
        ceiling = (doc.get("plausibility") or {}).get("ceilings", {}).get("cm/ged_sb")
        rows = [f"| {name} | {models[name]['status']} | {value:.4f} | "
                f"{f'{crps[name]:.3f}' if name in crps else ''} |"
                for name, value in sorted(msle.items(), key=lambda kv: kv[1])]
        return "\n".join([
            f"no forecast above the plausibility ceiling ({ceiling:,.0f} deaths).", "",
            f"| model ({run_type}, real cm data) | status | pooled MSLE | pooled CRPS |",
            "|---|---|---:|---:|", *rows,
        ])

    return verify


def _cases() -> list[Case]:
    prefix = "ewspipe --config ewspipe.toml --state-dir <fresh tmp dir>"
    cases = []
    for run_type in ("calibration", "validation"):
        command = ["evaluate", "--run-type", run_type, "--level", "cm"]
        cases.append(Case(
            label=f"cm {run_type}, every shipped cm model and ensemble",
            display=(f"{prefix} data import panel <SHARED>/{CM_FILE} --level cm && {prefix} "
                     f"evaluate --run-type {run_type} --level cm --json"),
            argv=lambda run_dir, command=command: _script(run_dir, "cm", CM_FILE, command),
            verify=_verify(run_type), target=None,
            note=BEFORE_AFTER if run_type == "validation" else
            "calibration: where model choices are made.",
        ))
    return cases


BENCHMARKS = [
    Benchmark(
        name="plausibility",
        title="accuracy with the learners' target cap: no forecast above the QA ceiling",
        description=(
            "Every shipped cm model and ensemble evaluated on real cm data (calibration, then "
            "validation read once to confirm), end to end in a fresh state directory; checked: "
            "no forecast above the QA plausibility ceiling ([qa] max_forecast_factor x the "
            "largest count observed). Before the cap the deployed ridge amber_ridge predicted "
            "21.9 million deaths for Ethiopia on validation (actual 4); the validation case's "
            "note gives the accuracy before and after. Accuracy context only: no time target "
            "(the engine benchmark times evaluations)."
        ),
        cases=_cases,
    )
]
