"""Candidate cm models of issue 20 on the backtest windows, beside the shipped ones they vary.

Each file of ``benchmarks/candidates/`` changes one thing of ``amber_ridge`` or
``amber_tree`` (longer memory, the neighbouring countries, burst-weighted means, calmer trees,
monotone trees, the other violence types). They are not shipped: none improved on what it varies
across the four backtest windows where the catalog is chosen by enough to matter, and the
violence-type pair cannot be: its data end in August 2020. This benchmark keeps that claim
re-measurable: the child (``python -m benchmarks.bench_candidates run``) scores every candidate
and both shipped models with ``ewspipe.backtest(..., "backtest")`` and prints one JSON document.
Validation is not read. No target: a context measurement.

``benchmarks/candidates/ensembles/`` holds candidate sample ensembles (``misty_chorus``:
cloudy_chorus plus the 12-month Conflictology draws, through the shadow copy ``past_cloud``).
They are scored on the same windows for CRPS and interval coverage beside ``cloudy_chorus`` and
``past_draws``, in a temporary workspace that holds the shipped catalog and the candidates.

The panel is the fatalities002 state-based series (``ged_sb``, the target) with the non-state
(``ged_ns``) and one-sided (``ged_os``) deaths of the views2020 table beside it. views2020 is
the only real table with the violence types; it ends in August 2020 (month 488), and it holds no
Syria deaths before 2019 (its README: missing, not peace). Months it lacks count as zero. That
is only sound while no backtest origin reads past month 488, which the child checks: every
feature reads the origin month or earlier, and the last backtest origin is month 456.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
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

CANDIDATES = REPO / "benchmarks" / "candidates"
CANDIDATE_ENSEMBLES = CANDIDATES / "ensembles"
SHIPPED = ("amber_ridge", "amber_tree", "log_mean")
#: the shipped sample ensemble and the Conflictology baseline the candidate ensembles face
SAMPLE_REFERENCES = ("cloudy_chorus", "past_draws")
SAMPLE_METRICS = ("crps", "coverage_90", "pit_coverage_90", "pit_coverage_50")
VIOLENCE_FILE = "data/views_ged_cm/views2020_ged_cm.parquet"
OTHER_TYPES = ("ged_ns", "ged_os")


def _panel_with_violence_types(settings: Any) -> Any:
    """fatalities002 ``ged_sb`` with views2020's ``ged_ns``/``ged_os`` joined on (month,
    country); refuses if a backtest origin lies past the last views2020 month."""
    import pandas as pd

    import ewspipe

    sb = pd.read_parquet(shared_dir() / CM_FILE, columns=["month_id", "country_id", "ged_sb"])
    other = pd.read_parquet(shared_dir() / VIOLENCE_FILE,
                            columns=["month_id", "country_id", *OTHER_TYPES])
    last = int(other["month_id"].max())
    origins = [seq.origin for part in settings.partition_scheme().backtest()
               for seq in part.rolling_origins()]
    if max(origins) > last:
        raise VerificationError(f"a backtest origin (month {max(origins)}) lies past the last "
                                f"month of {VIOLENCE_FILE} ({last}): its ged_ns/ged_os would "
                                "read months that table does not have")
    frame = sb.merge(other, on=["month_id", "country_id"], how="left")
    frame[list(OTHER_TYPES)] = frame[list(OTHER_TYPES)].fillna(0).astype("int64")
    return ewspipe.load_panel(frame, "cm")


def _sample_scores(settings: Any, panel: Any) -> dict[str, Any]:
    """CRPS and interval coverage of every candidate sample ensemble and of what it is
    measured against, on the backtest windows. The ensembles' members come from the shipped
    catalog and the candidate models, so they run in a temporary workspace holding both."""
    import ewspipe

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "ewspipe.toml", root / "ewspipe.toml")
        shutil.copytree(REPO / "models", root / "models")
        shutil.copytree(REPO / "ensembles", root / "ensembles")
        for path in CANDIDATES.glob("*.toml"):
            shutil.copy(path, root / "models" / path.name)
        for path in CANDIDATE_ENSEMBLES.glob("*.toml"):
            shutil.copy(path, root / "ensembles" / path.name)
        local = ewspipe.load_settings(root / "ewspipe.toml")
        names = [*SAMPLE_REFERENCES, *(p.stem for p in sorted(CANDIDATE_ENSEMBLES.glob("*.toml")))]
        doc: dict[str, Any] = {}
        for name in names:
            result = ewspipe.backtest(name, panel, "backtest", settings=local)
            doc[name] = {w: {k: ev.metrics[k] for k in SAMPLE_METRICS}
                         for w, ev in result.windows.items()}
    return doc


def _child() -> dict[str, Any]:
    import ewspipe

    settings = ewspipe.load_settings(REPO / "ewspipe.toml")
    panel = _panel_with_violence_types(settings)
    models: list[str] = [*SHIPPED, *(str(p) for p in sorted(CANDIDATES.glob("*.toml")))]
    msle: dict[str, Any] = {}
    for model in models:
        result = ewspipe.backtest(model, panel, "backtest", settings=settings)
        msle[result.model] = {w: ev.msle for w, ev in result.windows.items()}
    return {"msle": msle, "samples": _sample_scores(settings, panel)}


def _verify(stdout: str) -> str:
    doc = child_document(stdout)
    msle: dict[str, dict[str, float]] = doc["msle"]
    expected = {*SHIPPED, *(p.stem for p in CANDIDATES.glob("*.toml"))}
    if set(msle) != expected:
        raise VerificationError(f"scored {sorted(msle)}, expected {sorted(expected)}")
    windows = list(msle[SHIPPED[0]])
    lines = [f"| model | {' | '.join(windows)} | mean |", "|---|" + "---:|" * (len(windows) + 1)]
    for name, scores in sorted(msle.items(), key=lambda kv: sum(kv[1].values())):
        mean = sum(scores.values()) / len(scores)
        lines.append(f"| {name} | {' | '.join(f'{scores[w]:.4f}' for w in windows)} | "
                     f"{mean:.4f} |")
    samples: dict[str, dict[str, dict[str, float]]] = doc["samples"]
    wanted = {*SAMPLE_REFERENCES, *(p.stem for p in CANDIDATE_ENSEMBLES.glob("*.toml"))}
    if set(samples) != wanted:
        raise VerificationError(f"sample scores for {sorted(samples)}, expected {sorted(wanted)}")
    lines += ["", "Sample forecasts on the same windows: CRPS, then plain / randomised-PIT "
              "coverage of the central 90 % interval (the issue asks 85-95 %), then PIT "
              "coverage of the 50 % interval.", "",
              f"| model | {' | '.join(windows)} |", "|---|" + "---|" * len(windows)]
    for name in [*SAMPLE_REFERENCES, *sorted(wanted - set(SAMPLE_REFERENCES))]:
        cells = [f"{m['crps']:.2f}; {m['coverage_90']:.3f} / {m['pit_coverage_90']:.3f}; "
                 f"{m['pit_coverage_50']:.3f}" for m in (samples[name][w] for w in windows)]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _argv(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_candidates", "run"]


def _cases() -> list[Case]:
    return [Case(
        label="issue-20 candidates and the shipped models, four backtest windows",
        argv=_argv, verify=_verify, timeout_s=1800.0,
        display="PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_candidates run",
    )]


BENCHMARKS = [
    Benchmark(
        name="candidates",
        title="cm models tried for issue 20 and not shipped, on the backtest windows",
        description=(
            "Real cm data, pooled MSLE on raw counts on the four [partitions.backtest] windows "
            "(2005-2008 .. 2017-2020): every model file in benchmarks/candidates/ beside "
            "amber_ridge, amber_tree and log_mean; then CRPS and coverage of the sample "
            "ensembles in benchmarks/candidates/ensembles/ beside cloudy_chorus and past_draws. "
            "The panel adds views2020's ged_ns/ged_os (to August 2020) for the violence-type "
            "candidates. No target: the record of what was tried."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m benchmarks.bench_candidates run", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child()))
