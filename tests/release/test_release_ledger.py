"""The release ledger and staging reports in the state database (SQLite and PostgreSQL),
and the cross-check of ledger against git tags."""

from __future__ import annotations

import pytest
from release_repo import git, make_repo, open_ctx, release_first
from tests.flows.monthly_workspace import staging_report

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.ledger import Ledger


@pytest.fixture
def ledger(state_db):
    """The ledger on SQLite and PostgreSQL (tests/conftest.py ``state_db``)."""
    return Ledger(state_db)

def test_entries_pending_then_completed_newest_first(ledger):
    ledger.begin("0.1.0", "promote", commits=["a" * 40], manifest={"x": 1}, plan={"tag": "v"})
    again = ledger.begin("0.1.0", "promote", commits=[], manifest={"x": 2}, plan={})
    assert again["plan"] == {"tag": "v"} and again["manifest"] == {"x": 1}  # kept as it was
    assert [e["version"] for e in ledger.pending()] == ["0.1.0"]
    ledger.complete("0.1.0", {"x": 3})
    ledger.begin("0.1.1", "hotfix", commits=[], manifest={}, plan={})
    entries = ledger.releases()
    assert [(e["version"], e["status"]) for e in entries] == [("0.1.1", "pending"),
                                                              ("0.1.0", "completed")]
    assert entries[1]["manifest"] == {"x": 3} and entries[1]["completed_at"]
    assert entries[1]["commits"] == ["a" * 40]
    assert [e["version"] for e in ledger.completed()] == ["0.1.0"]


def test_unknown_kind_is_refused(ledger):
    with pytest.raises(InputError, match=r"ledger kind"):
        ledger.begin("1.0.0", "deploy", commits=[], manifest={}, plan={})


def test_staging_reports_by_exact_commit(ledger):
    a, b = "a" * 40, "b" * 40
    ledger.record_staging(staging_report(a, failed=("drift",)))
    ledger.record_staging(staging_report(a))
    ledger.record_staging(staging_report(b, failed=("performance",)))
    newest_a = ledger.staging_for(a)
    assert newest_a is not None and newest_a["passed"] and newest_a["report_id"]
    assert ledger.staging_for("c" * 40) is None
    last = ledger.last_staging()
    assert last is not None and last["candidate_commit"] == b and not last["passed"]
    with pytest.raises(InputError, match=r"candidate_commit"):
        ledger.record_staging({"gates": []})


def test_tag_without_ledger_entry_is_refused_with_repair(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    git(repo, "tag", "-a", "v0.2.0", "-m", "by hand")
    assert any("v0.2.0 has no release-ledger entry" in p for p in ctx.problems())
    with pytest.raises(CheckFailed, match=r"git tag -d v0.2.0"):
        ctx.require_consistent()


def test_completed_entry_without_tag_is_refused_with_repair(tmp_path):
    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    release_commit = git(repo, "rev-parse", "v0.1.0^{commit}")
    git(repo, "tag", "-d", "v0.1.0")
    with pytest.raises(CheckFailed, match=f"git tag -a v0.1.0 {release_commit}"):
        ctx.require_consistent()
