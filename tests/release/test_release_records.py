"""The release records (issue 16, items 5, 7 and 8), each tried against the ways it could
break: the manifest ties a release to its engine, catalog and settings (ledger and tag
alike); sync, integrity and inference cannot be overridden and inference must have run; the
merged tree must be the staged tree; every override reaches the CHANGELOG; the CHANGELOG is
append-only across rollbacks; a commit and its revert cancel out; the bump sees what changed
between the release trees. Staging reports are inserted (the gates are tested elsewhere)."""

from __future__ import annotations

import hashlib
import json

import pytest
from release_repo import commit_file, git, make_repo, open_ctx, release_first, stage_ok
from staging_repo import copy_package

from ewspipe.errors import CheckFailed
from ewspipe.provenance import code_fingerprint
from ewspipe.release.hotfix import finish_hotfix, start_hotfix
from ewspipe.release.promote import promote
from ewspipe.release.rollback import rollback
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


def _tag_manifest(repo, tag):
    message = git(repo, "tag", "-l", "--format=%(contents)", tag)
    return json.loads(message.split("\n", 2)[2])


def _sections(repo, ref="production"):
    text = git(repo, "show", f"{ref}:CHANGELOG.md")
    return [line.split("]")[0][4:] for line in text.splitlines() if line.startswith("## [")]


def _section(repo, tag, ref="production"):
    text = git(repo, "show", f"{ref}:CHANGELOG.md")
    start = text.index(f"## [{tag}]")
    end = text.find("\n## [", start + 1)
    return text[start:] if end < 0 else text[start:end]


@pytest.fixture
def released(tmp_path):
    """v0.1.0 released from the light repository (models/, ensembles/, ewspipe.toml)."""
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    return repo, ctx


@pytest.fixture
def rel(released, cli):
    repo, _ = released

    def go(*args: str):
        return cli("--config", str(repo / "ewspipe.toml"), "release", *args)
    return go


# ---------------------------------------------------------------- item 7: the manifest


def test_light_repository_manifest_records_installed_engine_catalog_settings(released):
    repo, ctx = released
    [entry] = ctx.ledger.completed()
    for man in (entry["manifest"], _tag_manifest(repo, "v0.1.0")):
        engine = man["engine"]
        assert engine["source"] == "installed" and engine["fingerprint"] == code_fingerprint()
        assert engine["ewspipe"] and isinstance(engine["dependencies"], dict)
        assert man["lock_hash"] is None  # no lock file: the engine field ties it instead
        assert man["settings_sha256"] == hashlib.sha256(
            (repo / "ewspipe.toml").read_bytes()).hexdigest()
        catalog = man["catalog"]
        assert set(catalog) == {"small_tree", "small_ridge", "last_value", "grid_ridge",
                                "old_guess", "small_chorus", "grid_chorus"}
        assert catalog["small_chorus"]["kind"] == "ensemble"
        assert catalog["small_ridge"]["status"] == "deployed"
        assert len(catalog["small_ridge"]["config_hash"]) == 64


def test_repository_with_its_own_package_records_the_tree_engine(tmp_path):
    """source "tree": the fingerprint of the committed package; a code change is a PATCH
    reason, a MINOR version step of the package a MINOR bump; a rollback records the
    restored tree's engine."""
    repo = make_repo(tmp_path)
    package = copy_package(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "feat: carry the engine")
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    first = _tag_manifest(repo, "v0.1.0")["engine"]
    assert first["source"] == "tree" and first["fingerprint"] == code_fingerprint()
    assert ctx.ledger.completed()[0]["manifest"]["engine"] == first
    # a code change within the same version: PATCH, with the reason named
    commit_file(repo, "src/ewspipe/errors.py", (package / "errors.py").read_text()
                + "\n# touched\n", "chore: touch the engine")
    stage_ok(ctx)
    second = promote(ctx)
    assert second["tag"] == "v0.1.1"
    assert second["manifest"]["engine"]["fingerprint"] != first["fingerprint"]
    assert any(r.startswith("engine changed:") for r in second["manifest"]["bump"]["reasons"])
    # a new MAJOR.MINOR of the package: MINOR
    init = package / "__init__.py"
    old = first["ewspipe"]
    major, minor = old.split(".")[:2]
    new = f"{major}.{int(minor) + 1}.0"
    commit_file(repo, "src/ewspipe/__init__.py", init.read_text().replace(old, new),
                "chore: engine version")
    stage_ok(ctx)
    third = promote(ctx)
    assert third["tag"] == "v0.2.0" and third["manifest"]["engine"]["ewspipe"] == new
    assert f"engine: ewspipe {old} -> {new}" in third["manifest"]["bump"]["reasons"]
    git(repo, "checkout", "-q", "production")
    back = rollback(ctx, "v0.1.0")
    assert back["manifest"]["engine"] == first  # the engine of the restored tree
    assert _tag_manifest(repo, back["tag"])["engine"] == first


# ---------------------------------------------------------------- item 5: overrides


