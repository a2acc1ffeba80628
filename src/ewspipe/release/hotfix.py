"""``ewspipe release hotfix start NAME`` and ``hotfix finish``.

``start`` branches ``hotfix/NAME`` from the production release tag. ``finish`` (on that
branch) stages the hotfix with the same gates as a promotion (a passing stored report for the
exact commit is reused), merges it into production as a PATCH release (MINOR or MAJOR when
promote's automatic rule says so: a changed deployed configuration, a breaking change) and
back-ports the release into development; when that merge would conflict, development is left
untouched and ``backport/vX.Y.Z`` is created at the release with the files to resolve.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.changelog import is_release_bookkeeping, render_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.git import Commit
from ewspipe.release.integrate import deployed_names, integrate, require_staged
from ewspipe.release.ledger import now_iso
from ewspipe.release.manifest import build_manifest
from ewspipe.release.promote import next_version
from ewspipe.release.steps import Operation, release_lock

__all__ = ["HOTFIX_PREFIX", "finish_hotfix", "start_hotfix"]

HOTFIX_PREFIX = "hotfix/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

Stager = Callable[[str], dict[str, Any]]  # candidate sha -> StagingReport.to_dict()


def start_hotfix(ctx: ReleaseContext, name: str) -> dict[str, Any]:
    """Create and check out ``hotfix/NAME`` at the production release tag."""
    if not _NAME.match(name):
        raise InputError(f"hotfix name {name!r}: use lower-case letters, digits, '.', '_' or "
                         "'-' (e.g. fix-nan-guard), at most 63 characters")
    with release_lock(ctx, "start a hotfix"):
        return _start(ctx, name)


def _start(ctx: ReleaseContext, name: str) -> dict[str, Any]:
    git = ctx.git
    git.require_clean("start a hotfix")
    ctx.require_consistent()
    version = ctx.production_version()
    if version is None:
        raise CheckFailed(f"no release on {ctx.prod} yet: a hotfix starts from a production "
                          "release tag; promote a release first (`ewspipe release promote`)")
    tag = ctx.tag(version)
    if git.resolve(tag) != git.resolve(ctx.prod):
        raise CheckFailed(f"{ctx.prod} ({git.resolve(ctx.prod)[:12]}) is not at its release "
                          f"tag {tag}; finish or repair the pending operation first "
                          "(`ewspipe release status`)")
    branch = f"{HOTFIX_PREFIX}{name}"
    if git.branch_exists(branch):
        raise InputError(f"branch {branch} already exists; pick another name or delete it "
                         f"(`git branch -d {branch}`)")
    git.create_branch(branch, tag)
    git.checkout(branch)
    return {"command": "hotfix start", "branch": branch, "from": tag,
            "commit": git.resolve(tag),
            "next": f"commit the fix on {branch}, then `ewspipe release hotfix finish`"}


def _needs_staging(report: dict[str, Any] | None, production: str, allow: list[str]) -> bool:
    """Stage unless a stored report for the exact commit, made against the current
    production, fails no gate that ``allow`` does not cover and saw the candidate run
    (inference PASS or WARN)."""
    if report is None or report.get("production_commit") not in (None, production):
        return True
    gates = report.get("gates") or []
    failed = {g.get("gate") for g in gates if g.get("status") == "FAIL"}
    ran = any(g.get("gate") == "inference" and g.get("status") in ("PASS", "WARN")
              for g in gates)
    return not (failed <= set(allow) and ran)


def _plan(ctx: ReleaseContext, stager: Stager | None, allow: list[str],
          reason: str | None) -> Operation:
    git = ctx.git
    git.require_clean("finish a hotfix")
    branch = git.current_branch() or ""
    if not branch.startswith(HOTFIX_PREFIX):
        raise CheckFailed(f"refusing to finish a hotfix on {branch or 'a detached HEAD'}: "
                          f"check out the hotfix branch first (git checkout "
                          f"{HOTFIX_PREFIX}NAME)")
    ctx.require_consistent()
    name = branch[len(HOTFIX_PREFIX):]
    candidate = git.resolve(branch)
    production = git.resolve(ctx.prod) if git.branch_exists(ctx.prod) else None
    if production is None:
        raise CheckFailed(f"no {ctx.prod} branch: nothing to hotfix")
    if git.is_ancestor(candidate, production):
        raise CheckFailed(f"nothing to finish: {branch} has no commit that {ctx.prod} lacks; "
                          "commit the fix first")
    if not git.is_ancestor(production, candidate):
        raise CheckFailed(f"{branch} does not contain {ctx.prod} ({production[:12]}): merge "
                          f"{ctx.prod} into it (`git merge {ctx.prod}`) and finish again")
    unreleased = _development_commits(ctx, production, candidate)
    if unreleased:
        listed = "; ".join(f"{c.short} {c.subject}" for c in unreleased[:3])
        raise CheckFailed(
            f"{branch} carries {len(unreleased)} commit(s) of {ctx.dev} that production has "
            f"not released ({listed}{'; ...' if len(unreleased) > 3 else ''}): a hotfix "
            f"holds only its fix, on the production release tag. Start it with `ewspipe "
            f"release hotfix start NAME` (or `git switch -c {HOTFIX_PREFIX}NAME "
            f"{ctx.prod}`), move the fix there (`git cherry-pick`), and release "
            f"{ctx.dev}'s work with `ewspipe release stage` and `promote`")
    if stager is not None and _needs_staging(ctx.ledger.staging_for(candidate), production,
                                             allow):
        ctx.ledger.record_staging(stager(candidate))
    report, overrides = require_staged(ctx, candidate, production, allow, reason)
    commits = [c for c in git.commits(f"{production}..{candidate}")
               if not is_release_bookkeeping(c)]
    # a fix is a PATCH; the automatic rule of promote still applies, so a hotfix that changes
    # a deployed model's configuration is a MINOR release and a breaking one a MAJOR
    version, engine, bump = next_version(ctx, production, candidate, commits)
    tag = ctx.tag(version)
    now = datetime.now(UTC)
    manifest = build_manifest(
        git, version=str(version), tag=tag, kind="hotfix", candidate=candidate,
        production_before=production, commits=commits, report=report, overrides=overrides,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        engine=engine,
        extra={"hotfix": name, "candidate_ref": branch,
               "bump": bump})
    plan = {
        "tag": tag, "candidate": candidate, "candidate_ref": branch, "start_branch": branch,
        "end_branch": ctx.prod, "production_before": production,
        "merge_message": f"release: merge {branch} into {ctx.prod} for {tag}",
        "changelog": render_section(tag, now.strftime("%Y-%m-%d"), commits,
                                    note=f"Hotfix `{name}`.", overrides=overrides),
        "models": deployed_names(ctx, candidate), "manifest": manifest, "planned_at": now_iso(),
    }
    return Operation(str(version), "hotfix", [c.sha for c in commits], manifest, plan)


def _development_commits(ctx: ReleaseContext, production: str, candidate: str) -> list[Commit]:
    """The hotfix branch's commits that development already holds: work that was never
    staged for release, which a branch cut from development (not from the production tag)
    would carry into production."""
    git = ctx.git
    if not git.branch_exists(ctx.dev):
        return []
    return [c for c in git.commits(f"{production}..{candidate}")
            if not is_release_bookkeeping(c) and git.is_ancestor(c.sha, ctx.dev)]


def finish_hotfix(ctx: ReleaseContext, *, stager: Stager | None = None,
                  allow: list[str] | None = None, reason: str | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Release the checked-out hotfix branch as a PATCH version, or the bigger bump promote's
    rule decides (or finish a pending one). A branch holding development's unreleased commits
    is refused: it was not cut from the production tag.

    ``stager(commit)`` runs the staging gates and returns the report dict; it is called only
    when no passing report for the exact hotfix commit is stored yet. Overrides follow
    :func:`ewspipe.release.integrate.check_overrides` (sync, integrity, inference: never).
    """
    done = integrate(ctx, "hotfix", "finish a hotfix",
                     lambda: _plan(ctx, stager, list(allow or []), reason),
                     allow=allow, reason=reason, progress=progress)
    return {"command": "hotfix finish", **done}
