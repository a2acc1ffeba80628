"""CHANGELOG.md from conventional commits: one section per release, hotfix and rollback,
newest on top, entries grouped by commit type, gate overrides listed with their reasons.

The file is append-only history: each release command inserts its section into production's
own CHANGELOG.md (a rollback too, instead of restoring the old release's file). A commit and
its revert both in the released range cancel out and are not listed; a revert of a commit
released earlier is listed under "Reverts"."""

from __future__ import annotations

from typing import Any

from ewspipe.release.git import Commit
from ewspipe.release.version import cancel_reverts, parse_commit, reverted_sha

__all__ = ["CHANGELOG", "RELEASE_SUBJECT", "has_section", "insert_section",
           "is_release_bookkeeping", "render_section"]

CHANGELOG = "CHANGELOG.md"

HEADER = ("# Changelog\n\nEvery production release, hotfix and rollback (`ewspipe release`), "
          "newest first.\n")
RELEASE_SUBJECT = "chore(release): "  # the CHANGELOG commit of each release

_GROUPS = (
    ("Breaking changes", None),
    ("Features", "feat"),
    ("Fixes", "fix"),
    ("Performance", "perf"),
    ("Refactoring", "refactor"),
    ("Documentation", "docs"),
    ("Reverts", "revert"),
)


def is_release_bookkeeping(commit: Commit) -> bool:
    """A CHANGELOG commit or rollback made by ``ewspipe release`` itself."""
    return commit.subject.startswith((RELEASE_SUBJECT, "revert(release): "))


def render_section(tag: str, date: str, commits: list[Commit], *, note: str = "",
                   overrides: list[dict[str, Any]] | None = None) -> str:
    """The Markdown section for one release (``commits`` newest first; pairs of a commit and
    its revert are left out) with its gate overrides."""
    grouped: dict[str, list[str]] = {}
    kept, cancelled = cancel_reverts([c for c in commits if not is_release_bookkeeping(c)])
    for commit in kept:
        cc = parse_commit(commit)
        scope = f"**{cc.scope}**: " if cc.scope else ""
        line = f"- {scope}{cc.text} ({commit.short})"
        if cc.breaking:
            group = "Breaking changes"
        elif reverted_sha(commit) is not None or commit.subject.startswith('Revert "'):
            group = "Reverts"
        else:
            group = next((g for g, t in _GROUPS if t == cc.type), "Other changes")
        grouped.setdefault(group, []).append(line)
    lines = [f"## [{tag}] - {date}", ""]
    if note:
        lines += [note, ""]
    order = [g for g, _ in _GROUPS] + ["Other changes"]
    for group in order:
        if group in grouped:
            lines += [f"### {group}", "", *grouped[group], ""]
    if overrides:
        lines += ["### Gate overrides", ""]
        lines += [f"- **{o.get('gate')}** ({o.get('status')}): {o.get('reason')}"
                  + (f" (by {o['operator']})" if o.get("operator") else "") for o in overrides]
        lines.append("")
    if not grouped and cancelled:
        lines += [f"No changes: {len(cancelled)} change{'s' if len(cancelled) != 1 else ''} "
                  "reverted within this release.", ""]
    elif not grouped and not note:
        lines += ["No changes besides release bookkeeping.", ""]
    return "\n".join(lines)


def has_section(text: str | None, tag: str) -> bool:
    return bool(text) and f"## [{tag}]" in (text or "")


def insert_section(text: str | None, section: str) -> str:
    """``section`` placed above the newest release of ``text`` (created when absent)."""
    body = text if text and text.strip() else HEADER
    marker = body.find("\n## [")
    if marker < 0:
        return body.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    return body[:marker + 1] + section.rstrip("\n") + "\n\n" + body[marker + 1:]
