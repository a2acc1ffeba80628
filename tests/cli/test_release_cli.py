"""`ewspipe release ...` end to end on scripted repositories: status, check, log, promote,
hotfix, rollback through the CLI with --json; exit codes 0 / 1 / 2; malformed input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "release" / "release_repo.py"
_spec = importlib.util.spec_from_file_location("release_repo_cli", _path)
assert _spec is not None and _spec.loader is not None
rr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rr)

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
def repo(tmp_path, state_dir):
    repo = rr.make_repo(tmp_path)
    rr.release_first(rr.open_ctx(repo, state_dir))
    rr.commit_file(repo, "models/fresh_guess.toml", NEW_MODEL, "feat: fresh_guess")
    return repo


@pytest.fixture
def ctx(repo, state_dir):
    return rr.open_ctx(repo, state_dir)


@pytest.fixture
def rel(repo, cli):
    def go(*args: str):
        return cli("--config", str(repo / "ewspipe.toml"), "release", *args)
    return go


def test_status_check_log(rel, ctx):
    rr.stage_ok(ctx)
    res = rel("status", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["production"]["tag"] == "v0.1.0" and doc["production"]["at_tag"]
    assert doc["development"]["ahead"] == 1 and doc["development"]["behind"] == 0
    assert [c["subject"] for c in doc["unreleased"]] == ["feat: fresh_guess"]
    assert doc["changed"]["models"] == ["fresh_guess"]
    assert doc["last_staging"]["passed"] and doc["last_staging"]["is_development_head"]
    assert doc["problems"] == [] and doc["pending_backports"] == []
    text = rel("status")
    assert "production: v0.1.0" in text.out and "fresh_guess" in text.out
    assert rel("check", "--json").json()["passed"]
    log = rel("log", "--json").json()["releases"]
    assert [(e["version"], e["kind"], e["status"]) for e in log] == [
        ("0.1.0", "promote", "completed")]
    assert "0.1.0" in rel("log").out


def test_promote_through_the_cli(rel, ctx, repo):
    res = rel("promote", "--json")
    assert res.code == 1 and "no staging report" in res.json()["error"]
    rr.stage_ok(ctx, failed=("forecast_diff",))
    refused = rel("promote")
    assert refused.code == 1 and "forecast_diff" in refused.err
    ok = rel("promote", "--allow", "forecast_diff", "--reason", "expected shift", "--json")
    assert ok.code == 0, ok.err
    doc = ok.json()
    assert doc["tag"] == "v0.2.0" and doc["manifest"]["bump"]["bump"] == "minor"
    assert doc["manifest"]["overrides"][0]["reason"] == "expected shift"
    assert [s["step"] for s in doc["steps"]] == ["merge", "changelog", "tag", "aliases",
                                                 "backport"]
    log = rel("log")
    assert log.out.splitlines()[0].startswith("0.2.0") and "expected shift" in log.out
    assert rr.git(repo, "describe", "--exact-match", "production") == "v0.2.0"


@pytest.mark.parametrize(("args", "needle"), [
    (("promote", "--bump", "huge"), "--bump"),
    (("promote", "--candidate", "nosuchbranch"), "nosuchbranch"),
    (("promote", "--allow", "speed", "--reason", "x"), "not a gate"),
    (("rollback", "1.x"), "not a semantic version"),
    (("rollback", "v7.0.0"), "no release tag"),
    (("hotfix", "start", "Bad Name"), "hotfix name"),
    (("stage", "--skip-tests", " "), "--skip-tests"),
    (("stage", "--candidate", "nosuchbranch"), "nosuchbranch"),
    (("stage", "--snapshot", " "), "names no snapshot"),
    (("stage", "--snapshot", "cm-ffffffff", "--snapshot", "pgm-0"), "cm-ffffffff"),
])
def test_bad_input_exits_2(rel, ctx, repo, args, needle):
    rr.stage_ok(ctx)
    rr.git(repo, "checkout", "-q", "production")
    res = rel(*args, "--json")
    assert res.code == 2, (res.out, res.err)
    assert needle in res.json()["error"]


def test_not_a_repository_exits_2(cli, tmp_path):
    (tmp_path / "plain").mkdir()
    res = cli("release", "status", "--repo", str(tmp_path / "plain"), "--json")
    assert res.code == 2 and "not inside a git repository" in res.json()["error"]


def test_hotfix_conflict_then_check_fails(rel, ctx, repo):
    rr.commit_file(repo, "docs/shared.md", "dev\n", "docs: dev side")
    start = rel("hotfix", "start", "shared-doc", "--json")
    assert start.code == 0, start.err
    assert start.json()["branch"] == "hotfix/shared-doc"
    rr.commit_file(repo, "docs/shared.md", "fix\n", "fix: shared doc")
    rr.stage_ok(ctx, "hotfix/shared-doc")  # a passing report for the exact commit: not re-staged
    res = rel("hotfix", "finish")
    assert res.code == 0, res.err
    assert "BACK-PORT PENDING: conflicts in docs/shared.md" in res.out
    check = rel("check", "--json")
    assert check.code == 1 and "backport/v0.1.1" in check.json()["error"]
    status = rel("status", "--json").json()
    assert status["pending_backports"][0]["conflicts"] == ["docs/shared.md"]
    assert status["production"]["tag"] == "v0.1.1"


def test_rollback_through_the_cli_and_repo_option(cli, ctx, repo, tmp_path):
    rr.stage_ok(ctx)
    cfg = str(repo / "ewspipe.toml")
    assert cli("--config", cfg, "release", "promote").code == 0
    rr.git(repo, "checkout", "-q", "production")
    # --repo names the repository when the settings file is elsewhere (or built in)
    res = cli("--config", cfg, "release", "rollback", "--repo", str(repo), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert (doc["tag"], doc["restored"], doc["rolled_back"]) == ("v0.2.1", "v0.1.0", "v0.2.0")
    assert doc["regenerate"] is None  # nothing was published yet, nothing to move
    assert not (repo / "models" / "fresh_guess.toml").exists()
    again = cli("--config", cfg, "release", "rollback")
    assert again.code == 1 and "no release before v0.1.0" in again.err


def test_rollback_moves_published_forecasts_back(cli, ctx, repo, state_dir):
    """Real production runs: v0.1.0 publishes, v0.2.0 (a changed deployed model) publishes,
    the rollback restores v0.1.0's tree and puts its forecasts back in front of users."""
    cfg = str(repo / "ewspipe.toml")
    rr.git(repo, "checkout", "-q", "production")
    first = cli("--config", cfg, "run", "--env", "production", "--quiet", "--json")
    assert first.code == 0, first.err
    runs_v1 = {p["level"]: p["run"] for p in first.json()["outputs"]["published"]}
    rr.git(repo, "checkout", "-q", "development")
    ridge = repo / "models" / "small_ridge.toml"
    rr.commit_file(repo, "models/small_ridge.toml", ridge.read_text().replace(
        "seed = 7", "seed = 8").replace("log_target = true", "log_target = false"),
        "fix: small_ridge on raw counts")
    rr.stage_ok(ctx)
    assert cli("--config", cfg, "release", "promote").code == 0
    rr.git(repo, "checkout", "-q", "production")
    second = cli("--config", cfg, "run", "--env", "production", "--quiet", "--json").json()
    runs_v2 = {p["level"]: p["run"] for p in second["outputs"]["published"]}
    assert runs_v2["cm"] != runs_v1["cm"]
    assert {p["release"]["tag"] for p in second["outputs"]["published"]} == {"v0.2.0"}
    res = cli("--config", cfg, "release", "rollback", "--json")
    assert res.code == 0, res.err
    assert res.json()["regenerate"] is None
    assert "log_target = true" in ridge.read_text()
    for level in ("cm", "pgm"):
        pub = cli("--config", cfg, "forecasts", "published", "--level", level,
                  "--env", "production", "--json").json()
        assert pub["current"]["run"] == runs_v1[level]
        assert pub["current"]["rollback"]["restored"] == "v0.1.0"
    # production is a clean release again: it may publish (and reuses v0.1.0's work)
    third = cli("--config", cfg, "run", "--env", "production", "--quiet", "--json")
    assert third.code == 0, third.err
    assert {p["release"]["tag"] for p in third.json()["outputs"]["published"]} == {"v0.2.1"}


