"""What every release command works on: the product repository, the settings, the ledger,
and the cross-checks between git tags and the ledger.

The repository is the git repository holding the settings file (or the current folder when
the settings are built in), unless ``--repo PATH`` names another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ewspipe.errors import CheckFailed
from ewspipe.flows.release_guard import lineage_problems
from ewspipe.release.git import Git
from ewspipe.release.ledger import Ledger
from ewspipe.release.version import Version
from ewspipe.settings import Settings

__all__ = ["LedgerMismatch", "ReleaseContext", "repository_path"]


class LedgerMismatch(CheckFailed):
    """Git tags and the release ledger disagree: refuse to act until repaired."""


def repository_path(settings: Settings, repo: Path | None = None) -> Path:
    if repo is not None:
        return Path(repo)
    if settings.source_file is not None:
        return Path(settings.source_file).resolve().parent
    return Path.cwd()


@dataclass
class ReleaseContext:
    settings: Settings
    git: Git
    ledger: Ledger

    @classmethod
    def open(cls, settings: Settings, repo: Path | None = None, *,
             create: bool = True) -> ReleaseContext:
        """``create=False``: for the read-only commands (a missing ledger reads as empty)."""
        return cls(settings, Git(repository_path(settings, repo)),
                   Ledger.open(settings, create=create))

    # ------------------------------------------------------------------ names
    @property
    def prefix(self) -> str:
        return self.settings.release.tag_prefix

    @property
    def dev(self) -> str:
        return self.settings.release.development_branch

    @property
    def prod(self) -> str:
        return self.settings.release.production_branch

    def tag(self, version: Version) -> str:
        return version.tag(self.prefix)

    # ------------------------------------------------------------------ versions
    def release_tags(self) -> dict[Version, str]:
        """Every tag that reads as ``<prefix>MAJOR.MINOR.PATCH``."""
        found = {}
        for tag in self.git.tags(f"{self.prefix}*"):
            version = Version.maybe(tag, prefix=self.prefix)
            if version is not None:
                found[version] = tag
        return found

    def latest_version(self) -> Version | None:
        tags = self.release_tags()
        return max(tags) if tags else None

    def production_version(self) -> Version | None:
        """The newest release tag contained in the production branch."""
        if not self.git.branch_exists(self.prod):
            return None
        inside = [v for v, t in self.release_tags().items()
                  if self.git.is_ancestor(t, self.prod)]
        return max(inside) if inside else None

    # ------------------------------------------------------------------ cross-checks
    def lineage_problems(self) -> list[str]:
        """Why production is not the continuation of its last release (a rewritten branch, a
        moved tag), with the fix: :func:`ewspipe.flows.release_guard.lineage_problems`, the
        check the production run makes too."""
        return lineage_problems(self.git.root, production_branch=self.prod,
                                tag_prefix=self.prefix, releases=self.ledger.releases())

    def require_lineage(self, action: str) -> None:
        found = self.lineage_problems()
        if found:
            raise LedgerMismatch(f"refusing to {action}: " + "; and ".join(found))

    def problems(self) -> list[str]:
        """Each disagreement between tags, ledger and the production branch, with how to
        repair it."""
        entries = {e["version"]: e for e in self.ledger.releases()}
        found = self.lineage_problems()
        for version, tag in sorted(self.release_tags().items()):
            entry = entries.get(str(version))
            if entry is None:
                found.append(
                    f"tag {tag} has no release-ledger entry (it was not made by `ewspipe "
                    f"release`, or the ledger database was replaced): restore the ledger "
                    f"database of the production state, or delete the stray tag with `git "
                    f"tag -d {tag}` if it was created by mistake")
        for version, entry in entries.items():
            tag = f"{self.prefix}{version}"
            if entry["status"] == "completed" and not self.git.tag_exists(tag):
                commit = (entry["manifest"] or {}).get("release_commit", "<commit>")
                found.append(
                    f"the ledger records release {tag} as completed but the tag is missing: "
                    f"recreate it with `git tag -a {tag} {commit} -m 'Release {tag}'` (or fetch "
                    "it from the remote that has it)")
        return found

    def require_consistent(self) -> None:
        found = self.problems()
        if found:
            raise LedgerMismatch("refusing to act: the git tags, the release ledger and the "
                                 "production branch disagree:\n  - " + "\n  - ".join(found))
