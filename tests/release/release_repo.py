"""Scripted product repositories for the release-core tests: the quick monthly workspace
(config only: models/, ensembles/, ewspipe.toml) committed on ``development``, state outside
the repository, and staging reports inserted into the ledger (the gates themselves are tested
in test_stage*/test_gates*)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.flows.monthly_workspace import staging_report, write_monthly_workspace

from ewspipe.release.context import ReleaseContext
from ewspipe.release.promote import promote
from ewspipe.settings import load_settings

__all__ = ["commit_file", "git", "make_repo", "open_ctx", "release_first", "stage_ok"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def commit_file(repo: Path, path: str, text: str, message: str) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(repo, "add", "--", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(root: Path) -> Path:
    """``root/repo`` on ``development`` with one commit; no production branch yet."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "development")
    git(repo, "config", "user.email", "tests@example.org")
    git(repo, "config", "user.name", "Release Tester")
    git(repo, "config", "commit.gpgsign", "false")
    write_monthly_workspace(repo)
    (repo / ".gitignore").write_text("state/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "feat: first models")
    return repo


def open_ctx(repo: Path, state: Path) -> ReleaseContext:
    return ReleaseContext.open(load_settings(repo / "ewspipe.toml", state_dir=state))


def stage_ok(ctx: ReleaseContext, ref: str = "development",
             failed: tuple[str, ...] = ()) -> str:
    """Insert a staging report for ``ref`` against production's current head."""
    commit = ctx.git.resolve(ref)
    production = ctx.git.rev(ctx.prod)
    ctx.ledger.record_staging(staging_report(commit, production, ref=ref, failed=failed))
    return commit


def release_first(ctx: ReleaseContext) -> str:
    """v0.1.0 from development; the worktree stays on development."""
    stage_ok(ctx)
    return str(promote(ctx)["tag"])


def release_twice(root: Path) -> ReleaseContext:
    """v0.1.0 and v0.2.0 released, then one more feature committed on development (not
    staged); the worktree stays on development."""
    repo = make_repo(root)
    ctx = open_ctx(repo, root / "state")
    release_first(ctx)
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)
    promote(ctx)
    commit_file(repo, "docs/b.md", "b\n", "feat: b")
    return ctx
