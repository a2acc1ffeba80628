"""The staging validation cycle (`ewspipe release stage`) on the shipped cm configuration.

Target from the issue (2-core reference machine): `ewspipe release stage` on the shipped cm
configuration with the real cm data completes in <= 5 min.

Set-up (not timed, rebuilt in each run's fresh directory): a git repository holding the
repository's cm models and ensembles and ``ewspipe.toml``, committed on ``production``, with
``development`` one commit ahead (a shadow model's ridge penalty changed); the real cm data
imported into a state folder outside the repository; production has never run there, so
staging uses the latest snapshot (the drift gate says so with a WARN). Timed: one cold
`ewspipe release stage --json` (no earlier staging to reuse): the candidate's monthly run, its
repeat from the stored artifacts, both sides' calibration evaluations and production's monthly
run, every gate, the report. The repository has no tests/, so the tests gate is a SKIP.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CM_FILE,
    REPO,
    Benchmark,
    Case,
    SetupError,
    Target,
    VerificationError,
    ewspipe_command,
    shared_dir,
)

__all__ = ["BENCHMARKS", "cm_repository"]

TARGET_S = 300.0
CHANGED = "models/ridge_cloud.toml"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _level(path: Path) -> str:
    match = re.search(r'^level\s*=\s*"(\w+)"', path.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else ""


def cm_repository(dest: Path, branch: str, settings_text: str | None = None) -> Path:
    """A git repository at ``dest`` holding the repository's cm models and ensembles and
    ``ewspipe.toml`` (or ``settings_text``), committed on ``branch``."""
    dest.mkdir(parents=True)
    for kind in ("models", "ensembles"):
        (dest / kind).mkdir()
        for path in sorted((REPO / kind).glob("*.toml")):
            if _level(path) == "cm":
                (dest / kind / path.name).write_text(path.read_text(encoding="utf-8"))
    (dest / "ewspipe.toml").write_text(
        settings_text or (REPO / "ewspipe.toml").read_text(encoding="utf-8"))
    _git(dest, "init", "-q", "-b", branch)
    for key, value in (("user.email", "bench@example.org"), ("user.name", "bench"),
                       ("commit.gpgsign", "false")):
        _git(dest, "config", key, value)
    _git(dest, "add", ".")
    _git(dest, "commit", "-q", "-m", "feat: the shipped cm models")
    return dest


def _repository(dest: Path) -> Path:
    """The product repository: cm models/ensembles and ewspipe.toml, production and
    development (one commit ahead)."""
    cm_repository(dest, "production")
    _git(dest, "checkout", "-q", "-b", "development")
    changed = dest / CHANGED
    text, n = re.subn(r"^alpha = 1\.0$", "alpha = 2.0", changed.read_text(), flags=re.M)
    if n != 1:
        raise SetupError(f"{CHANGED}: no `alpha = 1.0` line to change; update "
                         "benchmarks/bench_release.py")
    changed.write_text(text)
    _git(dest, "commit", "-q", "-am", "feat: stronger ridge penalty for ridge_cloud")
    _git(dest, "checkout", "-q", "production")
    return dest


def _argv(run_dir: Path) -> list[str]:
    repo = _repository(run_dir / "repo")
    data = shared_dir() / CM_FILE
    if not data.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{CM_FILE} ({data})")
    base = [*ewspipe_command(), "--config", str(repo / "ewspipe.toml"), "--state-dir",
            str(run_dir / "state")]
    subprocess.run([*base, "data", "import", "panel", str(data), "--level", "cm", "--json"],
                   check=True, capture_output=True)
    return [*base, "release", "stage", "--repo", str(repo), "--json"]


def _verify(stdout: str) -> str:
    try:
        doc: dict[str, Any] = json.loads(stdout)
        gates = {g["gate"]: g for g in doc["gates"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"no staging report in the output ({exc})") from exc
    problems = []
    if not doc.get("passed"):
        problems.append(f"staging did not pass: failed {doc.get('failed_gates')}")
    for name in ("sync", "integrity", "inference", "performance"):
        if gates.get(name, {}).get("status") not in ("PASS", "WARN"):
            problems.append(f"gate {name}: {gates.get(name)}")
    if gates.get("tests", {}).get("status") != "SKIP":
        problems.append(f"gate tests: {gates.get('tests')} (the repository has no tests/)")
    items = (gates.get("inference", {}).get("evidence") or {}).get("items") or {}
    if "steady_chorus" not in items or "ridge_cloud" not in items:
        problems.append(f"inference checked {sorted(items)}; steady_chorus and ridge_cloud "
                        "expected")
    diff = (gates.get("forecast_diff", {}).get("evidence") or {}).get("models") or {}
    if not diff.get("ridge_cloud") or not diff["ridge_cloud"].get("total_change"):
        problems.append("forecast diff: the changed model ridge_cloud shows no change")
    if problems:
        raise VerificationError("; ".join(problems))
    statuses = ", ".join(f"{g} {v['status']}" for g, v in gates.items())
    perf = gates["performance"]["summary"]
    return (f"staging passed ({statuses}); {len(items)} forecasts checked; performance: "
            f"{perf}; ridge_cloud total moved {diff['ridge_cloud']['total_change']:+.3%}")


def _cases() -> list[Case]:
    shared_dir()  # fail early, naming the folder, when the data is absent
    return [Case(
        label="release stage, shipped cm configuration",
        display=("ewspipe --config <repo>/ewspipe.toml --state-dir <fresh tmp dir> release "
                 "stage --repo <repo> --json"),
        argv=_argv,
        verify=_verify,
        target=Target(wall_s=TARGET_S),
        note=("real cm data; production = the shipped cm models and ensembles, development "
              "one commit ahead (ridge_cloud alpha 1.0 -> 2.0); cold: no earlier staging, "
              "production never ran (latest snapshot, a WARN)"),
    )]


BENCHMARKS = [
    Benchmark(
        name="release",
        title="staging: `ewspipe release stage` on the shipped cm configuration",
        description=(
            "One cold `ewspipe release stage` in a fresh state directory on a git repository "
            "built from the repository's cm models, ensembles and ewspipe.toml (production, "
            "plus development one commit ahead), with the real cm data. Target from the "
            f"issue, 2-core reference machine: <= {TARGET_S / 60:g} min. Repository set-up and "
            "data import are not timed."
        ),
        cases=_cases,
    ),
]
