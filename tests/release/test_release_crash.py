"""Crash safety: the CLI killed (exit 137, EWSPIPE_RELEASE_CRASH_AT) right at every step of
promote, hotfix finish and rollback leaves the repository and ledger unchanged or resumable,
and re-running the same command completes the job exactly once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok

from ewspipe.errors import CheckFailed
from ewspipe.release.hotfix import finish_hotfix, start_hotfix
from ewspipe.release.promote import promote
from ewspipe.release.rollback import rollback
from ewspipe.release.status import check, status
from ewspipe.release.steps import CRASH_ENV

INTEGRATE = ["begin", "merge", "changelog", "tag", "aliases", "backport", "complete"]
ROLLBACK = ["begin", "commit", "tag", "aliases", "pointers", "complete"]


def _crash(repo, state, step, *command):
    env = {k: v for k, v in os.environ.items() if k not in ("EWSPIPE_CONFIG",
                                                             "EWSPIPE_STATE_DIR")}
    env[CRASH_ENV] = step
    done = subprocess.run([sys.executable, "-m", "ewspipe", "--config",
                           str(repo / "ewspipe.toml"), "--state-dir", str(state), "release",
                           *command, "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 137, (done.stdout, done.stderr)


def _refs(repo):
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def _assert_consistent(ctx, repo, tag, *, changelog_sections=None):
    assert ctx.problems() == [] and ctx.ledger.pending() == []
    versions = [e["version"] for e in ctx.ledger.releases()]
    assert versions.count(tag[1:]) == 1
    assert git(repo, "rev-parse", f"{tag}^{{commit}}") == git(repo, "rev-parse", "production")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    if changelog_sections is not None:  # each release's section written exactly once
        changelog = git(repo, "show", "production:CHANGELOG.md")
        assert changelog.count("## [") == changelog_sections


@pytest.mark.parametrize("step", INTEGRATE)
def test_promote_killed_at_each_step(tmp_path, step):
    repo = make_repo(tmp_path)
    state = tmp_path / "state"
    ctx = open_ctx(repo, state)
    release_first(ctx)
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)
    before = _refs(repo)
    _crash(repo, state, step, "promote")
    if step == "begin":
        assert _refs(repo) == before and ctx.ledger.pending() == []
    else:
        assert [e["version"] for e in ctx.ledger.pending()] == ["0.2.0"]
        assert status(ctx)["pending_operations"][0]["kind"] == "promote"
        with pytest.raises(CheckFailed, match=r"re-run `ewspipe release promote`"):
            rollback(ctx)
    result = promote(ctx)
    assert result["tag"] == "v0.2.0" and result["resumed"] == (step != "begin")
    _assert_consistent(ctx, repo, "v0.2.0", changelog_sections=2)
    assert check(ctx)["passed"]
    assert git(repo, "rev-list", "--count", "v0.1.0..production") == "3"  # a, merge, changelog


@pytest.mark.parametrize("step", INTEGRATE)
def test_hotfix_finish_killed_at_each_step(tmp_path, step):
    repo = make_repo(tmp_path)
    state = tmp_path / "state"
    ctx = open_ctx(repo, state)
    release_first(ctx)
    commit_file(repo, "docs/dev.md", "dev\n", "feat: dev")
    start_hotfix(ctx, "quick")
    commit_file(repo, "docs/fix.md", "fix\n", "fix: quick")
    stage_ok(ctx, "hotfix/quick")
    _crash(repo, state, step, "hotfix", "finish")
    result = finish_hotfix(ctx)
    assert result["tag"] == "v0.1.1"
    _assert_consistent(ctx, repo, "v0.1.1", changelog_sections=2)
    assert check(ctx)["passed"]
    assert git(repo, "show", "development:docs/fix.md") == "fix"
    assert git(repo, "branch", "--show-current") == "production"


@pytest.mark.parametrize("step", ROLLBACK)
def test_rollback_killed_at_each_step(tmp_path, step):
    repo = make_repo(tmp_path)
    state = tmp_path / "state"
    ctx = open_ctx(repo, state)
    release_first(ctx)
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)
    promote(ctx)
    git(repo, "checkout", "-q", "production")
    _crash(repo, state, step, "rollback")
    result = rollback(ctx)
    assert (result["tag"], result["restored"]) == ("v0.2.1", "v0.1.0")
    # append-only: v0.1.0, v0.2.0 and the rollback's own section, each exactly once
    _assert_consistent(ctx, repo, "v0.2.1", changelog_sections=3)
    assert "Rolled back to v0.1.0 (was v0.2.0)" in git(repo, "show", "production:CHANGELOG.md")
    assert git(repo, "diff", "--name-only", "v0.1.0", "production") == "CHANGELOG.md"
    assert git(repo, "rev-list", "--count", "v0.2.0..production") == "1"  # one commit only


def test_killed_inside_git_merge_is_redone(tmp_path):
    """A kill inside `git merge` leaves MERGE_HEAD and staged changes: the re-run aborts that
    merge and does the step again."""
    repo, state, ctx = _staged_release(tmp_path)
    _crash(repo, state, "merge", "promote")
    git(repo, "checkout", "-q", "production")
    git(repo, "merge", "-q", "--no-ff", "--no-commit", "development")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") != ""
    result = promote(ctx)
    assert result["resumed"] and result["tag"] == "v0.2.0"
    _assert_consistent(ctx, repo, "v0.2.0", changelog_sections=2)


def _staged_release(tmp_path):
    """A released repository with one staged feature, ready to promote."""
    repo = make_repo(tmp_path)
    state = tmp_path / "state"
    ctx = open_ctx(repo, state)
    release_first(ctx)
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)
    return repo, state, ctx


@pytest.mark.parametrize("kill_after", ["add", "write"])
def test_killed_between_changelog_add_and_commit_is_redone(tmp_path, kill_after):
    """A kill after CHANGELOG.md was written (and staged) but before its commit: the re-run
    undoes that write and commits the section once, instead of refusing forever with
    "uncommitted changes (CHANGELOG.md)"."""
    from ewspipe.release.changelog import insert_section

    repo, state, ctx = _staged_release(tmp_path)
    _crash(repo, state, "changelog", "promote")
    # what commit_file had done when the kill came: the file written, maybe staged
    plan = ctx.ledger.pending()[0]["plan"]
    git(repo, "checkout", "-q", "production")
    text = insert_section(git(repo, "show", "production:CHANGELOG.md") + "\n",
                          plan["changelog"])
    (repo / "CHANGELOG.md").write_text(text)
    if kill_after == "add":
        git(repo, "add", "--", "CHANGELOG.md")
    result = promote(ctx)
    assert result["resumed"] and result["tag"] == "v0.2.0"
    _assert_consistent(ctx, repo, "v0.2.0", changelog_sections=2)


def test_a_users_own_changelog_edit_is_still_refused(tmp_path):
    """Only the release's own interrupted write is undone: an edit without its section is
    the user's, and the resume refuses as before."""
    repo, state, ctx = _staged_release(tmp_path)
    _crash(repo, state, "changelog", "promote")
    git(repo, "checkout", "-q", "production")
    (repo / "CHANGELOG.md").write_text("my notes\n")
    with pytest.raises(Exception, match="uncommitted changes"):
        promote(ctx)
    assert (repo / "CHANGELOG.md").read_text() == "my notes\n"
