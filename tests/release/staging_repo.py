"""A scripted product repository for staging tests: the quick monthly workspace
(tests/flows/monthly_workspace.py) plus a zero baseline and a tiny test suite, committed on
``production`` with ``development`` branched off it, and a state folder (outside the
repository) holding the small demo world's snapshots."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ewspipe.flows.ingest import import_demo_checked
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from monthly_workspace import write_monthly_workspace

BASELINE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "zero"
status = "baseline"
owner = "tests"
description = "All zeros: the floor."
features = []
"""

TEST_FILE = "def test_truth():\n    assert 1 + 1 == 2\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_product_repo(root: Path) -> Path:
    """The repository at ``root/repo``: production == development, one commit."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "production")
    git(repo, "config", "user.email", "tests@example.org")
    git(repo, "config", "user.name", "tests")
    git(repo, "config", "commit.gpgsign", "false")
    write_monthly_workspace(repo)
    for name, level in (("zero_floor", "cm"), ("zero_grid", "pgm")):
        (repo / "models" / f"{name}.toml").write_text(BASELINE.format(name=name, level=level))
    with (repo / "ewspipe.toml").open("a") as fh:
        # the small demo world's pgm month 520 carries an ERROR-level alarm of its own
        fh.write('\n[release]\ndrift_fail_severity = "CRITICAL"\n')
    (repo / "tests").mkdir()
    (repo / "tests" / "test_truth.py").write_text(TEST_FILE)
    (repo / ".gitignore").write_text("state/\n__pycache__/\n.pytest_cache/\n")
    commit_all(repo, "feat: first models")
    git(repo, "branch", "development")
    return repo


def workspace_settings(repo: Path, state: Path) -> Settings:
    """The settings a user of ``repo`` has, with state outside the repository."""
    return load_settings(repo / "ewspipe.toml", state_dir=state)


def import_demo(settings: Settings) -> dict[str, str]:
    """The small demo world's snapshots (level -> id)."""
    result = import_demo_checked(settings)
    return {level: r.manifest.id for level, r in result.results.items()}


def import_drifted(settings: Settings, snapshot: str, factor: float = 1000.0) -> str:
    """A copy of ``snapshot`` whose last month's counts are ``factor`` times larger."""
    store = SnapshotStore(settings.snapshot_dir)
    manifest = store.get(snapshot)
    frame = store.load(snapshot).frame.copy()
    last = frame["month_id"] == manifest.last_month
    for col in manifest.count_columns:
        frame.loc[last, col] = (frame.loc[last, col] * factor + factor).astype(frame[col].dtype)
    result = import_frame(frame, manifest.level, store, source={"kind": "test"},
                          source_name="drifted", count_columns=list(manifest.count_columns))
    return result.manifest.id


def write_model(repo: Path, name: str, text: str) -> None:
    (repo / "models" / f"{name}.toml").write_text(text)


def copy_package(repo: Path) -> Path:
    """The installed ewspipe sources copied into ``repo/src/ewspipe`` (a repository that
    carries its own code); returns the package folder."""
    import ewspipe

    src = Path(ewspipe.__file__).parent
    dest = repo / "src" / "ewspipe"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def commit_on(repo: Path, branch: str, base: str, files: dict[str, str | None],
              message: str) -> str:
    """Commit ``files`` (path -> text, None deletes) on a new ``branch`` from ``base`` without
    touching the repository's own working tree; returns the commit."""
    tree = repo.parent / f"wt-{branch.replace('/', '-')}"
    git(repo, "worktree", "add", "-q", "-b", branch, str(tree), base)
    try:
        for rel, text in files.items():
            path = tree / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        return commit_all(tree, message)
    finally:
        git(repo, "worktree", "remove", "--force", str(tree))
