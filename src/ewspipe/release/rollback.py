"""``ewspipe release rollback [VERSION]``: put an earlier release back in production.

History is kept: production gets a new commit (parent: production's head) whose tree equals
the earlier release's tree except CHANGELOG.md, which stays production's own append-only
history plus a section for the rollback; it is tagged as the next PATCH version with a
manifest naming the rolled-back and restored versions (engine, catalog and settings: those of
the restored tree). The tree is computed in the plan with git plumbing in a temporary index,
so a resumed rollback commits exactly the planned tree and the user's index is never
touched. Then each published forecasts pointer of the production environment moves back to
the forecasts that the restored release published for the current data month (pointers
record the release and the last observed month they were published with); where there are
none the result says to regenerate them with ``ewspipe run --env production``.
Crash-safe like every release operation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ewspipe.errors import CheckFailed, InputError
from ewspipe.release.aliases import restored_aliases
from ewspipe.release.changelog import CHANGELOG, insert_section, render_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.ledger import now_iso
from ewspipe.release.manifest import build_manifest
from ewspipe.release.steps import Operation, Step, resume_or_run, tag_step
from ewspipe.release.version import Bump, Version
from ewspipe.store.published import PublishedPointers

__all__ = ["rollback"]



def _pointers(ctx: ReleaseContext) -> PublishedPointers:
    env = ctx.settings.run.production_environment
    return PublishedPointers(ctx.settings.layout.env(env).published, ctx.ledger.db,
                             environment=env)


def _pointer_moves(ctx: ReleaseContext, restore_tag: str, new_tag: str
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Pointer moves that put ``restore_tag``'s forecasts back, and the pointers that have
    none for the current data month."""
    pointers = _pointers(ctx)
    moves, missing = [], []
    for path in sorted(pointers.root.glob("*/*.json")):
        level, target = path.parent.name, path.stem
        current = pointers.current(level, target)
        if current is None:
            continue
        month = current.get("last_month")
        found = [p for p in pointers.history(level, target)
                 if (p.get("release") or {}).get("tag") == restore_tag
                 and p.get("last_month") == month and not p.get("rollback")]
        if not found:
            missing.append(f"{level}/{target} (month {month})")
            continue
        chosen = {k: v for k, v in found[-1].items() if k not in ("environment",
                                                                  "previous_run")}
        moves.append({**chosen, "publish_id": f"rollback-{new_tag}",
                      "rollback": {"release": new_tag, "restored": restore_tag,
                                   "restored_publish_id": found[-1]["publish_id"]}})
    return moves, missing


def _choose_target(ctx: ReleaseContext, version: str | None, current: Version) -> Version:
    tags = ctx.release_tags()
    entries = {e["version"]: e for e in ctx.ledger.completed()}
    if version is not None:
        target = Version.parse(version, prefix=ctx.prefix, what="VERSION")
        if target not in tags:
            raise InputError(f"VERSION {version!r}: no release tag {ctx.tag(target)}; "
                             f"releases: {', '.join(t for _, t in sorted(tags.items()))}")
        if target == current:
            raise InputError(f"VERSION {version!r} is the current production release; name an "
                             "earlier one")
        return target
    effective = current
    entry = entries.get(str(current))
    if entry and entry["kind"] == "rollback":
        effective = Version.parse(entry["manifest"]["rollback_to"], prefix=ctx.prefix)
    earlier = [v for v, t in tags.items() if v < effective
               and (entries.get(str(v)) or {}).get("kind") != "rollback"
               and ctx.git.is_ancestor(t, ctx.prod)]
    if not earlier:
        raise CheckFailed(f"no release before {ctx.tag(effective)} to roll back to")
    return max(earlier)


