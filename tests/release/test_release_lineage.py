"""Production must descend from its last release (issue 18, item 10): a production branch
reset or rewritten to older code (`git branch -f production main~3`), or a moved release tag,
is a problem `release status` lists with its fix, `release check` fails on, and promote,
stage and the production run refuse."""

from __future__ import annotations

import shutil

import pytest
from release_repo import git, open_ctx, release_twice, stage_ok

from ewspipe.errors import CheckFailed
from ewspipe.flows.release_guard import ReleaseGuardFailed, check_release
from ewspipe.release.promote import promote
from ewspipe.release.status import check, status


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory):
    """v0.1.0 and v0.2.0 released; development has a third commit, not staged."""
    root = tmp_path_factory.mktemp("lineage")
    release_twice(root)
    return root


@pytest.fixture
def released(two_releases, tmp_path):
    shutil.copytree(two_releases, tmp_path / "copy")
    repo = tmp_path / "copy" / "repo"
    return repo, open_ctx(repo, tmp_path / "copy" / "state")


def _rewind(repo):  # production back to the first release (older code)
    git(repo, "branch", "-f", "production", "v0.1.0")


def _orphan(repo):  # production at a commit that holds neither release
    git(repo, "branch", "-f", "production", "development~4")


def _moved_tag(repo):  # the last tag moved onto older code, production following it
    git(repo, "tag", "-f", "-a", "v0.2.0", "-m", "moved", "v0.1.0^{commit}")
    git(repo, "branch", "-f", "production", "v0.1.0")


REWRITES = {"rewound": (_rewind, "does not descend from the last release tag v0.2.0"),
            "orphan": (_orphan, "does not descend from the last release tag v0.2.0"),
            "moved tag": (_moved_tag, "the tag was moved")}


@pytest.mark.parametrize("case", list(REWRITES))
def test_a_rewritten_production_branch_is_a_problem_everywhere(released, case):
    repo, ctx = released
    assert ctx.problems() == [] and check(ctx)["passed"]
    rewrite, needle = REWRITES[case]
    rewrite(repo)
    problems = status(ctx)["problems"]
    assert any(needle in p for p in problems), problems
    assert any("git branch -f production" in p or "git tag -f -a v0.2.0" in p
               for p in problems), problems
    with pytest.raises(CheckFailed, match=needle):
        check(ctx)
    stage_ok(ctx)
    with pytest.raises(CheckFailed, match=needle):
        promote(ctx)
    with pytest.raises(CheckFailed, match=needle):
        ctx.require_lineage("stage")


def test_the_production_run_refuses_a_rewound_branch(released):
    """HEAD is production and at a completed release tag (v0.1.0), yet not the last release:
    the guard names the lost release and the fix before anything runs."""
    repo, ctx = released
    _rewind(repo)
    git(repo, "checkout", "-q", "production")
    with pytest.raises(ReleaseGuardFailed, match=r"v0\.2\.0 .*git branch -f production v0\.2\.0"):
        check_release(ctx.settings)


def test_repair_as_told_clears_the_problem(released):
    repo, ctx = released
    _rewind(repo)
    git(repo, "branch", "-f", "production", "v0.2.0")
    assert ctx.problems() == [] and check(ctx)["passed"]


def test_ledger_commit_checked_when_the_tag_is_gone(released):
    """The last tag deleted and production rewound: the ledger's release commit still says
    what production must contain."""
    repo, ctx = released
    commit = git(repo, "rev-parse", "v0.2.0^{commit}")
    git(repo, "tag", "-d", "v0.2.0")
    _rewind(repo)
    problems = ctx.problems()
    assert any(f"does not contain {commit[:12]}" in p for p in problems), problems
    assert any("tag is missing" in p for p in problems), problems


def test_a_damaged_ledger_is_named_not_trusted(released):
    """A state.db that is not a database: the release commands and the production run's
    guard refuse with exit 2 naming the file, instead of a traceback."""
    from ewspipe.errors import StoreError
    from ewspipe.release.context import ReleaseContext

    repo, ctx = released
    path = ctx.ledger.db.sqlite_path
    path.write_bytes(b"not a database\n" * 100)
    git(repo, "checkout", "-q", "production")
    # the state database's own check (IntegrityError) or the ledger's (LedgerDamaged): both
    # are StoreErrors naming the file and how to restore it
    with pytest.raises(StoreError, match=r"state\.db.*restore") as caught:
        check_release(ctx.settings)
    assert caught.value.exit_code == 2
    with pytest.raises(StoreError, match=r"state\.db"):
        ReleaseContext.open(ctx.settings)
