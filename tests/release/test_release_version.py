"""Semantic versions, conventional commits, the automatic bump rule and CHANGELOG.md."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from release_repo import commit_file, git, make_repo

from ewspipe.errors import InputError
from ewspipe.release.changelog import has_section, insert_section, render_section
from ewspipe.release.git import Commit, Git
from ewspipe.release.version import Bump, Version, cancel_reverts, decide_bump, parse_commit

versions = st.builds(Version, st.integers(0, 10_000), st.integers(0, 10_000),
                     st.integers(0, 10_000))


@given(versions)
def test_version_round_trip_and_bumps_increase(v):
    assert Version.parse(v.tag("v")) == v == Version.parse(str(v))
    for kind in Bump:
        assert v.bump(kind) > v
    assert v.bump(Bump.MAJOR) > v.bump(Bump.MINOR) > v.bump(Bump.PATCH)


def test_bump_resets_lower_parts():
    v = Version(1, 4, 2)
    assert (str(v.bump(Bump.MAJOR)), str(v.bump(Bump.MINOR)), str(v.bump(Bump.PATCH))) == \
        ("2.0.0", "1.5.0", "1.4.3")


@pytest.mark.parametrize("text", ["1.2", "v1.2.3.4", "01.2.3", "v1.2.3-rc1", "", "vx.y.z",
                                  "1.2.-3"])
def test_malformed_versions_are_refused(text):
    with pytest.raises(InputError, match=r"not a semantic version"):
        Version.parse(text, what="VERSION")


@pytest.mark.parametrize(("subject", "body", "expected"), [
    ("feat: new model", "", ("feat", None, False)),
    ("fix(models): guard NaN", "", ("fix", "models", False)),
    ("feat!: drop pgm", "", ("feat", None, True)),
    ("refactor: x", "BREAKING CHANGE: schema", ("refactor", None, True)),
    ("Update things", "", ("other", None, False)),
])
def test_conventional_commits(subject, body, expected):
    cc = parse_commit(Commit("a" * 40, subject, body, "me"))
    assert (cc.type, cc.scope, cc.breaking) == expected


def _decide(repo):
    g = Git(repo)
    commits = g.commits("production..development")
    return decide_bump(g, g.resolve("production"), g.resolve("development"), commits)


@pytest.fixture
def repo(tmp_path):
    repo = make_repo(tmp_path)
    git(repo, "branch", "production")
    return repo


def test_patch_for_a_fix(repo):
    commit_file(repo, "docs/notes.md", "x\n", "fix: typo in notes")
    assert _decide(repo).bump is Bump.PATCH


def test_minor_for_an_added_model_or_a_feature(repo):
    text = (repo / "models" / "last_value.toml").read_text().replace(
        'name = "last_value"', 'name = "fresh_guess"')
    commit_file(repo, "models/fresh_guess.toml", text, "chore: one more model")
    decision = _decide(repo)
    assert decision.bump is Bump.MINOR and decision.changed["added"] == ["fresh_guess"]
    assert any("fresh_guess added" in r for r in decision.reasons)


def test_minor_for_a_status_change_of_a_shadow_model(repo):
    path = repo / "models" / "last_value.toml"
    commit_file(repo, "models/last_value.toml", path.read_text().replace(
        'status = "shadow"', 'status = "deployed"'), "chore: deploy last_value")
    assert _decide(repo).bump is Bump.MINOR


def test_major_for_a_removed_deployed_model(repo):
    git(repo, "rm", "-q", "models/small_tree.toml")
    git(repo, "commit", "-q", "-m", "chore: drop small_tree")
    decision = _decide(repo)
    assert decision.bump is Bump.MAJOR
    assert "deployed model small_tree removed" in decision.reasons


def test_major_for_a_changed_target_or_partitions(repo):
    path = repo / "models" / "small_ridge.toml"
    commit_file(repo, "models/small_ridge.toml", path.read_text().replace(
        'target = "ged_sb"', 'target = "ged_ns"'), "fix: target")
    assert _decide(repo).bump is Bump.MAJOR
    git(repo, "checkout", "-q", "production")
    git(repo, "branch", "-q", "-f", "development", "production")
    git(repo, "checkout", "-q", "development")
    cfg = repo / "ewspipe.toml"
    commit_file(repo, "ewspipe.toml", cfg.read_text() + "\n[partitions]\ncalibration_train = "
                "[121, 396]\n", "chore: partitions")
    assert any("partitions" in r for r in _decide(repo).reasons)


def test_major_for_a_breaking_commit(repo):
    commit_file(repo, "docs/x.md", "x\n", "feat!: new output layout")
    assert _decide(repo).bump is Bump.MAJOR


def test_changelog_sections_newest_on_top():
    commits = [Commit("b" * 40, "fix(qa): guard", "", "me"),
               Commit("a" * 40, "feat: model", "", "me"),
               Commit("c" * 40, "chore(release): v0.1.0", "", "me"),
               Commit("d" * 40, "tidy up", "", "me")]
    first = insert_section(None, render_section("v0.1.0", "2026-01-01", commits))
    assert first.startswith("# Changelog")
    assert "### Features\n\n- model (aaaaaaa)" in first
    assert "### Fixes\n\n- **qa**: guard (bbbbbbb)" in first
    assert "### Other changes\n\n- tidy up" in first and "chore(release)" not in first
    second = insert_section(first, render_section("v0.2.0", "2026-02-01", commits[:1]))
    assert second.index("## [v0.2.0]") < second.index("## [v0.1.0]")
    assert has_section(second, "v0.1.0") and not has_section(second, "v0.3.0")


def _c(sha: str, subject: str, body: str = "") -> Commit:
    return Commit(sha * 40, subject, body, "me")


def test_reverted_pairs_cancel_and_a_revert_of_a_revert_keeps_the_change():
    feat = _c("a", "feat: model")
    revert = _c("b", 'Revert "feat: model"', f"This reverts commit {'a' * 40}.")
    fix = _c("c", "fix: guard")
    kept, pairs = cancel_reverts([revert, fix, feat])
    assert kept == [fix] and pairs == [{"sha": feat.sha, "subject": "feat: model",
                                        "reverted_by": revert.sha}]
    reapply = _c("d", 'Revert "Revert "feat: model""', f"This reverts commit {'b' * 7}.")
    kept, _ = cancel_reverts([reapply, revert, feat])
    assert kept == [feat]  # net effect: the feature ships
    earlier = _c("e", "revert: model", f"This reverts commit {'9' * 40}.")  # released before
    assert cancel_reverts([earlier])[0] == [earlier]
    section = render_section("v1.0.1", "2026-01-01", [earlier, revert, fix, feat])
    assert "### Reverts\n\n- model (eeeeeee)" in section and "(aaaaaaa)" not in section


def test_bump_reasons_name_every_cause_and_engine_steps(repo):
    g = Git(repo)
    engine = {"ewspipe": "0.4.2", "fingerprint": "f1", "dependencies": {"numpy": "2.0"}}
    same = decide_bump(g, g.resolve("production"), g.resolve("development"), [],
                       engines=(engine, dict(engine)))
    assert same.bump is Bump.PATCH and same.reasons == ["no feature, model or breaking change"]
    code = decide_bump(g, g.resolve("production"), g.resolve("development"), [],
                       engines=(engine, {**engine, "fingerprint": "f2",
                                         "dependencies": {"numpy": "2.1"}}))
    assert code.bump is Bump.PATCH
    assert [r.split(":")[0] for r in code.reasons] == ["engine changed",
                                                       "engine dependencies changed"]
    minor = decide_bump(g, g.resolve("production"), g.resolve("development"), [],
                        engines=(engine, {**engine, "ewspipe": "0.5.0"}))
    assert minor.bump is Bump.MINOR and minor.reasons == ["engine: ewspipe 0.4.2 -> 0.5.0"]
    # a shadow model's definition: a PATCH reason; the deployed ones: MINOR, both listed
    for name, old, new in (("last_value", 'features = []', 'features = ["ged_sb"]'),
                           ("small_tree", "n_estimators = 10", "n_estimators = 11")):
        path = repo / "models" / f"{name}.toml"
        commit_file(repo, f"models/{name}.toml", path.read_text().replace(old, new),
                    f"fix: {name}")
    decision = _decide(repo)
    assert decision.bump is Bump.MINOR
    assert decision.reasons[0].startswith("deployed model small_tree: definition changed")
    assert "shadow model last_value: definition changed" in decision.reasons