def _plan(ctx: ReleaseContext, version: str | None) -> Operation:
    git = ctx.git
    git.require_clean("roll back")
    if not git.branch_exists(ctx.prod):
        raise CheckFailed(f"no {ctx.prod} branch: nothing to roll back")
    git.require_branch([ctx.prod], "roll back")
    ctx.require_consistent()
    current = ctx.production_version()
    if current is None:
        raise CheckFailed(f"no release on {ctx.prod} to roll back")
    target = _choose_target(ctx, version, current)
    current_tag, target_tag = ctx.tag(current), ctx.tag(target)
    production = git.resolve(ctx.prod)
    if git.same_tree(production, target_tag, ignore=(CHANGELOG,)):
        raise CheckFailed(f"{ctx.prod} already has the tree of {target_tag}; nothing to roll "
                          "back")
    new = (ctx.latest_version() or current).bump(Bump.PATCH)
    new_tag = ctx.tag(new)
    now = datetime.now(UTC)
    # the restored tree, except CHANGELOG.md: production's history plus this rollback
    section = render_section(new_tag, now.strftime("%Y-%m-%d"), [],
                             note=f"Rolled back to {target_tag} (was {current_tag}).")
    tree = git.tree_with_file(target_tag, CHANGELOG,
                              insert_section(git.show(production, CHANGELOG), section))
    moves, missing = _pointer_moves(ctx, target_tag, new_tag)
    manifest = build_manifest(
        git, version=str(new), tag=new_tag, kind="rollback", candidate=git.resolve(target_tag),
        production_before=production, commits=[], report=None, overrides=[],
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        extra={"rollback_of": current_tag, "rollback_to": target_tag})
    plan = {
        "tag": new_tag, "target_tag": target_tag, "current_tag": current_tag, "tree": tree,
        "production_before": production, "date": f"@{int(now.timestamp())} +0000",
        "message": f"revert(release): roll back {ctx.prod} to {target_tag} (was "
                   f"{current_tag})\n\nThe tree of this commit is the tree of {target_tag}, "
                   f"except {CHANGELOG}, which keeps {ctx.prod}'s history and records this "
                   "rollback.",
        "pointer_moves": moves, "pointers_missing": missing, "manifest": manifest,
        "end_branch": ctx.prod, "planned_at": now_iso(),
    }
    return Operation(str(new), "rollback", [], manifest, plan)


def _steps(ctx: ReleaseContext, plan: dict[str, Any]) -> list[Step]:
    git, prod, tag = ctx.git, ctx.prod, plan["tag"]
    pointers = _pointers(ctx)

    def committed() -> bool:
        return (git.tree(prod) == plan["tree"]
                and git.resolve(prod) != plan["production_before"])

    def commit() -> str:
        sha = git.commit_tree(plan["tree"], plan["production_before"], plan["message"],
                              date=plan["date"])
        git.checkout(prod)
        git.fast_forward(sha)
        return (f"{prod} is now {sha[:12]} with the tree of {plan['target_tag']} (and "
                f"{CHANGELOG} recording the rollback)")

    def moved() -> bool:
        return all((pointers.current(m["level"], m["target"]) or {}).get("publish_id")
                   == m["publish_id"] for m in plan["pointer_moves"])

    def move() -> str:
        done = []
        for m in plan["pointer_moves"]:
            if (pointers.current(m["level"], m["target"]) or {}).get("publish_id") \
                    != m["publish_id"]:
                pointers.move({**m, "published_at": now_iso()[:19] + "Z"})
            done.append(f"{m['level']}/{m['target']} -> run {m['run']}")
        return "published pointers moved back: " + ", ".join(done)

    def aliases() -> str:  # redone on a resume: it only re-points aliases
        found = restored_aliases(ctx, plan["target_tag"], tag)
        notes = plan.setdefault("_notes", {})
        notes["aliases"], notes["alias_notes"] = found.aliases, found.notes
        return "; ".join(found.notes)

    return [Step("commit", committed, commit), tag_step(ctx, tag, plan["manifest"]),
            Step("aliases", lambda: False, aliases), Step("pointers", moved, move)]


def _finish(ctx: ReleaseContext, plan: dict[str, Any]) -> dict[str, Any]:
    ctx.git.checkout(plan["end_branch"])
    return {**plan["manifest"], "release_commit": ctx.git.resolve(plan["tag"]),
            "pointers": [{"level": m["level"], "target": m["target"], "run": m["run"]}
                         for m in plan["pointer_moves"]],
            "pointers_missing": plan["pointers_missing"],
            "aliases": plan.get("_notes", {}).get("aliases", {}),
            "alias_notes": plan.get("_notes", {}).get("alias_notes", [])}


def rollback(ctx: ReleaseContext, version: str | None = None, *,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Roll production back to ``version`` (default: the release before the current one)."""
    op, resumed, result = resume_or_run(ctx, "rollback", "roll back", lambda: _plan(ctx, version),
                                        lambda plan: _steps(ctx, plan),
                                        lambda plan: _finish(ctx, plan), progress)
    plan = op.plan
    regenerate = None
    if plan["pointers_missing"]:
        regenerate = (f"no published forecasts of {plan['target_tag']} for the current data "
                      f"month of {', '.join(plan['pointers_missing'])}; regenerate them with "
                      f"`ewspipe run --env {ctx.settings.run.production_environment}` "
                      f"(production is at {plan['tag']} now)")
    return {"command": "rollback", "version": op.version, "tag": plan["tag"],
            "rolled_back": plan["current_tag"], "restored": plan["target_tag"],
            "regenerate": regenerate, "resumed": resumed, **result}
