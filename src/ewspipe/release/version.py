"""Semantic versions and the automatic bump rule.

The rule (issue 8, refined in issue 16): MAJOR when a target, a partition, the output schema or
a deployed model or ensemble was removed or changed incompatibly (or a commit says ``!`` /
``BREAKING CHANGE``); MINOR when models or ensembles were added, a status changed, a deployed
definition changed (config hash), ewspipe.toml changed outside ``[partitions]``, the engine's
ewspipe MAJOR.MINOR changed, or any commit is a ``feat:``; PATCH otherwise (an engine change
within one MINOR is named as a PATCH reason). It is decided from what differs between the two
release trees (the model and ensemble files, ewspipe.toml, the engine) and from the commit
subjects, after a commit and its revert inside the released range cancel out.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import total_ordering
from typing import Any

from ewspipe.errors import InputError
from ewspipe.release.git import Commit, Git
from ewspipe.release.manifest import release_catalog

__all__ = ["Bump", "BumpDecision", "ConventionalCommit", "Version", "cancel_reverts",
           "decide_bump", "parse_commit", "reverted_sha"]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_REVERTS = re.compile(r"This reverts commit ([0-9a-fA-F]{7,40})")
_CONVENTIONAL = re.compile(r"^(?P<type>[a-zA-Z]+)(?:\((?P<scope>[^)]*)\))?(?P<bang>!)?:\s*"
                           r"(?P<text>.+)$")


class Bump(StrEnum):
    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, *, prefix: str = "v", what: str = "version") -> Version:
        """``v1.2.3`` or ``1.2.3`` (leading zeros and pre-release suffixes are refused)."""
        raw = text[len(prefix):] if prefix and text.startswith(prefix) else text
        m = _SEMVER.match(raw)
        if not m:
            raise InputError(f"{what} {text!r} is not a semantic version; expected "
                             f"{prefix}MAJOR.MINOR.PATCH such as {prefix}1.4.0")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    @classmethod
    def maybe(cls, text: str, *, prefix: str = "v") -> Version | None:
        try:
            return cls.parse(text, prefix=prefix)
        except InputError:
            return None

    def bump(self, kind: Bump) -> Version:
        if kind is Bump.MAJOR:
            return Version(self.major + 1, 0, 0)
        if kind is Bump.MINOR:
            return Version(self.major, self.minor + 1, 0)
        return Version(self.major, self.minor, self.patch + 1)

    def tag(self, prefix: str = "v") -> str:
        return f"{prefix}{self}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)


@dataclass(frozen=True)
class ConventionalCommit:
    type: str  # "feat", "fix", ... or "other" for a free-form subject
    scope: str | None
    text: str
    breaking: bool


def parse_commit(commit: Commit) -> ConventionalCommit:
    """A commit subject read as a conventional commit (``type(scope)!: text``)."""
    breaking_body = bool(re.search(r"^BREAKING[ -]CHANGE:", commit.body, re.MULTILINE))
    m = _CONVENTIONAL.match(commit.subject.strip())
    if not m:
        return ConventionalCommit("other", None, commit.subject.strip(), breaking_body)
    return ConventionalCommit(m["type"].lower(), m["scope"] or None, m["text"].strip(),
                              bool(m["bang"]) or breaking_body)


def reverted_sha(commit: Commit) -> str | None:
    """The commit (sha or abbreviation) that ``commit`` reverts, from the body git writes
    (``This reverts commit <sha>.``), for ``Revert "..."`` and ``revert: ...`` subjects alike."""
    found = _REVERTS.search(commit.body)
    return found.group(1).lower() if found else None


def cancel_reverts(commits: list[Commit]) -> tuple[list[Commit], list[dict[str, str]]]:
    """``commits`` (newest first) without each commit whose revert is also among them, nor
    that revert: a pair that cancels out shipped nothing. A revert of a commit outside the
    list (released earlier) stays. Newest first, so a revert of a revert cancels with the
    revert and the original change stays. Returns (kept, cancelled pairs)."""
    cancelled: set[str] = set()
    pairs: list[dict[str, str]] = []
    for revert in commits:
        target = reverted_sha(revert)
        if target is None or revert.sha in cancelled:
            continue
        original = next((c for c in commits if c.sha.startswith(target)
                         and c.sha not in cancelled and c.sha != revert.sha), None)
        if original is None:
            continue
        cancelled |= {revert.sha, original.sha}
        pairs.append({"sha": original.sha, "subject": original.subject,
                      "reverted_by": revert.sha})
    return [c for c in commits if c.sha not in cancelled], pairs


@dataclass
class BumpDecision:
    bump: Bump
    reasons: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # models/ensembles by change
    cancelled: list[dict[str, str]] = field(default_factory=list)  # commit + revert pairs

    def to_dict(self) -> dict[str, Any]:
        return {"bump": self.bump.value, "reasons": self.reasons, "changed": self.changed,
                "cancelled": self.cancelled}


def _definitions(git: Git, ref: str | None, folder: str) -> dict[str, dict[str, Any]]:
    """name -> parsed TOML of every ``folder/*.toml`` at ``ref`` (empty when ``ref`` is None)."""
    if ref is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for path in git.ls_tree(ref, folder):
        if not path.endswith(".toml"):
            continue
        text = git.show(ref, path) or ""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        name = str(data.get("name") or path.rsplit("/", 1)[-1][:-5])
        found[name] = data
    return found


def _settings(git: Git, ref: str | None) -> dict[str, Any] | None:
    """ewspipe.toml at ``ref`` parsed (None when absent; the raw text when it does not parse,
    so a change is still seen)."""
    text = git.show(ref, "ewspipe.toml") if ref else None
    if text is None:
        return None
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError:
        return {"__unparsed__": text}


def _minor_of(version: str | None) -> tuple[str, ...]:
    return tuple(str(version or "").split(".")[:2])


def _engine_reasons(old: dict[str, Any] | None, new: dict[str, Any] | None,
                    minor: list[str], patch: list[str]) -> None:
    """An engine change: MINOR when ewspipe's MAJOR.MINOR moved, else a PATCH reason."""
    if not old or not new:
        return
    a, b = old.get("ewspipe"), new.get("ewspipe")
    if a != b and _minor_of(a) != _minor_of(b):
        minor.append(f"engine: ewspipe {a} -> {b}")
    elif a != b or old.get("fingerprint") != new.get("fingerprint"):
        fa, fb = str(old.get("fingerprint") or "?")[:12], str(new.get("fingerprint") or "?")[:12]
        patch.append(f"engine changed: ewspipe {a} -> {b}, code fingerprint {fa} -> {fb}")
    deps_a, deps_b = old.get("dependencies") or {}, new.get("dependencies") or {}
    moved = [f"{d} {deps_a.get(d)} -> {deps_b.get(d)}" for d in sorted(deps_a.keys()
             | deps_b.keys()) if deps_a.get(d) != deps_b.get(d)]
    if moved:
        patch.append("engine dependencies changed: " + ", ".join(moved))


def _definition_reasons(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                        minor: list[str], patch: list[str]) -> None:
    """A changed definition (config hash: hyperparameters, features, members, ...) of a model
    or ensemble deployed on either side is MINOR; of any other, a PATCH reason."""
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name], new[name]
        if a.get("config_hash") == b.get("config_hash"):
            continue
        kind = b.get("kind", "model")
        if "deployed" in (a.get("status"), b.get("status")):
            minor.append(f"deployed {kind} {name}: definition changed (config hash "
                         f"{str(a.get('config_hash'))[:12]} -> {str(b.get('config_hash'))[:12]})")
        else:
            patch.append(f"{b.get('status')} {kind} {name}: definition changed")


def _compare(kind: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
             major: list[str], minor: list[str], changed: dict[str, list[str]]) -> None:
    for name in sorted(old.keys() - new.keys()):
        changed.setdefault("removed", []).append(name)
        if old[name].get("status") == "deployed":
            major.append(f"deployed {kind} {name} removed")
        else:
            minor.append(f"{kind} {name} removed")
    for name in sorted(new.keys() - old.keys()):
        changed.setdefault("added", []).append(name)
        minor.append(f"{kind} {name} added")
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name], new[name]
        if a == b:
            continue
        changed.setdefault("changed", []).append(name)
        deployed = a.get("status") == "deployed"
        for key in ("target", "level"):
            if a.get(key) != b.get(key):
                major.append(f"{kind} {name}: {key} {a.get(key)} -> {b.get(key)}")
        if a.get("status") != b.get("status"):
            if deployed:
                major.append(f"deployed {kind} {name} is now {b.get('status')}")
            else:
                minor.append(f"{kind} {name}: status {a.get('status')} -> {b.get('status')}")


def decide_bump(git: Git, production: str | None, candidate: str, commits: list[Commit],
                *, engines: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None
                ) -> BumpDecision:
    """The automatic bump for releasing ``candidate`` over ``production`` (None: first
    release) given the commits being released (a commit and its revert both among them
    cancel out) and ``engines`` = (production's recorded engine, the candidate's engine).
    ``reasons`` names every cause, the strongest first."""
    major: list[str] = []
    minor: list[str] = []
    patch: list[str] = []
    changed: dict[str, list[str]] = {}
    for kind, folder in (("model", "models"), ("ensemble", "ensembles")):
        _compare(kind, _definitions(git, production, folder), _definitions(git, candidate,
                 folder), major, minor, changed)
    if production is not None:
        _definition_reasons(release_catalog(git, production), release_catalog(git, candidate),
                            minor, patch)
        old, new = _settings(git, production), _settings(git, candidate)
        old_parts = (old or {}).pop("partitions", {})
        new_parts = (new or {}).pop("partitions", {})
        if old_parts != new_parts:
            major.append("[partitions] in ewspipe.toml changed")
        if old != new:
            minor.append("ewspipe.toml changed outside [partitions]")
        if engines is not None:
            _engine_reasons(engines[0], engines[1], minor, patch)
    kept, cancelled = cancel_reverts(commits)
    for commit in kept:
        cc = parse_commit(commit)
        if cc.breaking:
            major.append(f"breaking change: {commit.subject} ({commit.short})")
        elif cc.type == "feat":
            minor.append(f"feature: {commit.subject} ({commit.short})")
    reasons = major + minor + patch
    if major:
        return BumpDecision(Bump.MAJOR, reasons, changed, cancelled)
    if minor:
        return BumpDecision(Bump.MINOR, reasons, changed, cancelled)
    return BumpDecision(Bump.PATCH, reasons or ["no feature, model or breaking change"],
                        changed, cancelled)
