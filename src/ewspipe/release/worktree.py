"""Read-only git access for staging: resolve refs, read files at a commit, check out a commit
into a throw-away worktree.

Staging must never touch the user's branches or working tree, so everything here either
reads (``rev-parse``, ``show``, ``merge-base``) or works in a detached worktree under a
temporary folder that is removed again (``git worktree add --detach`` / ``remove``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ewspipe.errors import EwspipeError, InputError

__all__ = ["GitError", "blob_id", "checkout", "commits_between", "is_ancestor", "repo_root",
           "resolve_commit", "show_file"]


class GitError(EwspipeError):
    """A git command that should have worked did not (exit 1, with git's own message)."""


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError as exc:  # pragma: no cover - git is a hard requirement
        raise InputError("git is not installed or not on PATH; staging needs git") from exc
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done


def repo_root(repo: Path) -> Path:
    """The top folder of the git repository ``repo``; InputError when it is not one."""
    if not Path(repo).is_dir():
        raise InputError(f"repository {repo} is not a folder; pass the product repository")
    done = _git(Path(repo), "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0:
        raise InputError(f"{repo} is not a git repository ({done.stderr.strip()}); run staging "
                         "inside the product repository (with development and production "
                         "branches)")
    return Path(done.stdout.strip())


def resolve_commit(repo: Path, ref: str, *, what: str = "ref") -> str:
    """Full sha of ``ref``; InputError naming the ref when it does not name a commit."""
    if not ref or ref.startswith("-"):
        raise InputError(f"{what} {ref!r} is not a git ref; name a branch, tag or commit")
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if done.returncode != 0:
        raise InputError(f"{what} {ref!r} does not name a commit in {repo}; `git branch -a` and "
                         "`git tag` list what exists")
    return done.stdout.strip()


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    """Whether ``ancestor`` is reachable from ``descendant`` (``merge-base --is-ancestor``)."""
    done = _git(repo, "merge-base", "--is-ancestor", ancestor, descendant, check=False)
    if done.returncode not in (0, 1):
        raise GitError(f"git merge-base --is-ancestor {ancestor} {descendant} failed: "
                       f"{done.stderr.strip()}")
    return done.returncode == 0


def commits_between(repo: Path, base: str, head: str) -> list[str]:
    """One-line summaries of the commits in ``head`` but not in ``base`` (newest first)."""
    done = _git(repo, "log", "--format=%h %s", f"{base}..{head}")
    return [line for line in done.stdout.splitlines() if line]


def show_file(repo: Path, commit: str, path: str) -> str | None:
    """The text of ``path`` at ``commit``, or None when the commit has no such file."""
    done = _git(repo, "show", f"{commit}:{path}", check=False)
    return done.stdout if done.returncode == 0 else None


def blob_id(repo: Path, commit: str, path: str) -> str | None:
    """Git's object id of ``path`` at ``commit`` (equal ids: identical content)."""
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}:{path}", check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


@contextmanager
def checkout(repo: Path, commit: str, *, prefix: str = "ewspipe-stage-") -> Iterator[Path]:
    """``commit`` checked out (detached) in a temporary worktree, removed on exit."""
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    tree = parent / "tree"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        yield tree
    finally:
        _git(repo, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(repo, "worktree", "prune", check=False)
