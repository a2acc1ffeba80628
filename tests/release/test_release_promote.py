"""Promotion on scripted repositories: a MINOR release with manifest, tag and CHANGELOG; the
refusals (no report, failed report, stale report, dirty tree, wrong branch, ledger/tag
disagreement, bad input); overrides recorded."""

from __future__ import annotations

import json

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.promote import parse_bump, promote
from ewspipe.release.version import Bump

NEW_MODEL = """
name = "fresh_guess"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "shadow"
owner = "tests"
description = "A new shadow model."
features = []
"""


@pytest.fixture
def released(tmp_path):
    """A repository with v0.1.0 released; development then adds a model (feat)."""
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    assert release_first(ctx) == "v0.1.0"
    commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat(models): fresh_guess")
    commit_file(repo, "docs/notes.md", "notes\n", "docs: notes")
    return repo, ctx


def test_first_release_creates_production(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    assert release_first(ctx) == "v0.1.0"
    assert git(repo, "rev-parse", "production") == git(repo, "rev-parse", "v0.1.0^{commit}")
    assert git(repo, "merge-base", "--is-ancestor", "production", "development") == ""
    [entry] = ctx.ledger.completed()
    assert entry["version"] == "0.1.0" and entry["kind"] == "promote"


def test_promote_minor_release(released):
    repo, ctx = released
    candidate = stage_ok(ctx)
    before = git(repo, "rev-parse", "production")
    result = promote(ctx)
    assert result["tag"] == "v0.2.0" and not result["resumed"]
    man = result["manifest"]
    assert man["bump"]["bump"] == "minor" and man["candidate_commit"] == candidate
    assert [c["subject"] for c in man["commits"]] == ["docs: notes",
                                                       "feat(models): fresh_guess"]
    assert man["operator"] == "Release Tester" and man["production_before"] == before
    assert len(man["lock_hash"] or "") in (0, 64) and man["gates"][0]["status"] == "PASS"
    assert man["metrics"] == {"performance": {"msle": {"candidate": 0.5, "production": 0.6}}}
    # merge --no-ff of the exact candidate, then the CHANGELOG commit, tagged
    merge = git(repo, "rev-parse", "production~1")
    assert git(repo, "rev-parse", f"{merge}^1") == before
    assert git(repo, "rev-parse", f"{merge}^2") == candidate
    assert git(repo, "log", "-1", "--format=%s", "production") == "chore(release): v0.2.0"
    assert git(repo, "rev-parse", "v0.2.0^{commit}") == git(repo, "rev-parse", "production")
    assert git(repo, "cat-file", "-t", "v0.2.0") == "tag"  # annotated
    message = git(repo, "tag", "-l", "--format=%(contents)", "v0.2.0")
    assert message.startswith("Release v0.2.0")
    assert json.loads(message.split("\n", 2)[2])["candidate_commit"] == candidate
    changelog = git(repo, "show", "production:CHANGELOG.md")
    assert changelog.index("## [v0.2.0]") < changelog.index("## [v0.1.0]")
    assert "- **models**: fresh_guess" in changelog and "### Documentation" in changelog
    # development got the release back (fast-forward) and the worktree is where it was
    assert git(repo, "rev-parse", "development") == git(repo, "rev-parse", "production")
    assert git(repo, "branch", "--show-current") == "development"
    entry = ctx.ledger.releases()[0]
    assert (entry["version"], entry["status"]) == ("0.2.0", "completed")
    assert entry["manifest"]["release_commit"] == git(repo, "rev-parse", "production")


def test_promote_from_production_with_forced_bump(released):
    repo, ctx = released
    stage_ok(ctx)
    git(repo, "checkout", "-q", "production")
    result = promote(ctx, bump=Bump.MAJOR)
    assert result["tag"] == "v1.0.0" and result["manifest"]["bump"]["forced"]
    assert git(repo, "branch", "--show-current") == "production"


def test_refused_without_a_report(released):
    repo, ctx = released
    head = git(repo, "rev-parse", "production")
    with pytest.raises(CheckFailed, match=r"no staging report for this exact commit"):
        promote(ctx)
    stage_ok(ctx)
    commit_file(repo, "docs/more.md", "x\n", "docs: more")  # the staged commit is not the head
    with pytest.raises(CheckFailed, match=r"no staging report"):
        promote(ctx)
    assert git(repo, "rev-parse", "production") == head and ctx.ledger.pending() == []


def test_refused_with_a_failed_report_and_override_recorded(released):
    repo, ctx = released
    stage_ok(ctx, failed=("performance", "drift"))
    with pytest.raises(CheckFailed, match=r"failed 2 gates") as err:
        promote(ctx)
    assert "performance" in str(err.value) and "--allow GATE --reason" in str(err.value)
    with pytest.raises(CheckFailed, match=r"failed 1 gate"):
        promote(ctx, allow=["performance"], reason="known regression, accepted")
    with pytest.raises(InputError, match=r"needs a reason") as no_reason:
        promote(ctx, allow=["performance", "drift"])
    assert no_reason.value.parameter == "reason"  # the CLI says "option --reason: ..."
    with pytest.raises(InputError, match=r"not a gate"):
        promote(ctx, allow=["speed"], reason="x")
    result = promote(ctx, allow=["performance", "drift"], reason="data revision, accepted")
    overrides = result["manifest"]["overrides"]
    assert {o["gate"] for o in overrides} == {"performance", "drift"}
    assert all(o["reason"] == "data revision, accepted" and o["status"] == "FAIL"
               for o in overrides)
    assert "data revision" in git(repo, "tag", "-l", "--format=%(contents)", "v0.2.0")


def test_refused_when_staged_against_another_production(released):
    repo, ctx = released
    candidate = git(repo, "rev-parse", "development")
    from tests.flows.monthly_workspace import staging_report

    ctx.ledger.record_staging(staging_report(candidate, "f" * 40))
    with pytest.raises(CheckFailed, match=r"stage it again"):
        promote(ctx)


def test_refused_with_dirty_worktree_or_wrong_branch(released):
    repo, ctx = released
    stage_ok(ctx)
    (repo / "models" / "small_tree.toml").write_text("broken = true\n")
    with pytest.raises(CheckFailed, match=r"uncommitted changes.*small_tree.toml"):
        promote(ctx)
    git(repo, "checkout", "-q", "--", "models/small_tree.toml")
    git(repo, "checkout", "-q", "-b", "feature/x")
    with pytest.raises(CheckFailed, match=r"check out production or development"):
        promote(ctx)
    assert ctx.ledger.pending() == [] and git(repo, "tag", "-l") == "v0.1.0"


def test_refused_when_ledger_and_tags_disagree(released):
    repo, ctx = released
    stage_ok(ctx)
    git(repo, "tag", "-a", "v0.1.5", "-m", "made by hand", "production")
    with pytest.raises(CheckFailed, match=r"v0.1.5 has no release-ledger entry"):
        promote(ctx)
    git(repo, "tag", "-d", "v0.1.5")
    assert promote(ctx)["tag"] == "v0.2.0"


def test_malformed_inputs(released):
    _, ctx = released
    with pytest.raises(InputError, match=r"candidate 'nosuchbranch'") as bad_ref:
        promote(ctx, candidate="nosuchbranch")
    assert bad_ref.value.parameter == "candidate"  # the CLI names --candidate
    with pytest.raises(InputError, match=r"'huge' is not a bump") as bad_bump:
        parse_bump("huge")
    assert bad_bump.value.parameter == "bump"
    assert parse_bump("MINOR") is Bump.MINOR and parse_bump(None) is None


def test_nothing_to_promote(released):
    _, ctx = released
    stage_ok(ctx)
    promote(ctx)
    with pytest.raises(CheckFailed, match=r"nothing to promote"):
        promote(ctx)


def test_first_release_over_an_untagged_production_branch(tmp_path):
    """production created by hand at development's commit: the first promotion tags it."""
    repo = make_repo(tmp_path)
    git(repo, "branch", "production")
    ctx = open_ctx(repo, tmp_path / "state")
    stage_ok(ctx)
    result = promote(ctx)
    assert result["tag"] == "v0.1.0" and result["manifest"]["bump"]["bump"] == "minor"
    assert result["steps"][0] == {"step": "merge", "status": "already done", "note": None}
    assert git(repo, "rev-parse", "v0.1.0^{commit}") == git(repo, "rev-parse", "production")
    assert git(repo, "rev-parse", "development") == git(repo, "rev-parse", "production")


def test_the_tag_step_is_idempotent_and_refuses_a_foreign_tag(released):
    """Shared by promote, hotfix finish and rollback: a re-run after a crash finds its own tag
    done; a tag of that name on another commit is never moved."""
    from ewspipe.release.git import GitFailed
    from ewspipe.release.steps import tag_step

    repo, ctx = released
    step = tag_step(ctx, "v9.9.9", {"version": "9.9.9"})
    assert not step.done()
    assert step.do() == "tagged v9.9.9"
    assert step.done()
    assert git(repo, "rev-parse", "v9.9.9^{commit}") == git(repo, "rev-parse", "production")
    git(repo, "tag", "v9.9.8", "development")
    with pytest.raises(GitFailed, match=r"tag v9\.9\.8 exists but points at .*git tag -d"):
        tag_step(ctx, "v9.9.8", {"version": "9.9.8"}).done()


def test_a_second_release_command_is_refused_while_one_runs(released, tmp_path, capsys):
    """Two promotions planned at once would both release the candidate (two tags, the second
    rewriting the first's CHANGELOG section): the release line takes one command at a time,
    and the second is refused with exit 1 before it reads anything."""
    import subprocess
    import sys

    from ewspipe.cli.main import main
    from ewspipe.flows.runner import StateLocked
    from ewspipe.release.steps import LOCK_FILE, release_lock

    repo, ctx = released
    stage_ok(ctx)
    before = (git(repo, "rev-parse", "production"), git(repo, "tag", "--list"))
    # held in this process, as another command would hold it
    with release_lock(ctx, "promote"), pytest.raises(
            StateLocked, match=r"release line of repo .*locked by another run"):
        promote(ctx)
    # held by another process: the CLI exits 1 and says why
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(repo / ".git" / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = main(["--config", str(repo / "ewspipe.toml"), "--state-dir",
                     str(tmp_path / "state"), "release", "promote", "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 1 and doc["exit_code"] == 1 and "locked by another run" in doc["error"]
    finally:
        holder.kill()
        holder.wait()
    assert (git(repo, "rev-parse", "production"), git(repo, "tag", "--list")) == before
    assert ctx.ledger.pending() == []
    assert promote(ctx)["tag"] == "v0.2.0"  # the lock of a dead holder is no lock
    with pytest.raises(CheckFailed, match="nothing to promote"):
        promote(ctx)  # and the next command, once the first has ended, has nothing to do


def test_two_promotions_at_once_release_once(released, tmp_path):
    """The race itself, as two operators would start it: exactly one release, one refusal."""
    import subprocess
    import sys

    repo, ctx = released
    stage_ok(ctx)
    args = [sys.executable, "-m", "ewspipe", "--config", str(repo / "ewspipe.toml"),
            "--state-dir", str(tmp_path / "state"), "release", "promote", "--json"]
    runs = [subprocess.Popen(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    done = [(p.wait(timeout=300), json.loads(p.stdout.read())) for p in runs if p.stdout]
    assert sorted(code for code, _ in done) == [0, 1], done
    refused = next(doc for code, doc in done if code == 1)
    assert "locked by another run" in refused["error"] or \
        "nothing to promote" in refused["error"], refused
    assert git(repo, "tag", "--list").split() == ["v0.1.0", "v0.2.0"]
    changelog = git(repo, "show", "production:CHANGELOG.md")
    assert "## [v0.2.0]" in changelog and "## [v0.1.0]" in changelog
    assert sorted(e["version"] for e in ctx.ledger.completed()) == ["0.1.0", "0.2.0"]
