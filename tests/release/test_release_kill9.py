"""A real kill -9 series over `release promote`, `release hotfix finish` and `release
rollback` (issue 18): the command runs in its own process with a `git` wrapper first on PATH
that counts every git call and, after the k-th one completes, kills its caller with SIGKILL
(deterministic: no timing). Every k after which the persisted state differs is hit: the
first call after the ledger's `pending` entry is written, each mutating git call after it
and the last one before it; a kill after any other call leaves one of those states. The same command
re-run without the wrapper must complete; then `release status` is clean, the ledger,
CHANGELOG.md and tags agree with what production runs (the production run's release guard
accepts it) and nothing is left uncommitted.

The killed process is forked from the test process (imports done once: a `python -m ewspipe`
start costs seconds); one case runs the real `python -m ewspipe` under the wrapper too.
MLflow aliases are not exercised: the workspace has tracking disabled.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok

from ewspipe.cli.main import main
from ewspipe.flows.release_guard import check_release
from ewspipe.release.hotfix import start_hotfix
from ewspipe.release.promote import promote
from ewspipe.release.status import check, status
from ewspipe.release.steps import CRASH_ENV

WRAPPER = """#!/bin/sh
n=0
[ -f "$GITWRAP_COUNTER" ] && read -r n < "$GITWRAP_COUNTER"
n=$((n + 1))
echo "$n" > "$GITWRAP_COUNTER"
echo "$n $1 $2" >> "$GITWRAP_COUNTER.log"
"$GITWRAP_REAL" "$@"
rc=$?
if [ "$n" = "${GITWRAP_KILL_AT:-0}" ] || [ "$1 $2" = "${GITWRAP_KILL_ON:-}" ]; then
  kill -9 "$PPID"; sleep 5
