"""Semantic versions and the automatic bump rule.

The rule (issue 8): MAJOR when a target, a partition, the output schema or a deployed model or
ensemble was removed or changed incompatibly (or a commit says ``!`` / ``BREAKING CHANGE``);
MINOR when models or ensembles were added, a status changed, or any commit is a ``feat:``;
PATCH otherwise. It is decided from the model and ensemble TOML files and the ``[partitions]``
block of ewspipe.toml at production and at the candidate, plus the candidate's commit subjects.
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

__all__ = ["Bump", "BumpDecision", "ConventionalCommit", "Version", "decide_bump",
           "parse_commit"]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
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


@dataclass
class BumpDecision:
    bump: Bump
    reasons: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # models/ensembles by change

    def to_dict(self) -> dict[str, Any]:
        return {"bump": self.bump.value, "reasons": self.reasons, "changed": self.changed}


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


def _partitions(git: Git, ref: str | None) -> dict[str, Any]:
    text = (git.show(ref, "ewspipe.toml") if ref else None) or ""
    try:
        return dict(tomllib.loads(text).get("partitions", {}))
    except tomllib.TOMLDecodeError:
        return {}


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


def decide_bump(git: Git, production: str | None, candidate: str,
                commits: list[Commit]) -> BumpDecision:
    """The automatic bump for releasing ``candidate`` over ``production`` (None: first
    release) given the commits being released."""
    major: list[str] = []
    minor: list[str] = []
    changed: dict[str, list[str]] = {}
    for kind, folder in (("model", "models"), ("ensemble", "ensembles")):
        _compare(kind, _definitions(git, production, folder), _definitions(git, candidate,
                 folder), major, minor, changed)
    if production is not None and _partitions(git, production) != _partitions(git, candidate):
        major.append("[partitions] in ewspipe.toml changed")
    for commit in commits:
        cc = parse_commit(commit)
        if cc.breaking:
            major.append(f"breaking change: {commit.subject} ({commit.short})")
        elif cc.type == "feat":
            minor.append(f"feature: {commit.subject} ({commit.short})")
    if major:
        return BumpDecision(Bump.MAJOR, major, changed)
    if minor:
        return BumpDecision(Bump.MINOR, minor, changed)
    return BumpDecision(Bump.PATCH, ["no feature, model or breaking change"], changed)
