"""Rollback: a new production commit with the earlier release's tree (history kept), a new
PATCH tag saying what was rolled back to what, and the published pointers moved back to the
earlier release's forecasts for the current data month (or how to regenerate them)."""

from __future__ import annotations

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.promote import promote
from ewspipe.release.rollback import rollback
from ewspipe.release.status import check
from ewspipe.store.published import PublishedPointers


def _publish(ctx, level, run, tag, month, publish_id, day):
    """What the monthly run's publish task records (flows.tasks.publish)."""
    pointers = PublishedPointers(ctx.settings.state_dir / "production" / "published",
                                 ctx.ledger.db, environment="production")
    return pointers.move({"publish_id": publish_id, "level": level, "target": "ged_sb",
                          "run": run, "primary": "small_chorus", "models": ["small_chorus"],
                          "published_at": f"2026-01-{day:02d}T00:00:00Z",
                          "last_month": month,
                          "release": {"tag": tag, "version": tag[1:], "commit": "x"}})


@pytest.fixture
def two_releases(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    _publish(ctx, "cm", "run-a", "v0.1.0", 520, "p1", 1)
    _publish(ctx, "pgm", "grid-a", "v0.1.0", 519, "p1", 1)
    commit_file(repo, "models/small_ridge.toml", (repo / "models" / "small_ridge.toml")
                .read_text().replace("seed = 7", "seed = 8"), "feat: reseed small_ridge")
    stage_ok(ctx)
    promote(ctx)
    _publish(ctx, "cm", "run-b", "v0.2.0", 520, "p2", 2)
    _publish(ctx, "pgm", "grid-b", "v0.2.0", 520, "p2", 2)
    git(repo, "checkout", "-q", "production")
    return repo, ctx


def test_rollback_restores_tree_and_published_forecasts(two_releases):
    repo, ctx = two_releases
    before = git(repo, "rev-parse", "production")
    result = rollback(ctx)
    assert (result["tag"], result["rolled_back"], result["restored"]) == \
        ("v0.2.1", "v0.2.0", "v0.1.0")
    # v0.1.0's tree, except CHANGELOG.md: production's history plus the rollback's section
    assert git(repo, "diff", "--name-only", "v0.1.0", "production") == "CHANGELOG.md"
    changelog = git(repo, "show", "production:CHANGELOG.md")
    assert changelog.index("## [v0.2.1]") < changelog.index("## [v0.2.0]") < \
        changelog.index("## [v0.1.0]")
    assert "Rolled back to v0.1.0 (was v0.2.0)." in changelog
    assert git(repo, "rev-parse", "production^") == before  # history kept, nothing rewritten
    assert git(repo, "rev-parse", "v0.2.1^{commit}") == git(repo, "rev-parse", "production")
    assert "seed = 7" in (repo / "models" / "small_ridge.toml").read_text()
    message = git(repo, "tag", "-l", "--format=%(contents)", "v0.2.1")
    assert message.startswith("Release v0.2.1 (rollback to v0.1.0)")
    assert '"rollback_of": "v0.2.0"' in message
    pointers = PublishedPointers(ctx.settings.state_dir / "production" / "published",
                                 ctx.ledger.db, environment="production")
    cm = pointers.current("cm", "ged_sb")
    assert cm["run"] == "run-a" and cm["rollback"]["restored"] == "v0.1.0"
    assert [p["run"] for p in pointers.history("cm", "ged_sb")] == ["run-a", "run-b", "run-a"]
    # pgm: v0.1.0 published only for month 519, the current month is 520
    assert pointers.current("pgm", "ged_sb")["run"] == "grid-b"
    assert "pgm/ged_sb (month 520)" in result["regenerate"]
    assert "ewspipe run --env production" in result["regenerate"]
    entry = ctx.ledger.releases()[0]
    assert (entry["version"], entry["kind"], entry["status"]) == ("0.2.1", "rollback",
                                                                  "completed")
    assert entry["manifest"]["rollback_to"] == "v0.1.0"
    # development does not get the rollback by itself: check says how to record it
    with pytest.raises(CheckFailed, match=r"(?s)v0.2.1.*git merge -s ours v0.2.1"):
        check(ctx)
    # the previous release of a rollback is the one before the restored release: none here
    with pytest.raises(CheckFailed, match=r"no release before v0.1.0"):
        rollback(ctx)
    forward = rollback(ctx, "v0.2.0")
    assert forward["tag"] == "v0.2.2"
    assert git(repo, "diff", "--name-only", "v0.2.0", "production") == "CHANGELOG.md"
    changelog = git(repo, "show", "production:CHANGELOG.md")
    assert [line.split("]")[0][4:] for line in changelog.splitlines()
            if line.startswith("## [")] == ["v0.2.2", "v0.2.1", "v0.2.0", "v0.1.0"]
    assert "Rolled back to v0.2.0 (was v0.2.1)." in changelog
    assert pointers.current("cm", "ged_sb")["run"] == "run-b"


def test_rollback_refusals_and_bad_versions(two_releases):
    repo, ctx = two_releases
    for bad, needle in (("2.x", "not a semantic version"), ("v9.9.9", "no release tag"),
                        ("v0.2.0", "current production release")):
        with pytest.raises(InputError, match=needle):
            rollback(ctx, bad)
    git(repo, "checkout", "-q", "development")
    with pytest.raises(CheckFailed, match=r"check out production"):
        rollback(ctx)
    git(repo, "checkout", "-q", "production")
    (repo / "ewspipe.toml").write_text("dirty = 1\n")
    with pytest.raises(CheckFailed, match=r"uncommitted"):
        rollback(ctx)
    assert git(repo, "tag", "-l") == "v0.1.0\nv0.2.0" and ctx.ledger.pending() == []
