"""Candidate cm models of issue 20 on the backtest windows, beside the shipped ones they vary.

Each file of ``benchmarks/candidates/`` changes one thing of ``amber_ridge`` or
``amber_tree`` (longer memory, the neighbouring countries, burst-weighted means, calmer trees,
monotone trees). They are not shipped: none improved on what it varies across the four backtest
windows where the catalog is chosen. This benchmark keeps that claim re-measurable: the child
(``python -m benchmarks.bench_candidates run``) scores every candidate and both shipped models
with ``ewspipe.backtest(..., "backtest")`` and prints one JSON document. Validation is not
read. No target: a context measurement.
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


def _child() -> dict[str, Any]:
    import ewspipe

    settings = ewspipe.load_settings(REPO / "ewspipe.toml")
    panel = ewspipe.load_panel(shared_dir() / CM_FILE, "cm")
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
            "amber_ridge, amber_tree and log_mean. No target: the record of what was tried."
        ),
        cases=_cases,
    )
]

if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m benchmarks.bench_candidates run", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(_child()))
