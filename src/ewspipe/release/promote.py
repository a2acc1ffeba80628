"""``ewspipe release promote``: release a staged development commit to production.

Requires a passing staging report for the exact candidate commit (or failed gates overridden
with ``--allow GATE --reason TEXT``, recorded; sync, integrity and inference cannot be) whose
merge into production gives exactly the staged tree; merges the candidate into production
(``--no-ff``; the first release creates the production branch), commits the CHANGELOG.md
section, tags ``vX.Y.Z`` with the manifest as the tag message, sets MLflow aliases and merges
the release back into development so development keeps containing production. Crash-safe and
resumable (:mod:`ewspipe.release.steps`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.changelog import is_release_bookkeeping, render_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.git import Commit
from ewspipe.release.integrate import deployed_names, integrate, require_staged
from ewspipe.release.ledger import now_iso
from ewspipe.release.manifest import build_manifest, release_engine
from ewspipe.release.steps import Operation
from ewspipe.release.version import Bump, Version, decide_bump

__all__ = ["next_version", "parse_bump", "production_engine", "promote"]


def parse_bump(text: str | None) -> Bump | None:
    if text is None:
        return None
    try:
        return Bump(text.lower())
    except ValueError:
        raise InputError(f"{text!r} is not a bump; use major, minor or patch (or none for "
                         "the automatic rule)", parameter="bump") from None


def production_engine(ctx: ReleaseContext, production: str | None) -> dict[str, Any] | None:
    """The engine production's current release was validated with: recorded in its ledger
    manifest (a release before issue 16 has none: then the engine its tree runs now)."""
    version = ctx.production_version()
    if version is None or production is None:
        return None
    entry = ctx.ledger.get(str(version)) or {}
    recorded = (entry.get("manifest") or {}).get("engine")
    return recorded if isinstance(recorded, dict) else release_engine(ctx.git, production)


def next_version(ctx: ReleaseContext, base: str | None, candidate: str,
                 commits: list[Commit], *, forced: Bump | None = None
                 ) -> tuple[Version, dict[str, Any], dict[str, Any]]:
    """The version releasing ``candidate`` over ``base`` gets (the automatic bump rule of
    :func:`~ewspipe.release.version.decide_bump` unless ``forced``), the candidate's engine,
    and the manifest's ``bump`` record: one rule for promote and hotfix finish."""
    engine = release_engine(ctx.git, candidate)
    decision = decide_bump(ctx.git, base, candidate, commits,
                           engines=(production_engine(ctx, base), engine))
    chosen = forced or decision.bump
    version = (ctx.latest_version() or Version(0, 0, 0)).bump(chosen)
    return version, engine, {**decision.to_dict(), "chosen": chosen.value,
                             "forced": forced is not None}


def _plan(ctx: ReleaseContext, candidate_ref: str | None, bump: Bump | None,
          allow: list[str], reason: str | None) -> Operation:
    git = ctx.git
    git.require_clean("promote")
    has_prod = git.branch_exists(ctx.prod)
    start = git.require_branch([ctx.prod, ctx.dev] if has_prod else [ctx.dev], "promote")
    ctx.require_consistent()
    ref = candidate_ref or ctx.dev
    candidate = git.resolve(ref, what="candidate", parameter="candidate")
    production = git.resolve(ctx.prod) if has_prod else None
    released = ctx.production_version() is not None
    if released and production is not None and git.is_ancestor(candidate, production):
        raise CheckFailed(f"nothing to promote: {ref} ({candidate[:12]}) is already contained "
                          f"in {ctx.prod}")
    report, overrides = require_staged(ctx, candidate, production, allow, reason)
    # the first release (no release tag yet) releases everything the candidate holds
    base = production if released else None
    rev_range = f"{base}..{candidate}" if base else candidate
    commits = [c for c in git.commits(rev_range) if not is_release_bookkeeping(c)]
    version, engine, record = next_version(ctx, base, candidate, commits, forced=bump)
    tag = ctx.tag(version)
    now = datetime.now(UTC)
    manifest = build_manifest(
        git, version=str(version), tag=tag, kind="promote", candidate=candidate,
        production_before=production, commits=commits, report=report, overrides=overrides,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), engine=engine,
        extra={"candidate_ref": ref, "bump": record})
    plan = {
        "tag": tag, "candidate": candidate, "candidate_ref": ref, "start_branch": start,
        "end_branch": start, "production_before": production,
        "merge_message": f"release: merge {ref} ({candidate[:12]}) into {ctx.prod} for {tag}",
        "changelog": render_section(tag, now.strftime("%Y-%m-%d"), commits,
                                    overrides=overrides),
        "models": deployed_names(ctx, candidate), "manifest": manifest, "planned_at": now_iso(),
    }
    return Operation(str(version), "promote", [c.sha for c in commits], manifest, plan)


def promote(ctx: ReleaseContext, *, candidate: str | None = None, bump: Bump | None = None,
            allow: list[str] | None = None, reason: str | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Promote ``candidate`` (default: the development branch) or finish a pending promotion.

    Raises:
        InputError: unknown candidate ref, bad or not overridable --allow gate, --allow
            without --reason.
        CheckFailed: dirty worktree, wrong branch, tags and ledger disagree, no or failing
            staging report, inference not PASS/WARN, merged tree not the staged tree,
            nothing to promote, another operation pending.
    """
    done = integrate(ctx, "promote", "promote",
                     lambda: _plan(ctx, candidate, bump, list(allow or []), reason),
                     allow=allow, reason=reason, progress=progress)
    return {"command": "promote", **done}