@pytest.mark.parametrize(("gate", "why"), [
    ("integrity", "production must be able to run what is released"),
    ("inference", "production must be able to run what is released"),
    ("sync", "the merged tree would not be the tree that was staged"),
])
def test_not_overridable_gates_are_bad_input(released, rel, gate, why):
    repo, ctx = released
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx, failed=(gate,))
    refs = git(repo, "for-each-ref")
    ledger = ctx.ledger.releases()
    res = rel("promote", "--allow", gate, "--reason", "we know better", "--json")
    assert res.code == 2, (res.out, res.err)
    error = res.json()["error"]
    assert error.startswith("option --allow: ") and f"the {gate} gate cannot be overridden" \
        in error and why in error
    plain = rel("promote", "--json")  # without the override: a failed check
    assert plain.code == 1 and gate in plain.json()["error"]
    assert "--allow" not in plain.json()["error"]  # no override is offered for it
    assert git(repo, "for-each-ref") == refs and ctx.ledger.releases() == ledger
    assert git(repo, "tag", "-l") == "v0.1.0"


def test_hotfix_refuses_a_not_overridable_override_before_staging(released, rel):
    repo, ctx = released
    start_hotfix(ctx, "quick")
    commit_file(repo, "docs/fix.md", "fix\n", "fix: quick")
    res = rel("hotfix", "finish", "--allow", "integrity", "--reason", "x", "--json")
    assert res.code == 2 and "integrity gate cannot be overridden" in res.json()["error"]
    assert ctx.ledger.staging_for(git(repo, "rev-parse", "HEAD")) is None  # nothing staged
    assert git(repo, "tag", "-l") == "v0.1.0" and ctx.ledger.pending() == []


@pytest.mark.parametrize("status", ["SKIP", "FAIL"])
def test_inference_must_have_run(released, rel, status):
    """A report whose inference gate is not PASS/WARN blocks promote (exit 1) and hotfix
    finish whatever --allow says."""
    from tests.flows.monthly_workspace import staging_report

    repo, ctx = released
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    report = staging_report(git(repo, "rev-parse", "development"),
                            git(repo, "rev-parse", "production"), failed=("performance",))
    for g in report["gates"]:
        if g["gate"] == "inference":
            g["status"], g["summary"] = status, "not run (test)"
    ctx.ledger.record_staging(report)
    res = rel("promote", "--allow", "performance", "--reason", "fine", "--json")
    assert res.code == 1, (res.out, res.err)
    assert "inference" in res.json()["error"]
    assert git(repo, "tag", "-l") == "v0.1.0" and ctx.ledger.pending() == []
    start_hotfix(ctx, "quick")
    commit_file(repo, "docs/fix.md", "fix\n", "fix: quick")
    report = staging_report(git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse",
                            "production"), ref="hotfix/quick")
    report["gates"] = [g for g in report["gates"] if g["gate"] != "inference"]  # missing
    ctx.ledger.record_staging(report)
    with pytest.raises(CheckFailed, match=r"inference gate .* is missing"):
        finish_hotfix(ctx)
    assert git(repo, "tag", "-l") == "v0.1.0"


def test_merged_tree_must_be_the_staged_tree(released):
    """A report that (wrongly) passes a candidate lacking a production commit: the merge
    would release a tree nobody staged, so promote refuses before any step."""
    repo, ctx = released
    git(repo, "checkout", "-q", "production")
    commit_file(repo, "docs/straight.md", "onto production\n", "fix: straight onto production")
    git(repo, "checkout", "-q", "development")
    commit_file(repo, "docs/a.md", "a\n", "feat: a")
    stage_ok(ctx)  # every gate PASS, sync included
    refs = git(repo, "for-each-ref")
    with pytest.raises(CheckFailed, match=r"would not be the tree that was staged"):
        promote(ctx)
    assert git(repo, "for-each-ref") == refs and ctx.ledger.pending() == []


def test_overrides_reach_ledger_tag_and_changelog(released):
    repo, ctx = released
    commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat: fresh_guess")
    stage_ok(ctx, failed=("performance", "forecast_diff"))
    result = promote(ctx, allow=["performance", "forecast_diff"], reason="data revision")
    expected = [{"gate": g, "status": "FAIL", "reason": "data revision",
                 "operator": "Release Tester"} for g in ("performance", "forecast_diff")]
    assert result["manifest"]["overrides"] == expected
    assert ctx.ledger.get("0.2.0")["manifest"]["overrides"] == expected
    assert _tag_manifest(repo, "v0.2.0")["overrides"] == expected
    section = _section(repo, "v0.2.0")
    assert "### Gate overrides" in section
    assert "- **performance** (FAIL): data revision (by Release Tester)" in section
    assert "- **forecast_diff** (FAIL): data revision" in section
    assert "Gate overrides" not in _section(repo, "v0.1.0")
    # a hotfix gets its section too, overrides included
    start_hotfix(ctx, "quick")
    commit_file(repo, "docs/fix.md", "fix\n", "fix: quick")
    stage_ok(ctx, "hotfix/quick", failed=("drift",))
    assert finish_hotfix(ctx, allow=["drift"], reason="known alarm")["tag"] == "v0.2.1"
    hotfix = _section(repo, "v0.2.1")
    assert "Hotfix `quick`." in hotfix and "- quick (" in hotfix
    assert "- **drift** (FAIL): known alarm" in hotfix
    assert _sections(repo) == ["v0.2.1", "v0.2.0", "v0.1.0"]


