"""The crash-safe step runner behind promote, hotfix finish and rollback.

An operation is planned first (read-only), then written to the ledger as a *pending* entry
holding its plan, then each step runs only if its ``done`` check says it has not happened
yet (a merge commit, a tag, a CHANGELOG commit already there is left alone), and the entry is
marked *completed* last. Killed anywhere, the repository and ledger are either unchanged or
a re-run of the same command picks up the stored plan and finishes the remaining steps.

Test hook: ``EWSPIPE_RELEASE_CRASH_AT=<step>`` makes the process exit at once with status 137
right before that step (``begin`` = before the pending entry is written, ``complete`` =
before it is marked completed). It exists for the crash-safety tests; never set it otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ewspipe.errors import CheckFailed
from ewspipe.flows.runner import EnvironmentLock
from ewspipe.release.changelog import CHANGELOG, has_section
from ewspipe.release.context import ReleaseContext
from ewspipe.release.git import GitFailed
from ewspipe.release.manifest import tag_message

__all__ = ["CRASH_ENV", "LOCK_FILE", "Operation", "Step", "crash_point", "pending_for",
           "release_lock", "resume_operation", "run_operation", "tag_step"]

CRASH_ENV = "EWSPIPE_RELEASE_CRASH_AT"
LOCK_FILE = "ewspipe-release.lock"


def crash_point(name: str) -> None:
    """Test hook: exit the process hard at step ``name`` when the crash variable names it."""
    if os.environ.get(CRASH_ENV) == name:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)


@dataclass(frozen=True)
class Step:
    name: str
    done: Callable[[], bool]
    do: Callable[[], str | None]  # returns a note for the output (or None)


def tag_step(ctx: ReleaseContext, tag: str, manifest: dict[str, Any]) -> Step:
    """The step that puts the annotated release tag (with its manifest) on production's head;
    done when the tag is already there, refused when a tag of that name points elsewhere."""
    git, prod = ctx.git, ctx.prod

    def tagged() -> bool:
        if not git.tag_exists(tag):
            return False
        if git.rev(tag) != git.rev(prod):
            raise GitFailed(f"tag {tag} exists but points at {git.rev(tag)}, not at {prod} "
                            f"({git.rev(prod)}); it was not made by this release. Delete it "
                            f"(`git tag -d {tag}`) and re-run")
        return True

    def tag_it() -> str:
        git.annotated_tag(tag, git.resolve(prod), tag_message(tag, manifest))
        return f"tagged {tag}"

    return Step("tag", tagged, tag_it)


@dataclass
class Operation:
    """A planned operation: the ledger entry to write and the steps rebuilt from its plan."""

    version: str
    kind: str
    commits: list[str]
    manifest: dict[str, Any]
    plan: dict[str, Any]


def pending_for(ctx: ReleaseContext, kind: str, command: str) -> dict[str, Any] | None:
    """The pending entry this command should resume; refuse when another kind is pending."""
    pending = ctx.ledger.pending()
    if not pending:
        return None
    entry = pending[0]
    if entry["kind"] != kind or len(pending) > 1:
        names = ", ".join(f"{e['kind']} of {ctx.prefix}{e['version']}" for e in pending)
        resume = {"promote": "ewspipe release promote", "hotfix": "ewspipe release hotfix "
                  "finish", "rollback": "ewspipe release rollback"}[entry["kind"]]
        raise CheckFailed(f"refusing to {command}: an unfinished operation is pending ({names});"
                          f" re-run `{resume}` to complete it first")
    return entry


def resume_operation(ctx: ReleaseContext, entry: dict[str, Any]) -> Operation:
    """The stored operation of a pending entry, after undoing a merge that was interrupted
    inside git (the step is redone) and checking the worktree is otherwise clean."""
    ctx.git.abort_merge()
    _undo_uncommitted_changelog(ctx, entry)
    ctx.git.require_clean(f"resume the pending {entry['kind']} of {entry['version']}")
    ctx.require_consistent()
    return Operation(entry["version"], entry["kind"], entry["commits"], entry["manifest"],
                     entry["plan"])


def _undo_uncommitted_changelog(ctx: ReleaseContext, entry: dict[str, Any]) -> None:
    """A kill between ``git add CHANGELOG.md`` and its commit leaves the file staged on
    production with this release's section: that step did not happen (its commit is
    missing), so its write is undone and the step redone, as an interrupted merge is. Any
    other change, or a CHANGELOG.md without this release's section, is the user's and still
    refused by the clean-worktree check."""
    git, tag = ctx.git, (entry.get("plan") or {}).get("tag")
    if not tag or git.current_branch() != ctx.prod or git.dirty_files() != [CHANGELOG]:
        return
    path = git.root / CHANGELOG
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if has_section(text, str(tag)) and not has_section(git.show(ctx.prod, CHANGELOG), str(tag)):
        git.restore(CHANGELOG)


def run_operation(ctx: ReleaseContext, op: Operation,
                  build: Callable[[dict[str, Any]], list[Step]],
                  finish: Callable[[dict[str, Any]], dict[str, Any]],
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the pending entry (unless resuming), run the steps not done yet, then mark the
    entry completed with the manifest ``finish(plan)`` returns. Returns the step log and the
    final manifest."""
    crash_point("begin")
    entry = ctx.ledger.begin(op.version, op.kind, commits=op.commits, manifest=op.manifest,
                             plan=op.plan)
    plan = entry["plan"]  # a resumed operation follows its stored plan
    log = []
    for step in build(plan):
        crash_point(step.name)
        if step.done():
            log.append({"step": step.name, "status": "already done", "note": None})
            continue
        if progress:
            progress(step.name)
        note = step.do()
        log.append({"step": step.name, "status": "done", "note": note})
    crash_point("complete")
    manifest = finish(plan)
    ctx.ledger.complete(op.version, manifest)
    return {"steps": log, "manifest": manifest}


def resume_or_run(ctx: ReleaseContext, kind: str, command: str, plan: Callable[[], Operation],
                  build: Callable[[dict[str, Any]], list[Step]],
                  finish: Callable[[dict[str, Any]], dict[str, Any]],
                  progress: Callable[[str], None] | None = None,
                  ) -> tuple[Operation, bool, dict[str, Any]]:
    """Resume the pending ``kind`` operation (refusing another kind's) or start the one
    ``plan()`` makes, and run it: the body promote, hotfix finish and rollback share.
    Returns the operation, whether it was resumed and :func:`run_operation`'s result."""
    with release_lock(ctx, command):
        pending = pending_for(ctx, kind, command)
        op = resume_operation(ctx, pending) if pending is not None else plan()
        return op, pending is not None, run_operation(ctx, op, build, finish, progress)


def release_lock(ctx: ReleaseContext, command: str) -> EnvironmentLock:
    """One release command at a time per repository (every worktree shares the lock file):
    two promotions planned from the same ledger would both release the candidate, under two
    versions, the second rewriting the first's CHANGELOG section. A second command is refused
    at once (exit 1); the kernel releases the lock of a killed process."""
    return EnvironmentLock(ctx.git.git_dir(common=True) / LOCK_FILE, timeout=0.0,
                           environment="release",
                           holder=f"the release line of {ctx.git.root.name} (to {command})",
                           wait_hint="re-run this command when it has ended")
