"""CHANGELOG.md from conventional commits: one section per release, newest on top, entries
grouped by commit type."""

from __future__ import annotations

from ewspipe.release.git import Commit
from ewspipe.release.version import parse_commit

__all__ = ["RELEASE_SUBJECT", "has_section", "insert_section", "is_release_bookkeeping",
           "render_section"]

HEADER = "# Changelog\n\nEvery production release (`ewspipe release`), newest first.\n"
RELEASE_SUBJECT = "chore(release): "  # the CHANGELOG commit of each release

_GROUPS = (
    ("Breaking changes", None),
    ("Features", "feat"),
    ("Fixes", "fix"),
    ("Performance", "perf"),
    ("Refactoring", "refactor"),
    ("Documentation", "docs"),
)


def is_release_bookkeeping(commit: Commit) -> bool:
    """A CHANGELOG commit or rollback made by ``ewspipe release`` itself."""
    return commit.subject.startswith((RELEASE_SUBJECT, "revert(release): "))


def render_section(tag: str, date: str, commits: list[Commit], *, note: str = "") -> str:
    """The Markdown section for one release (``commits`` newest first)."""
    grouped: dict[str, list[str]] = {}
    for commit in commits:
        if is_release_bookkeeping(commit):
            continue
        cc = parse_commit(commit)
        scope = f"**{cc.scope}**: " if cc.scope else ""
        line = f"- {scope}{cc.text} ({commit.short})"
        if cc.breaking:
            group = "Breaking changes"
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
    if not grouped and not note:
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