def test_stage_then_promote_end_to_end(cli, tmp_path, state_dir):
    """The real gates (ewspipe.release.staging) feed the ledger, promote reads that report,
    and the release may publish. Whatever the gates conclude on the demo world, a failed
    gate blocks the promotion until it is overridden with a recorded reason."""
    repo = rr.make_repo(tmp_path)
    cfg = str(repo / "ewspipe.toml")
    demo = cli("--config", cfg, "data", "demo", "--json")
    assert demo.code == 0
    ids = {lvl: demo.json()[lvl]["snapshot"] for lvl in ("cm", "pgm")}
    twice = cli("--config", cfg, "release", "stage", "--snapshot", ids["cm"], "--snapshot",
                ids["cm"][:8], "--json")  # one per level: refused before any work
    assert twice.code == 2 and "two snapshots given for level cm" in twice.json()["error"]
    staged = cli("--config", cfg, "release", "stage", "--skip-tests", "no suite here",
                 "--snapshot", ids["cm"], "--snapshot", ids["pgm"], "--json")  # repeatable
    assert staged.code in (0, 1), staged.err
    report = staged.json()
    head = rr.git(repo, "rev-parse", "development")
    assert report["candidate_commit"] == head and report["report_id"]
    assert [g["gate"] for g in report["gates"]] == ["sync", "integrity", "tests", "inference",
                                                   "drift", "performance", "forecast_diff"]
    assert staged.code == (0 if report["passed"] else 1)
    assert report["snapshots"] == ids
    assert any(line.startswith("  ... ") for line in staged.err.splitlines())  # progress
    last = cli("--config", cfg, "release", "status", "--json").json()["last_staging"]
    assert last["candidate_commit"] == head and last["passed"] == report["passed"]
    allow: list[str] = []
    if not report["passed"]:
        refused = cli("--config", cfg, "release", "promote", "--json")
        assert refused.code == 1
        assert all(g in refused.json()["error"] for g in report["failed_gates"])
        for gate in report["failed_gates"]:
            allow += ["--allow", gate]
        allow += ["--reason", "demo world, accepted in this test"]
    res = cli("--config", cfg, "release", "promote", *allow, "-q", "--json")
    assert res.code == 0, res.err
    assert "  ... " not in res.err  # --quiet: no progress
    man = res.json()["manifest"]
    assert res.json()["tag"] == "v0.1.0" and man["bump"]["bump"] == "minor"
    assert man["staging_report"] == report["report_id"]
    assert man["snapshots"] == report["snapshots"] and len(man["gates"]) == 7
    assert [o["gate"] for o in man["overrides"]] == report["failed_gates"]
    rr.git(repo, "checkout", "-q", "production")
    run = cli("--config", cfg, "run", "--env", "production", "--quiet", "--json")
    assert run.code == 0, run.err
    assert {p["release"]["tag"] for p in run.json()["outputs"]["published"]} == {"v0.1.0"}
