"""How much of the cm error can conflict history explain at all: the deployed ridge fitted in
hindsight, beside the same model out of sample.

The accuracy targets of issue 20 ask the deployed cm ensemble for <= 0.340 (calibration) and
<= 0.715 (validation) pooled MSLE. This benchmark measures how far the shipped information set
(each country's own conflict history) can go. For calibration and validation it scores:

* ``amber_ridge`` as shipped: fitted on the months before the test window (out of sample);
* ``amber_ridge`` in hindsight: the same specification fitted on every month up to the end of
  the test window (or of the data), so its training pairs include the outcomes it is scored
  on. No forecaster can do this; it is the best linear predictor of these features with the
  answers known, a floor that an out-of-sample linear model cannot beat by much;
* ``amber_ridge`` fitted on the test window alone (every origin's pairs, alpha 1): the same
  features weighted as well as possible for this window's own outcomes, a stricter floor;
* ``log_mean`` (LogAverage(12)) for scale.

No target: a context measurement. The child (``python -m benchmarks.bench_headroom run``)
works in memory through the library (``ewspipe.flows.modelrun.fit_predict``, the path of
``ewspipe.backtest``) and prints one JSON document.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CM_FILE,
    REPO,
    Benchmark,
    Case,
    VerificationError,
    child_document,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

MODEL, BASELINE = "amber_ridge", "log_mean"
RUN_TYPES = ("calibration", "validation")


def _window_only(spec: Any, panel: Any, part: Any) -> float:
    """Pooled MSLE of ``spec``'s features fitted, one ridge per step (alpha 1), on the test
    window's own (origin, target) pairs and scored on them: the hindsight weighting of these
    features for this window."""
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ewspipe.features.build import build_design

    design = build_design(panel, spec.target, list(spec.features))
    X = np.asarray(design.X[:, :], dtype=np.float64)
    squared = 0.0
    count = 0
    for step in range(1, part.steps + 1):
        src, dst = [], []
        for seq in part.rolling_origins():
            at = design.month_rows(seq.origin)
            units = design.units[at]
            pos, found = design.find_rows(np.full(len(units), seq.origin + step), units)
            src.append(np.arange(at.start, at.stop)[found])
            dst.append(pos[found])
        rows, targets = np.concatenate(src), np.concatenate(dst)
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                              Ridge(alpha=1.0))
        z = np.log1p(design.y[targets])
        model.fit(X[rows], z)
        squared += float(np.sum((np.maximum(model.predict(X[rows]), 0.0) - z) ** 2))
        count += len(z)
    return squared / count


def _child() -> dict[str, Any]:
    import ewspipe
    from ewspipe.flows.modelrun import fit_predict
    from ewspipe.library import _memory_manifest, _plan, _score
    from ewspipe.partitions import RunType, Window

    settings = ewspipe.load_settings(REPO / "ewspipe.toml")
    panel = ewspipe.load_panel(shared_dir() / CM_FILE, "cm")
    spec = _plan(MODEL, settings).models[0]
    manifest = _memory_manifest(panel)
    scheme = settings.partition_scheme()
    doc: dict[str, Any] = {}
    for name in RUN_TYPES:
        part = scheme.partition(RunType(name))
        last = min(part.test.last, panel.last_month)
        hindsight = dataclasses.replace(part, train=Window(part.train.first, last))
        # Out of sample is what ``ewspipe.backtest`` does; hindsight needs a training window
        # no configured partition may have (reaching into its test months).
        doc[name] = {
            "out_of_sample": ewspipe.backtest(MODEL, panel, name, settings=settings).msle,
            "hindsight": _score(fit_predict(spec, panel, manifest, hindsight), panel,
                                spec.target).pooled["msle"],
            "window_only": _window_only(spec, panel, part),
            BASELINE: ewspipe.backtest(BASELINE, panel, name, settings=settings).msle,
            "train_last": part.train.last, "hindsight_train_last": last,
        }
    return doc


def _verify(stdout: str) -> str:
    doc = child_document(stdout)
    lines = ["| partition | amber_ridge out of sample | in hindsight (trained through the "
             "window) | fitted on the window alone | log_mean |", "|---|---:|---:|---:|---:|"]
    for name in RUN_TYPES:
        row = doc[name]
        if not row["hindsight"] <= row["out_of_sample"] + 0.01:
            raise VerificationError(f"{name}: hindsight {row['hindsight']:.4f} is worse than "
                                    f"out of sample {row['out_of_sample']:.4f}")
        lines.append(f"| {name} | {row['out_of_sample']:.4f} | {row['hindsight']:.4f} | "
                     f"{row['window_only']:.4f} | {row[BASELINE]:.4f} |")
    return "\n".join(lines)


def _argv(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_headroom", "run"]


def _cases() -> list[Case]:
    return [Case(
        label=f"{MODEL} out of sample and in hindsight, calibration and validation",
        argv=_argv, verify=_verify,
        display="PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_headroom run",
    )]


BENCHMARKS = [
    Benchmark(
        name="headroom",
        title="how far conflict history goes: the deployed ridge in hindsight",
        description=(
            "Real cm data, pooled MSLE on raw counts: amber_ridge out of sample, trained "
            "through the test window (its outcomes in the training pairs), and fitted on the "
            "test window alone, for calibration and validation; log_mean for scale. No target: "
            "the floor the issue-20 targets (0.340 / 0.715) are measured against."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m benchmarks.bench_headroom run", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child()))