# ---------------------------------------------------------------- item 8: CHANGELOG, bump


@pytest.mark.parametrize("record", ["ours", "merge"])
def test_rollback_then_promote_keeps_every_section(released, record):
    repo, ctx = released
    commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat: fresh_guess")
    stage_ok(ctx)
    promote(ctx)
    git(repo, "checkout", "-q", "production")
    rollback(ctx)  # v0.2.1 restores v0.1.0
    assert _sections(repo) == ["v0.2.1", "v0.2.0", "v0.1.0"]
    assert "Rolled back to v0.1.0 (was v0.2.0)." in _section(repo, "v0.2.1")
    git(repo, "checkout", "-q", "development")
    if record == "ours":  # development keeps its work (and its CHANGELOG.md copy)
        git(repo, "merge", "-q", "-s", "ours", "-m", "record the rollback", "v0.2.1")
    else:
        git(repo, "merge", "-q", "-m", "take the rollback", "v0.2.1")
    commit_file(repo, "docs/next.md", "next\n", "fix: next")
    stage_ok(ctx)
    result = promote(ctx)
    assert _sections(repo) == [result["tag"], "v0.2.1", "v0.2.0", "v0.1.0"]
    text = git(repo, "show", "production:CHANGELOG.md")
    assert text.count("Rolled back to v0.1.0") == 1 and text.count("fresh_guess") == 1
    assert _sections(repo, "development") == _sections(repo)  # back-ported as well
    assert git(repo, "diff", "--name-only", "development", "production") == ""


@pytest.mark.parametrize("style", ["git", "conventional"])
def test_a_feature_and_its_revert_cancel_out(released, style):
    repo, ctx = released
    feat = commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat: fresh_guess")
    if style == "git":
        git(repo, "revert", "--no-edit", feat)  # Revert "feat: fresh_guess"
    else:
        git(repo, "rm", "-q", "models/fresh_guess.toml")
        git(repo, "commit", "-q", "-m", "revert: fresh_guess",
            "-m", f"This reverts commit {feat}.")
    assert git(repo, "diff", "--name-only", "production", "development") == ""
    stage_ok(ctx)
    result = promote(ctx)
    assert result["tag"] == "v0.1.1"
    bump = result["manifest"]["bump"]
    assert bump["bump"] == "patch" and not any("fresh_guess" in r for r in bump["reasons"])
    assert [p["sha"] for p in bump["cancelled"]] == [feat]
    section = _section(repo, "v0.1.1")
    assert "fresh_guess" not in section and "1 change reverted" in section
    # v0.1.1 differs from v0.1.0 only in CHANGELOG.md: nothing a rollback could restore
    git(repo, "checkout", "-q", "production")
    with pytest.raises(CheckFailed, match=r"already has the tree of v0.1.0"):
        rollback(ctx)


def test_a_revert_of_an_earlier_release_stays_listed(released):
    repo, ctx = released
    feat = commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat: fresh_guess")
    stage_ok(ctx)
    promote(ctx)
    git(repo, "revert", "--no-edit", feat)
    commit_file(repo, "docs/fix.md", "x\n", "fix: a fix")
    stage_ok(ctx)
    result = promote(ctx)
    section = _section(repo, result["tag"])
    assert "### Reverts" in section and 'Revert "feat: fresh_guess"' in section
    assert "### Fixes" in section and result["manifest"]["bump"]["cancelled"] == []


def test_hyperparameter_change_of_a_deployed_model_is_minor_despite_a_fix(released):
    repo, ctx = released
    ridge = repo / "models" / "small_ridge.toml"
    commit_file(repo, "models/small_ridge.toml", ridge.read_text().replace("seed = 7",
                "seed = 8"), "fix: reseed small_ridge")
    stage_ok(ctx)
    result = promote(ctx)
    assert result["tag"] == "v0.2.0"
    reasons = result["manifest"]["bump"]["reasons"]
    assert any(r.startswith("deployed model small_ridge: definition changed") for r in reasons)
    # a settings change outside [partitions] is MINOR as well, with its own reason
    cfg = repo / "ewspipe.toml"
    commit_file(repo, "ewspipe.toml", cfg.read_text() + "\n[release]\ntolerance = 0.02\n",
                "fix: tolerance")
    stage_ok(ctx)
    again = promote(ctx)
    assert again["tag"] == "v0.3.0"
    assert "ewspipe.toml changed outside [partitions]" in again["manifest"]["bump"]["reasons"]
    assert Bump(again["manifest"]["bump"]["bump"]) is Bump.MINOR
