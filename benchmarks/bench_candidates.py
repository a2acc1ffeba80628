"""Candidate cm models of issue 20 on the backtest windows, beside the shipped ones they vary.

Each file of ``benchmarks/candidates/`` changes one thing of ``amber_ridge`` or
``amber_tree`` (longer memory, the neighbouring countries, burst-weighted means, calmer trees,
monotone trees, the other violence types). They are not shipped: none improved on what it varies
across the four backtest windows where the catalog is chosen by enough to matter, and the
violence-type pair cannot be: its data end in August 2020. This benchmark keeps that claim
re-measurable: the child (``python -m benchmarks.bench_candidates run``) scores every candidate
and both shipped models with ``ewspipe.backtest(..., "backtest")`` and prints one JSON document.
Validation is not read. No target: a context measurement.

The panel is the fatalities002 state-based series (``ged_sb``, the target) with the non-state
(``ged_ns``) and one-sided (``ged_os``) deaths of the views2020 table beside it. views2020 is
the only real table with the violence types; it ends in August 2020 (month 488), and it holds no
Syria deaths before 2019 (its README: missing, not peace). Months it lacks count as zero. That
is only sound while no backtest origin reads past month 488, which the child checks: every
feature reads the origin month or earlier, and the last backtest origin is month 456.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import CM_FILE, REPO, Benchmark, Case, VerificationError, shared_dir

__all__ = ["BENCHMARKS"]

CANDIDATES = REPO / "benchmarks" / "candidates"
SHIPPED = ("amber_ridge", "amber_tree", "log_mean")
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


def _child() -> dict[str, Any]:
    import ewspipe

    settings = ewspipe.load_settings(REPO / "ewspipe.toml")
    panel = _panel_with_violence_types(settings)
    models: list[str] = [*SHIPPED, *(str(p) for p in sorted(CANDIDATES.glob("*.toml")))]
    doc: dict[str, Any] = {}
    for model in models:
        result = ewspipe.backtest(model, panel, "backtest", settings=settings)
        doc[result.model] = {w: ev.msle for w, ev in result.windows.items()}
    return doc


def _verify(stdout: str) -> str:
    try:
        doc: dict[str, dict[str, float]] = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise VerificationError(f"the child printed no JSON document: {exc}") from exc
    expected = {*SHIPPED, *(p.stem for p in CANDIDATES.glob("*.toml"))}
    if set(doc) != expected:
        raise VerificationError(f"scored {sorted(doc)}, expected {sorted(expected)}")
    windows = list(doc[SHIPPED[0]])
    lines = [f"| model | {' | '.join(windows)} | mean |", "|---|" + "---:|" * (len(windows) + 1)]
    for name, scores in sorted(doc.items(), key=lambda kv: sum(kv[1].values())):
        mean = sum(scores.values()) / len(scores)
        lines.append(f"| {name} | {' | '.join(f'{scores[w]:.4f}' for w in windows)} | "
                     f"{mean:.4f} |")
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
            "amber_ridge, amber_tree and log_mean. The panel adds views2020's ged_ns/ged_os "
            "(to August 2020) for the violence-type candidates. No target: the record of what "
            "was tried."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m benchmarks.bench_candidates run", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child()))