fi
exit $rc
"""
#: git commands that change the repository (or its object store / index)
MUTATING = {"checkout", "merge", "add", "commit", "tag --annotate", "branch", "commit-tree",
            "hash-object", "read-tree", "update-index", "write-tree", "worktree", "reset"}
COMMANDS = {"promote": (("promote",), "v0.2.0"),
            "hotfix": (("hotfix", "finish"), "v0.1.1"),
            "rollback": (("rollback",), "v0.2.1")}


def _cli_args(root: Path, command: tuple[str, ...]) -> list[str]:
    return ["--config", str(root / "repo" / "ewspipe.toml"), "--state-dir", str(root / "state"),
            "release", *command, "--json"]


def _wrapper_env(root: Path, kill_at: int = 0, kill_on: str = "") -> dict[str, str]:
    bin_dir = root.parent / f"{root.name}-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "git").write_text(WRAPPER)
    (bin_dir / "git").chmod(0o755)
    real = shutil.which("git")
    assert real is not None
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITWRAP_REAL": real,
            "GITWRAP_COUNTER": str(root.parent / f"{root.name}-git-calls"),
            "GITWRAP_KILL_AT": str(kill_at), "GITWRAP_KILL_ON": kill_on}


def _forked(root: Path, command: tuple[str, ...], kill_at: int = 0,
            crash_at: str | None = None) -> tuple[int | None, int]:
    """Run the command in a forked process under the wrapper; (exit code or None when it was
    killed, the number of git calls it made). ``crash_at``: the step hook of
    :mod:`ewspipe.release.steps` (exit 137 right before that step)."""
    env = _wrapper_env(root, kill_at)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    pid = os.fork()
    if pid == 0:  # the child: the CLI, stdout/stderr to a file, never back into pytest
        code = 70
        try:
            out = open(root.parent / f"{root.name}-out.txt", "w")  # noqa: SIM115
            sys.stdout = sys.stderr = out
            for name in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR"):
                os.environ.pop(name, None)
            os.environ.update(env)
            code = main(_cli_args(root, command))
            out.flush()
        finally:
            os._exit(code)
    _, wait = os.waitpid(pid, 0)
    counter = Path(env["GITWRAP_COUNTER"])
    calls = int(counter.read_text()) if counter.exists() else 0
    if os.WIFSIGNALED(wait):
        assert os.WTERMSIG(wait) == signal.SIGKILL
        return None, calls
    return os.WEXITSTATUS(wait), calls


def _rerun(root: Path, command: tuple[str, ...]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(_cli_args(root, command))
    doc = json.loads(out.getvalue())
    assert code == 0, doc
    return doc


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """One staged state per command, each copied per case."""
    base = tmp_path_factory.mktemp("kill9")
    promote_root = base / "promote"
    repo = make_repo(promote_root)
    ctx = open_ctx(repo, promote_root / "state")
    release_first(ctx)
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)
    hotfix_root = base / "hotfix"
    shutil.copytree(promote_root, hotfix_root)
    hctx = open_ctx(hotfix_root / "repo", hotfix_root / "state")
    start_hotfix(hctx, "quick")
    commit_file(hotfix_root / "repo", "docs/fix.md", "fix\n", "fix: quick")
    stage_ok(hctx, "hotfix/quick")
    rollback_root = base / "rollback"
    shutil.copytree(promote_root, rollback_root)
    rctx = open_ctx(rollback_root / "repo", rollback_root / "state")
    promote(rctx)
    git(rollback_root / "repo", "checkout", "-q", "production")
    return {"promote": promote_root, "hotfix": hotfix_root, "rollback": rollback_root}


def _kill_points(log: str, begun: int) -> list[int]:
    """Every call after which the persisted state differs: the first call after the ledger's
    pending entry was written (``begun``: the calls made before it), each mutating git call
    after it, and the last mutating one before it (planning: git plumbing in a temporary
    index). A kill after any other call leaves one of these states."""
    calls = [line.split(" ") for line in log.splitlines() if line]
    mutating = [int(n) for n, first, second, *_ in calls
                if (first in MUTATING and first != "tag") or f"{first} {second}" in MUTATING]
    assert [m for m in mutating if m > begun], log
    planning = [m for m in mutating if m <= begun]
    return sorted({begun + 1, *planning[-1:], *(m for m in mutating if m > begun)})


def _assert_healed(root: Path, kind: str, tag: str) -> None:
    repo = root / "repo"
    ctx = open_ctx(repo, root / "state")
    doc = status(ctx)
    assert doc["problems"] == [] and doc["pending_operations"] == [], doc
    assert ctx.ledger.pending() == []
    assert [e["version"] for e in ctx.ledger.releases()].count(tag[1:]) == 1
    newest = ctx.ledger.completed()[0]
    assert newest["version"] == tag[1:]
    production = git(repo, "rev-parse", "production")
    assert newest["manifest"]["release_commit"] == production
    assert git(repo, "rev-parse", f"{tag}^{{commit}}") == production
    expected_tags = {"promote": "v0.1.0 v0.2.0", "hotfix": "v0.1.0 v0.1.1",
                     "rollback": "v0.1.0 v0.2.0 v0.2.1"}[kind]
    assert " ".join(sorted(git(repo, "tag", "-l").split())) == expected_tags
    changelog = git(repo, "show", "production:CHANGELOG.md")
    assert changelog.count(f"## [{tag}]") == 1, changelog
    assert changelog.count("## [") == len(expected_tags.split()), changelog
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    if kind != "rollback":  # a rollback is never merged into development (docs)
        assert check(ctx)["passed"]
        assert git(repo, "branch", "--list", "backport/*") == ""
    git(repo, "checkout", "-q", "production")
    assert check_release(ctx.settings)["tag"] == tag  # what the production run accepts


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_killed_at_every_git_step_then_rerun_completes(templates, tmp_path, kind):
    command, tag = COMMANDS[kind]
    counted = tmp_path / "count"
    shutil.copytree(templates[kind], counted)
    code, _ = _forked(counted, command)
    assert code == 0, (counted.parent / "count-out.txt").read_text()
    _assert_healed(counted, kind, tag)
    crashed = tmp_path / "begin"
    shutil.copytree(templates[kind], crashed)
    code, begun = _forked(crashed, command, crash_at="begin")
    assert code == 137
    points = _kill_points((tmp_path / "count-git-calls.log").read_text(), begun)
    assert len(points) >= 5
    for k in points:
        case = tmp_path / f"k{k}"
        shutil.copytree(templates[kind], case)
        code, calls = _forked(case, command, kill_at=k)
        assert code is None and calls == k, (k, code, calls)
        doc = _rerun(case, command)
        assert doc["tag"] == tag, (k, doc)
        _assert_healed(case, kind, tag)
        shutil.rmtree(case)


def test_python_m_ewspipe_killed_between_changelog_add_and_commit(templates, tmp_path):
    """The issue's wedge through the real entry point: `python -m ewspipe release promote`
    killed by SIGKILL right after `git add -- CHANGELOG.md` (its only `git add`); the re-run
    completes."""
    root = tmp_path / "case"
    shutil.copytree(templates["promote"], root)
    env = {k: v for k, v in os.environ.items() if k not in ("EWSPIPE_CONFIG",
                                                             "EWSPIPE_STATE_DIR")}
    done = subprocess.run([sys.executable, "-m", "ewspipe", *_cli_args(root, ("promote",))],
                          env={**env, **_wrapper_env(root, kill_on="add --")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    assert git(root / "repo", "diff", "--cached", "--name-only") == "CHANGELOG.md"
    assert _rerun(root, ("promote",))["resumed"]
    _assert_healed(root, "promote", "v0.2.0")
