"""``ewspipe release status``, ``check`` and ``log``: where development and production
stand, and the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.changelog import is_release_bookkeeping
from ewspipe.release.context import ReleaseContext
from ewspipe.release.hotfix import HOTFIX_PREFIX
from ewspipe.release.integrate import backport_instructions
from ewspipe.release.version import parse_commit

__all__ = ["check", "ledger_log", "pending_backports", "status"]


def _age_hours(stamp: str | None) -> float | None:
    if not stamp:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            then = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return round((datetime.now(UTC) - then).total_seconds() / 3600, 2)
    return None


def pending_backports(ctx: ReleaseContext) -> list[dict[str, Any]]:
    """Release tags on production that development does not contain yet, oldest first."""
    git = ctx.git
    if not (git.branch_exists(ctx.prod) and git.branch_exists(ctx.dev)):
        return []
    entries = {e["version"]: e for e in ctx.ledger.releases()}
    found = []
    for version, tag in sorted(ctx.release_tags().items()):
        if not git.is_ancestor(tag, ctx.prod) or git.is_ancestor(tag, ctx.dev):
            continue
        kind = (entries.get(str(version)) or {}).get("kind")
        files = git.conflicts(ctx.dev, tag)
        branch = f"backport/{tag}"
        if kind == "rollback":
            how = (f"{ctx.dev} lacks the rollback {tag}: `git merge {tag}` reverts the "
                   f"rolled-back changes in {ctx.dev} too; `git merge -s ours {tag}` records it "
                   f"and keeps {ctx.dev}'s work")
        elif files:
            how = backport_instructions(ctx, tag, files)
        else:
            how = f"merge it: `git checkout {ctx.dev} && git merge {tag}`"
        found.append({"tag": tag, "kind": kind, "conflicts": files,
                      "backport_branch": branch if git.branch_exists(branch) else None,
                      "how": how})
    return found


def _changed_definitions(ctx: ReleaseContext, old: str, new: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"models": [], "ensembles": []}
    for path in ctx.git.changed_files(old, new):
        folder, _, name = path.partition("/")
        if folder in out and name.endswith(".toml") and "/" not in name:
            out[folder].append(name[:-5])
    return out


def status(ctx: ReleaseContext) -> dict[str, Any]:
    git = ctx.git
    if not git.branch_exists(ctx.dev):
        raise InputError(f"branch {ctx.dev!r} does not exist in {git.root}; create it or set "
                         "[release] development_branch in ewspipe.toml")
    dev = git.resolve(ctx.dev)
    has_prod = git.branch_exists(ctx.prod)
    prod = git.resolve(ctx.prod) if has_prod else None
    version = ctx.production_version()
    ahead, behind = git.ahead_behind(ctx.dev, ctx.prod) if prod else (0, 0)
    rev_range = f"{prod}..{dev}" if prod else dev
    unreleased = [{"sha": c.sha, "subject": c.subject, "type": parse_commit(c).type}
                  for c in git.commits(rev_range) if not is_release_bookkeeping(c)]
    hotfixes = [b for b in git.branches(f"{HOTFIX_PREFIX}*")
                if not (prod and git.is_ancestor(b, ctx.prod))]
    last = ctx.ledger.last_staging()
    staging = None
    if last is not None:
        staging = {
            "candidate_commit": last.get("candidate_commit"),
            "candidate_ref": last.get("candidate_ref"), "passed": bool(last.get("passed")),
            "failed_gates": [g.get("gate") for g in last.get("gates") or []
                             if g.get("status") == "FAIL"],
            "recorded_at": last.get("recorded_at"),
            "age_hours": _age_hours(last.get("finished_at") or last.get("recorded_at")),
            "is_development_head": last.get("candidate_commit") == dev,
        }
    return {
        "repo": str(git.root),
        "production": {"branch": ctx.prod, "commit": prod,
                       "version": str(version) if version else None,
                       "tag": ctx.tag(version) if version else None,
                       "at_tag": bool(version and git.resolve(ctx.tag(version)) == prod)},
        "development": {"branch": ctx.dev, "commit": dev, "ahead": ahead, "behind": behind,
                        "contains_production": prod is None or git.is_ancestor(prod, dev)},
        "unreleased": unreleased,
        "changed": _changed_definitions(ctx, prod, dev) if prod else _changed_definitions(
            ctx, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", dev),  # the empty tree
        "hotfix_branches": hotfixes,
        "pending_backports": pending_backports(ctx),
        "pending_operations": [{"version": e["version"], "kind": e["kind"],
                                "created_at": e["created_at"]} for e in ctx.ledger.pending()],
        "last_staging": staging,
        "problems": ctx.problems(),
    }


def check(ctx: ReleaseContext) -> dict[str, Any]:
    """Pass when production is the continuation of its last release (tags, ledger and
    branch agree: :meth:`ReleaseContext.problems`) and development contains production
    (every hotfix back-ported); raise CheckFailed otherwise, naming what to repair."""
    git = ctx.git
    if not git.branch_exists(ctx.dev):
        raise InputError(f"branch {ctx.dev!r} does not exist in {git.root}")
    found = ctx.problems()
    if found:
        raise CheckFailed(f"{ctx.prod} cannot be trusted: the git tags, the release ledger "
                          f"and the {ctx.prod} branch disagree:\n  - " + "\n  - ".join(found))
    if not git.branch_exists(ctx.prod):
        return {"passed": True, "detail": f"no {ctx.prod} branch yet: nothing to back-port"}
    if git.is_ancestor(ctx.prod, ctx.dev):
        return {"passed": True, "detail": f"{ctx.dev} contains {ctx.prod}"}
    pending = pending_backports(ctx)
    lines = [f"  - {p['tag']}: {p['how']}" for p in pending] or [
        f"  - merge {ctx.prod} into {ctx.dev}: `git checkout {ctx.dev} && git merge {ctx.prod}`"]
    raise CheckFailed(f"{ctx.dev} does not contain {ctx.prod} "
                      f"({git.ahead_behind(ctx.dev, ctx.prod)[1]} commits behind); "
                      "back-port pending:\n" + "\n".join(lines))


def ledger_log(ctx: ReleaseContext) -> list[dict[str, Any]]:
    return ctx.ledger.releases()
