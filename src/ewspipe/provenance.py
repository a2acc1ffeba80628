"""Where a result came from: code version (git commit, dirty flag, release tag), libraries.

Read once per process; a checkout without git (e.g. an installed wheel) reports "unknown"
rather than failing, since provenance must never stop a run.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ewspipe import __version__

__all__ = ["CodeVersion", "code_fingerprint", "code_version", "git_output", "library_versions",
           "timestamp"]

_LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "scipy")


@dataclass(frozen=True)
class CodeVersion:
    commit: str
    dirty: bool
    tag: str | None
    package: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        text = self.tag or self.commit[:12]
        return f"{text}-dirty" if self.dirty else text


def git_output(cwd: Path, *args: str) -> str | None:
    """stdout of ``git ARGS`` in ``cwd`` without the trailing newline (leading spaces kept:
    porcelain output is positional), or None when git fails or is missing."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.rstrip("\n")


@functools.cache
def code_version(repo: Path | None = None) -> CodeVersion:
    """The commit of the checkout holding this package (or ``repo``)."""
    where = repo or Path(__file__).resolve().parent
    commit = git_output(where, "rev-parse", "HEAD") or "unknown"
    status = git_output(where, "status", "--porcelain", "--untracked-files=no")
    tag = git_output(where, "describe", "--tags", "--exact-match", "HEAD") or None
    return CodeVersion(commit=commit, dirty=bool(status), tag=tag, package=__version__)


@functools.cache
def library_versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def timestamp(now: datetime | None = None) -> str:
    """UTC time as YYYYMMDD_HHMMSS, the form used in file names (DOMAIN.md section 7)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the package's own source files: changes whenever the code does, committed
    or not, so cached results are never reused across code changes."""
    import hashlib

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()
