"""The production guarantee's cost: a production run of a promoted release on the real cm
data, and how fast a production run that must not run is refused.

Targets (2-core reference machine): a production run that is not exactly the release (an
untracked model file beside the released ones) is refused in <= 5 s, before any training;
the release verification a production run makes before it starts (git state, the ledger,
catalog, settings and engine against the release manifest) costs <= 0.5 s.

Set-up (not timed, in each run's fresh directory): a git repository holding the
repository's cm models and ensembles and ``ewspipe.toml`` (``[qa] expected_last_month`` set
to the data's last month, so the freshness guard passes on old data), committed on
``development`` and promoted to ``production`` as v0.1.0 with a recorded all-PASS staging
report (staging itself is timed by the ``release`` benchmark), the real cm data imported.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.bench_release import cm_repository
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

__all__ = ["BENCHMARKS"]

REFUSE_S = 5.0
VERIFY_S = 0.5
GATES = ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff")
ROGUE = """name = "rogue_mean"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "deployed"
owner = "bench"
description = "Not released."
features = []
"""


def _released(run_dir: Path) -> tuple[Path, Path]:
    """The released repository and its state folder (real cm data imported)."""
    from ewspipe.release.context import ReleaseContext
    from ewspipe.release.promote import promote
    from ewspipe.settings import load_settings

    data = shared_dir() / CM_FILE
    if not data.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{CM_FILE} ({data})")
    repo, state = run_dir / "repo", run_dir / "state"
    import pandas as pd

    last = int(pd.read_parquet(data, columns=["month_id"])["month_id"].max())
    settings_text, n = re.subn(r"^# expected_last_month = \d+$",
                               f"expected_last_month = {last}",
                               (REPO / "ewspipe.toml").read_text(encoding="utf-8"), flags=re.M)
    if n != 1:
        raise SetupError("ewspipe.toml: no `# expected_last_month = N` line to set; update "
                         "benchmarks/bench_production.py")
    cm_repository(repo, "development", settings_text)
    subprocess.run([*ewspipe_command(), "--config", str(repo / "ewspipe.toml"), "--state-dir",
                    str(state), "data", "import", "panel", str(data), "--level", "cm",
                    "--json"], check=True, capture_output=True)
    ctx = ReleaseContext.open(load_settings(repo / "ewspipe.toml", state_dir=state))
    commit = ctx.git.resolve("development")
    ctx.ledger.record_staging({
        "candidate_commit": commit, "candidate_ref": "development", "production_commit": None,
        "snapshots": {}, "passed": True, "failed_gates": [],
        "gates": [{"gate": g, "status": "PASS", "summary": "benchmark set-up",
                   "evidence": {}} for g in GATES],
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
        "json_path": "report.json", "html_path": "report.html"})
    promote(ctx)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "production"], check=True,
                   capture_output=True)
    return repo, state


def _run_argv(run_dir: Path) -> list[str]:
    repo, state = _released(run_dir)
    return [*ewspipe_command(), "--config", str(repo / "ewspipe.toml"), "--state-dir",
            str(state), "run", "--env", "production", "--quiet", "--json"]


def _verify_run(stdout: str) -> str:
    try:
        doc: dict[str, Any] = json.loads(stdout)
    except ValueError as exc:
        raise VerificationError(f"no run summary in the output ({exc})") from exc
    published = (doc.get("outputs") or {}).get("published") or []
    if doc.get("status") != "ok" or not published:
        raise VerificationError(f"the production run did not publish: {doc.get('status')}, "
                                f"{(doc.get('outputs') or {}).get('not_published_reasons')}")
    release = doc.get("release") or {}
    if release.get("tag") != "v0.1.0":
        raise VerificationError(f"run not made under the release: {release}")
    return (f"published {', '.join(p['level'] + '/' + p['target'] for p in published)} "
            f"({published[0]['primary']}) under {release['tag']}; "
            f"{len(doc.get('ran') or [])} tasks ran")


_REFUSE = """
import json, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"exit": done.returncode, "doc": json.loads(done.stdout)}))
"""


def _refuse_argv(run_dir: Path) -> list[str]:
    repo, state = _released(run_dir)
    (repo / "models" / "rogue_mean.toml").write_text(ROGUE)
    return [sys.executable, "-c", _REFUSE, *ewspipe_command(), "--config",
            str(repo / "ewspipe.toml"), "--state-dir", str(state), "run", "--env",
            "production", "--quiet", "--json"]


def _verify_refusal(stdout: str) -> str:
    try:
        got = json.loads(stdout)
    except ValueError as exc:
        raise VerificationError(f"no refusal in the output ({exc})") from exc
    error = str(got["doc"].get("error"))
    if got["exit"] != 1 or "rogue_mean.toml" not in error:
        raise VerificationError(f"expected exit 1 naming models/rogue_mean.toml, got exit "
                                f"{got['exit']}: {error[:300]}")
    return f"exit 1: {error[:90]}..."


_VERIFY = """
import json, sys, time
from pathlib import Path
from ewspipe.settings import load_settings
from ewspipe.catalog import load_catalog
from ewspipe.flows.release_guard import check_release, verify_workspace
settings = load_settings(Path(sys.argv[1]), state_dir=Path(sys.argv[2]))
times = []
for _ in range(5):
    t0 = time.perf_counter()
    release = check_release(settings)
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    verified = verify_workspace(settings, release, catalog)
    times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": sorted(times)[len(times) // 2], "tag": verified["tag"]}))
"""


def _verify_argv(run_dir: Path) -> list[str]:
    repo, state = _released(run_dir)
    return [sys.executable, "-c", _VERIFY, str(repo / "ewspipe.toml"), str(state)]


def _verify_check(stdout: str) -> str:
    got = json.loads(stdout)
    if got.get("tag") != "v0.1.0":
        raise VerificationError(f"verified against {got.get('tag')}, not v0.1.0")
    return f"check_release + verify_workspace: {got['seconds']:.3f} s (median of 5)"


def _cases() -> list[Case]:
    shared_dir()  # fail early, naming the folder, when the data is absent
    cmd = ("ewspipe --config <repo>/ewspipe.toml --state-dir <fresh tmp dir> run --env "
           "production --quiet --json")
    return [
        Case(label="production run of a promoted release (real cm data, publishes)",
             display=cmd, argv=_run_argv, verify=_verify_run,
             note="context: the shipped cm models and ensembles, every task runs cold"),
        Case(label="refused production run: an untracked model file",
             display=cmd + "   # with models/rogue_mean.toml untracked",
             argv=_refuse_argv, verify=_verify_refusal, target=Target(wall_s=REFUSE_S),
             note="exit 1 naming the file, before any task runs"),
        Case(label="release verification before a production run (in-process, median of 5)",
             display="python -c '... check_release(settings); verify_workspace(...)'",
             argv=_verify_argv, verify=_verify_check,
             met=lambda out: float(json.loads(out)["seconds"]) <= VERIFY_S,
             note=f"target: <= {VERIFY_S:g} s, measured inside the child"),
    ]


BENCHMARKS = [
    Benchmark(
        name="production",
        title="the production guarantee: a release's production run, a refusal, the check",
        description=(
            "A production run of a promoted release on the real cm data (context), a "
            "production run refused because an untracked model file sits beside the "
            f"released ones (target <= {REFUSE_S:g} s, nothing trained), and the release "
            "verification a production run makes before it starts: git state, ledger, "
            f"catalog, settings and engine against the release manifest (target <= "
            f"{VERIFY_S:g} s). Set-up (repository, data import, promotion with a recorded "
            "staging report) is not timed."
        ),
        cases=_cases,
    ),
]
