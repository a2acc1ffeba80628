"""Hotfixes: branch from the production tag, release as PATCH into production, back-port
into development; a conflicting back-port leaves development untouched, prepares
backport/vX.Y.Z, and status/check report it until it lands."""

from __future__ import annotations

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.hotfix import finish_hotfix, start_hotfix
from ewspipe.release.status import check, status


@pytest.fixture
def released(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    commit_file(repo, "docs/dev.md", "development work\n", "feat: dev work")
    return repo, ctx


def _fix(repo, ctx, path="docs/fix.md", text="the fix\n"):
    start = start_hotfix(ctx, "guard-nan")
    assert start["branch"] == "hotfix/guard-nan" and start["from"] == "v0.1.0"
    assert git(repo, "branch", "--show-current") == "hotfix/guard-nan"
    commit_file(repo, path, text, "fix: guard against NaN")
    return stage_ok(ctx, "hotfix/guard-nan")


def test_hotfix_reaches_production_and_development(released):
    repo, ctx = released
    fix = _fix(repo, ctx)
    assert status(ctx)["hotfix_branches"] == ["hotfix/guard-nan"]
    result = finish_hotfix(ctx)
    assert result["tag"] == "v0.1.1" and result["manifest"]["kind"] == "hotfix"
    assert result["manifest"]["hotfix"] == "guard-nan"
    assert git(repo, "merge-base", "--is-ancestor", fix, "production") == ""
    assert git(repo, "rev-parse", "v0.1.1^{commit}") == git(repo, "rev-parse", "production")
    assert (repo / "docs" / "fix.md").read_text() == "the fix\n"  # on production now
    assert git(repo, "branch", "--show-current") == "production"
    # back-ported: development has the fix and its own work, and contains production
    assert git(repo, "show", "development:docs/fix.md") == "the fix"
    assert git(repo, "show", "development:docs/dev.md") == "development work"
    assert check(ctx)["passed"]
    doc = status(ctx)
    assert doc["production"]["tag"] == "v0.1.1" and doc["hotfix_branches"] == []
    assert doc["pending_backports"] == [] and doc["development"]["contains_production"]
    assert "### Fixes" in git(repo, "show", "production:CHANGELOG.md")


def test_conflicting_backport_leaves_development_untouched(released):
    repo, ctx = released
    commit_file(repo, "docs/shared.md", "development's version\n", "docs: shared (dev)")
    dev_before = git(repo, "rev-parse", "development")
    _fix(repo, ctx, path="docs/shared.md", text="the hotfix's version\n")
    result = finish_hotfix(ctx)
    assert result["tag"] == "v0.1.1"
    backport = result["manifest"]["backport"]
    assert backport == {"status": "conflict", "files": ["docs/shared.md"],
                        "branch": "backport/v0.1.1"}
    note = next(s["note"] for s in result["steps"] if s["step"] == "backport")
    assert "docs/shared.md" in note and "git checkout backport/v0.1.1" in note
    assert git(repo, "rev-parse", "development") == dev_before
    assert git(repo, "rev-parse", "backport/v0.1.1") == git(repo, "rev-parse", "v0.1.1^{commit}")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    doc = status(ctx)
    [pending] = doc["pending_backports"]
    assert pending["tag"] == "v0.1.1" and pending["conflicts"] == ["docs/shared.md"]
    assert pending["backport_branch"] == "backport/v0.1.1"
    with pytest.raises(CheckFailed, match=r"(?s)back-port pending.*docs/shared.md"):
        check(ctx)
    # resolve as instructed; then check passes
    git(repo, "checkout", "-q", "backport/v0.1.1")
    git(repo, "merge", "-q", "development", "-X", "ours", "-m", "Merge development")
    git(repo, "checkout", "-q", "development")
    git(repo, "merge", "-q", "backport/v0.1.1")
    assert check(ctx)["passed"] and status(ctx)["pending_backports"] == []


def test_hotfix_refusals(released):
    repo, ctx = released
    with pytest.raises(InputError, match=r"hotfix name"):
        start_hotfix(ctx, "Bad Name!")
    with pytest.raises(CheckFailed, match=r"check out the hotfix branch"):
        finish_hotfix(ctx)
    start_hotfix(ctx, "empty")
    with pytest.raises(CheckFailed, match=r"nothing to finish"):
        finish_hotfix(ctx)
    with pytest.raises(InputError, match=r"already exists"):
        start_hotfix(ctx, "empty")
    commit_file(repo, "docs/f.md", "f\n", "fix: f")
    with pytest.raises(CheckFailed, match=r"no staging report"):
        finish_hotfix(ctx)
    (repo / "docs" / "f.md").write_text("dirty\n")
    with pytest.raises(CheckFailed, match=r"uncommitted changes"):
        finish_hotfix(ctx)
    assert ctx.ledger.pending() == [] and git(repo, "tag", "-l") == "v0.1.0"


def test_hotfix_needs_a_release(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    with pytest.raises(CheckFailed, match=r"promote a release first"):
        start_hotfix(ctx, "early")


def test_a_hotfix_branch_cut_from_development_is_refused(released):
    """A branch named hotfix/ but cut from development would ship development's unstaged
    work (here a breaking change) under a PATCH number."""
    repo, ctx = released
    commit_file(repo, "docs/big.md", "breaking\n", "feat!: a breaking development change")
    git(repo, "checkout", "-q", "-b", "hotfix/oops")
    commit_file(repo, "docs/fix.md", "the fix\n", "fix: typo")
    stage_ok(ctx, "hotfix/oops")
    production = git(repo, "rev-parse", "production")
    with pytest.raises(CheckFailed, match=r"(?s)hotfix/oops carries 2 commit\(s\) of "
                       r"development.*feat!: a breaking development change.*hotfix start"):
        finish_hotfix(ctx)
    assert git(repo, "rev-parse", "production") == production  # nothing released
    assert git(repo, "tag", "--list", "v0.1.1") == "" and ctx.ledger.pending() == []


def test_a_hotfix_that_changes_a_deployed_model_is_a_minor_release(released):
    """The automatic bump of promote holds for hotfixes: a deployed model's configuration
    changed, so the release is v0.2.0 (not v0.1.1), with the reasons in the manifest."""
    repo, ctx = released
    start_hotfix(ctx, "tune")
    path = repo / "models" / "small_ridge.toml"
    path.write_text(path.read_text().replace("seed = 7", "seed = 8", 1))  # its config hash
    git(repo, "commit", "-qam", "fix: small_ridge's regularisation")
    stage_ok(ctx, "hotfix/tune")
    result = finish_hotfix(ctx)
    bump = result["manifest"]["bump"]
    assert result["tag"] == "v0.2.0" and bump["chosen"] == "minor" and not bump["forced"]
    assert any("small_ridge" in reason for reason in bump["reasons"]), bump
    assert git(repo, "rev-parse", "v0.2.0^{commit}") == git(repo, "rev-parse", "production")


def test_a_plain_fix_records_its_patch_bump(released):
    repo, ctx = released
    _fix(repo, ctx)
    bump = finish_hotfix(ctx)["manifest"]["bump"]
    assert bump["chosen"] == "patch" and not bump["forced"]
