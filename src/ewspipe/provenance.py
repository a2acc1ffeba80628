"""Where a result came from: code version (git commit, dirty flag, release tag), libraries.

Read once per process; a checkout without git (e.g. an installed wheel) reports "unknown"
rather than failing, since provenance must never stop a run.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ewspipe import __version__

__all__ = ["CodeVersion", "code_fingerprint", "code_version", "dependency_versions", "engine_info",
           "fingerprint_files", "git_output", "library_versions", "timestamp"]

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


def fingerprint_files(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over ``(relative posix path, bytes)`` of a package's ``*.py`` files, in path
    order: the one definition of a code fingerprint, for the running package
    (:func:`code_fingerprint`) and for a package read out of a git tree (release manifests)."""
    import hashlib

    h = hashlib.sha256()
    for rel, data in sorted(files, key=lambda item: tuple(item[0].split("/"))):
        h.update(rel.encode())
        h.update(data)
    return h.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the package's own source files: changes whenever the code does, committed
    or not, so cached results are never reused across code changes."""
    root = Path(__file__).resolve().parent
    return fingerprint_files((path.relative_to(root).as_posix(), path.read_bytes())
                             for path in root.rglob("*.py"))


@functools.cache
def dependency_versions() -> dict[str, str]:
    """Installed versions of ewspipe's declared core dependencies (extras left out)."""
    import re
    from importlib.metadata import requires

    found: dict[str, str] = {}
    for req in requires("ewspipe") or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def engine_info() -> dict[str, Any]:
    """The engine this process runs: ewspipe version, source fingerprint and the resolved
    core dependency versions. A release records it; a production run compares with it."""
    return {"ewspipe": __version__, "fingerprint": code_fingerprint(),
            "dependencies": dependency_versions()}
