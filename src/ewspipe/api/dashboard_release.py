"""Release status for the dashboard: read-only git facts about the workspace repository, the
release ledger (releases, last staging report) and, when both exist, what ``ewspipe release
status`` reports (unreleased commits, pending back-ports, tag/ledger problems).

Nothing here writes: the ledger's database is opened only when it is already there, and git
is asked questions only (rev-parse, tag, rev-list, status, merge-tree in memory).
"""

from __future__ import annotations

from typing import Any

from ewspipe.errors import EwspipeError
from ewspipe.release.context import ReleaseContext, repository_path
from ewspipe.release.git import Git
from ewspipe.release.ledger import Ledger
from ewspipe.release.status import status
from ewspipe.release.version import Version
from ewspipe.settings import Settings
from ewspipe.store.statedb import open_state_db_for_reading

__all__ = ["release_status"]

NO_REPO = ("the workspace folder is not inside a git repository, so the release status is "
           "unknown (`ewspipe release` works on the workspace's git repository)")


def _git_facts(settings: Settings, git: Git) -> dict[str, Any]:
    rel = settings.release
    prod, dev = rel.production_branch, rel.development_branch
    prod_sha, dev_sha = git.rev(prod), git.rev(dev)
    versions = []
    if prod_sha is not None:
        for tag in git.tags(f"{rel.tag_prefix}*"):
            version = Version.maybe(tag, prefix=rel.tag_prefix)
            if version is not None and git.is_ancestor(tag, prod_sha):
                versions.append((version, tag))
    ahead = behind = None
    if prod_sha and dev_sha:
        behind, ahead = git.ahead_behind(prod, dev)  # (only in production, only in development)
    missing = [b for b, sha in ((prod, prod_sha), (dev, dev_sha)) if sha is None]
    return {
        "available": True,
        "production": {"branch": prod, "commit": prod_sha,
                       "version": max(versions)[1] if versions else None},
        "development": {"branch": dev, "commit": dev_sha, "ahead": ahead, "behind": behind},
        "current_branch": git.current_branch(), "dirty_files": len(git.dirty_files()),
        "note": (f"branch {', '.join(missing)} does not exist yet; `ewspipe release` creates "
                 "the branch model") if missing else None,
    }


def _ledger_db(settings: Settings) -> Any:
    """The production state database holding the ledger, or None when it does not exist."""
    prod = settings.layout.env(settings.run.production_environment)
    return open_state_db_for_reading(settings.run.state_url, prod.root)


def _ledger(ledger: Ledger | None) -> dict[str, Any]:
    if ledger is None:
        return {"available": False, "releases": [], "last_staging": None,
                "note": "no release ledger yet: `ewspipe release stage` writes the first "
                        "staging report"}
    keep = ("version", "kind", "status", "created_at", "completed_at")
    releases = [{k: e.get(k) for k in keep} for e in ledger.releases()[:10]]
    staging = ledger.last_staging()
    last = None
    if staging is not None:
        last = {k: staging.get(k) for k in ("report_id", "candidate_commit", "candidate_ref",
                                           "production_commit", "passed", "failed_gates",
                                           "started_at", "finished_at", "recorded_at")}
        last["gates"] = [{k: g.get(k) for k in ("gate", "status", "summary")}
                         for g in staging.get("gates") or []]
    return {"available": True, "releases": releases, "last_staging": last,
            "note": None if releases or last else "the ledger holds no release or staging "
                                                  "report yet"}


def _details(settings: Settings, git: Git, ledger: Ledger) -> dict[str, Any]:
    """The parts of ``ewspipe release status`` the page shows."""
    try:
        st = status(ReleaseContext(settings, git, ledger))
    except EwspipeError as exc:
        return {"error": str(exc)}
    staging = st.get("last_staging") or {}
    return {
        "unreleased": [{"sha": c["sha"][:7], "subject": c["subject"]}
                       for c in st["unreleased"][:10]],
        "unreleased_count": len(st["unreleased"]),
        "production_at_tag": st["production"]["at_tag"],
        "staging_is_development_head": staging.get("is_development_head"),
        "pending_backports": [{"tag": p["tag"], "how": p["how"]}
                              for p in st["pending_backports"]],
        "pending_operations": st["pending_operations"],
        "hotfix_branches": st["hotfix_branches"],
        "problems": st["problems"],
    }


def release_status(settings: Settings) -> dict[str, Any]:
    """Production version, development ahead/behind, ledger, last staging report."""
    db = _ledger_db(settings)
    ledger = Ledger(db) if db is not None else None
    try:
        git = Git(repository_path(settings))
    except EwspipeError:
        return {"git": {"available": False, "note": NO_REPO}, "ledger": _ledger(ledger),
                "details": None}
    facts = _git_facts(settings, git)
    details = None
    if ledger is not None and facts["development"]["commit"] is not None:
        details = _details(settings, git, ledger)
    return {"git": facts, "ledger": _ledger(ledger), "details": details}
