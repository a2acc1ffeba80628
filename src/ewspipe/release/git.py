"""A small typed wrapper over the ``git`` command line for plain local repositories.

Only what releases need: resolve refs, inspect branches, tags and history, and the few
operations that add to history (commit, merge, annotated tag, branch). Nothing here forces,
rebases or resets: published history is never rewritten. Problems a user can fix (not a git
repository, unknown ref) raise :class:`InputError`; a repository in the wrong state (dirty
worktree, wrong branch, a git command that failed) raises :class:`GitFailed` (exit 1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ewspipe.errors import CheckFailed, InputError

__all__ = ["Commit", "Git", "GitFailed", "MergeConflict"]


class GitFailed(CheckFailed):
    """The repository is not in a state the release command can act on."""


class MergeConflict(GitFailed):
    """A merge stopped on conflicts (the merge has been aborted)."""

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    body: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:7]


class Git:
    """Git commands against the repository that contains ``path``."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.exists():
            raise InputError(f"repository {path} does not exist; pass --repo PATH of a git "
                             "repository")
        where = path if path.is_dir() else path.parent
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise InputError(f"{path} is not inside a git repository; run `git init` there or "
                             "pass --repo PATH")
        self.root = Path(out.stdout.strip())

    # ------------------------------------------------------------------ plumbing
    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        """``git ARGS`` in the repository; stdout without the trailing newline."""
        full_env = {**os.environ, **(env or {})}
        out = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True,
                             env=full_env)
        if check and out.returncode != 0:
            detail = (out.stderr or out.stdout).strip()
            raise GitFailed(f"git {' '.join(args)} failed in {self.root}: {detail}")
        return out.stdout.rstrip("\n")

    def ok(self, *args: str) -> bool:
        """Whether ``git ARGS`` exits 0 (for yes/no questions)."""
        return subprocess.run(["git", *args], cwd=self.root, capture_output=True,
                              text=True).returncode == 0

    # ------------------------------------------------------------------ refs
    def rev(self, ref: str) -> str | None:
        """The full commit sha ``ref`` names, or None (also for a ref that looks like an
        option: it is never passed to git as one)."""
        if not ref or ref.startswith("-"):
            return None
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                             cwd=self.root, capture_output=True, text=True)
        return out.stdout.strip() or None if out.returncode == 0 else None

    def resolve(self, ref: str, *, what: str = "ref", parameter: str | None = None) -> str:
        """Like :meth:`rev` but an unknown ref is bad input (``parameter``: the argument
        that gave it, see :class:`ewspipe.errors.InputError`)."""
        sha = self.rev(ref)
        if sha is None:
            raise InputError(f"{what} {ref!r} is not a branch, tag or commit of {self.root}; "
                             "check the name with `git branch -a` / `git tag`",
                             parameter=parameter)
        return sha

    def head(self) -> str | None:
        return self.rev("HEAD")

    def current_branch(self) -> str | None:
        out = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return out or None

    def branch_exists(self, name: str) -> bool:
        return self.ok("show-ref", "--verify", "--quiet", f"refs/heads/{name}")

    def branches(self, pattern: str) -> list[str]:
        out = self.run("for-each-ref", "--format=%(refname:short)", f"refs/heads/{pattern}")
        return [b for b in out.splitlines() if b]

    def tag_exists(self, name: str) -> bool:
        return self.ok("show-ref", "--verify", "--quiet", f"refs/tags/{name}")

    def tags(self, pattern: str = "*") -> list[str]:
        out = self.run("tag", "--list", pattern)
        return [t for t in out.splitlines() if t]

    def tags_at(self, commit: str) -> list[str]:
        out = self.run("tag", "--points-at", commit)
        return [t for t in out.splitlines() if t]

    def tag_message(self, tag: str) -> str:
        return self.run("for-each-ref", f"refs/tags/{tag}", "--format=%(contents)")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", ancestor, descendant)

    def tree(self, ref: str) -> str:
        return self.run("rev-parse", f"{ref}^{{tree}}")

    def same_tree(self, a: str, b: str, *, ignore: tuple[str, ...] = ()) -> bool:
        """Whether the trees of ``a`` and ``b`` (commits or trees) hold the same files, not
        counting the paths in ``ignore`` (e.g. CHANGELOG.md, which releases append to)."""
        excludes = [f":(exclude){p}" for p in ignore]
        out = subprocess.run(["git", "diff", "--quiet", a, b, "--", ".", *excludes],
                             cwd=self.root, capture_output=True, text=True)
        if out.returncode not in (0, 1):
            raise GitFailed(f"git diff {a} {b} failed: {out.stderr.strip()}")
        return out.returncode == 0

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The tree a merge of ``theirs`` into ``ours`` would produce (computed in memory with
        ``git merge-tree --write-tree``), or None when it would conflict."""
        out = subprocess.run(["git", "merge-tree", "--write-tree", ours, theirs],
                             cwd=self.root, capture_output=True, text=True)
        if out.returncode == 1:
            return None
        if out.returncode != 0:
            raise GitFailed(f"git merge-tree {ours} {theirs} failed: {out.stderr.strip()}")
        return out.stdout.splitlines()[0].strip()

    def tree_with_file(self, ref: str, path: str, text: str) -> str:
        """A tree object equal to ``ref``'s tree with ``path`` holding ``text``: built in a
        temporary index (GIT_INDEX_FILE), so the user's index and worktree are never touched.
        The same inputs always give the same tree id."""
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin", "--path", path],
                              cwd=self.root, input=text, capture_output=True, text=True)
        if blob.returncode != 0:
            raise GitFailed(f"git hash-object {path} failed: {blob.stderr.strip()}")
        with tempfile.TemporaryDirectory(prefix="ewspipe-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", f"{ref}^{{tree}}", env=env)
            self.run("update-index", "--add", "--cacheinfo",
                     f"100644,{blob.stdout.strip()},{path}", env=env)
            return self.run("write-tree", env=env)

    def ahead_behind(self, left: str, right: str) -> tuple[int, int]:
        """(commits in ``left`` not in ``right``, commits in ``right`` not in ``left``)."""
        out = self.run("rev-list", "--left-right", "--count", f"{left}...{right}")
        a, b = out.split()
        return int(a), int(b)

    # ------------------------------------------------------------------ content
    def commits(self, rev_range: str, *, merges: bool = False) -> list[Commit]:
        """Commits of ``rev_range`` newest first (without merge commits unless ``merges``)."""
        sep, end = "\x1f", "\x1e"
        args = ["log", f"--format=%H{sep}%s{sep}%b{sep}%an{end}"]
        if not merges:
            args.append("--no-merges")
        out = self.run(*args, rev_range, "--")
        found = []
        for chunk in out.split(end):
            chunk = chunk.strip("\n")
            if not chunk:
                continue
            sha, subject, body, author = chunk.split(sep)
            found.append(Commit(sha, subject, body.strip(), author))
        return found

    def changed_files(self, old: str, new: str) -> list[str]:
        out = self.run("diff", "--name-only", old, new, "--")
        return [p for p in out.splitlines() if p]

    def show(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref``, or None when it does not exist there."""
        out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=self.root,
                             capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else None

    def show_bytes(self, ref: str, path: str) -> bytes | None:
        """The exact bytes of ``path`` at ``ref`` (None when absent): for hashing."""
        out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=self.root,
                             capture_output=True)
        return out.stdout if out.returncode == 0 else None

    def ls_files(self, ref: str, folder: str) -> list[str]:
        """Every file below ``folder`` at ``ref``, recursively (paths from the root)."""
        out = self.run("ls-tree", "-r", "--name-only", ref, "--", f"{folder.rstrip('/')}/")
        return [p for p in out.splitlines() if p]

    def blob(self, ref: str, path: str) -> str | None:
        """Git's object id of ``path`` at ``ref`` (equal ids: identical content), or None."""
        out = self.run("rev-parse", "--verify", "--quiet", f"{ref}:{path}", check=False)
        return out.strip() or None

    @contextmanager
    def worktree(self, commit: str, *, prefix: str = "ewspipe-stage-") -> Iterator[Path]:
        """``commit`` checked out (detached) in a temporary worktree, removed on exit; the
        repository's own branches and working tree are never touched."""
        parent = Path(tempfile.mkdtemp(prefix=prefix))
        tree = parent / "tree"
        try:
            self.run("worktree", "add", "--detach", "--quiet", str(tree), commit)
            yield tree
        finally:
            self.run("worktree", "remove", "--force", str(tree), check=False)
            shutil.rmtree(parent, ignore_errors=True)
            self.run("worktree", "prune", check=False)

    def ls_tree(self, ref: str, folder: str) -> list[str]:
        out = self.run("ls-tree", "--name-only", f"{ref}", f"{folder.rstrip('/')}/")
        return [p for p in out.splitlines() if p]

    def conflicts(self, ours: str, theirs: str) -> list[str]:
        """Files a merge of ``theirs`` into ``ours`` would conflict in (computed in memory
        with ``git merge-tree``; nothing in the repository changes)."""
        out = subprocess.run(["git", "merge-tree", "--write-tree", "--name-only", ours, theirs],
                             cwd=self.root, capture_output=True, text=True)
        if out.returncode == 0:
            return []
        if out.returncode != 1:
            raise GitFailed(f"git merge-tree {ours} {theirs} failed: {out.stderr.strip()}")
        lines = out.stdout.splitlines()[1:]
        files = []
        for line in lines:
            if not line.strip():
                break
            files.append(line.strip())
        return sorted(set(files))

    def config(self, key: str) -> str | None:
        return self.run("config", "--get", key, check=False) or None

    # ------------------------------------------------------------------ state
    def dirty_files(self) -> list[str]:
        """Tracked files with uncommitted changes (untracked files do not count)."""
        out = self.run("status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line]

    def restore(self, path: str) -> None:
        """Drop the staged and unstaged changes of ``path`` (back to HEAD's version)."""
        self.run("reset", "--quiet", "HEAD", "--", path)
        self.run("checkout", "--", path)

    def require_clean(self, action: str) -> None:
        dirty = self.dirty_files()
        if dirty:
            shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
            raise GitFailed(f"refusing to {action}: the worktree of {self.root} has uncommitted "
                            f"changes ({shown}); commit or stash them first")

    def require_branch(self, allowed: list[str], action: str) -> str:
        branch = self.current_branch()
        if branch not in allowed:
            raise GitFailed(f"refusing to {action} on {branch or 'a detached HEAD'}: check out "
                            f"{' or '.join(allowed)} first (git checkout {allowed[0]})")
        assert branch is not None
        return branch

    def git_dir(self, *, common: bool = False) -> Path:
        """This worktree's git folder, or (``common``) the one every worktree shares."""
        git_dir = Path(self.run("rev-parse", "--git-common-dir" if common else "--git-dir"))
        return git_dir if git_dir.is_absolute() else self.root / git_dir

    def merging(self) -> bool:
        """Whether a merge was left half-done (e.g. the process was killed inside git)."""
        return self.git_dir().joinpath("MERGE_HEAD").exists()

    def abort_merge(self) -> None:
        if self.merging():
            self.run("merge", "--abort")

    # ------------------------------------------------------------------ history
    def checkout(self, branch: str) -> None:
        if self.current_branch() != branch:
            self.run("checkout", "--quiet", branch)

    def create_branch(self, name: str, start: str) -> None:
        self.run("branch", name, start)

    def merge(self, ref: str, message: str, *, no_ff: bool = True) -> None:
        """Merge ``ref`` into the current branch; on conflict abort and raise
        :class:`MergeConflict` naming the files, leaving the branch untouched."""
        args = ["merge", "--no-edit", "-m", message]
        if no_ff:
            args.insert(1, "--no-ff")
        out = subprocess.run(["git", *args, ref], cwd=self.root, capture_output=True, text=True)
        if out.returncode == 0:
            return
        files = self.run("diff", "--name-only", "--diff-filter=U", check=False).splitlines()
        self.abort_merge()
        if files:
            raise MergeConflict(f"merging {ref} into {self.current_branch()} conflicts in "
                                f"{', '.join(files)}", files)
        raise GitFailed(f"git merge {ref} failed: {(out.stderr or out.stdout).strip()}")

    def commit_file(self, path: str, text: str, message: str) -> str:
        """Write ``path`` (relative to the root), commit it alone, return the new commit."""
        target = self.root / path
        target.write_text(text)
        self.run("add", "--", path)
        self.run("commit", "--quiet", "-m", message, "--", path)
        return self.resolve("HEAD")

    def commit_tree(self, tree: str, parent: str, message: str, *, date: str) -> str:
        """A commit object with ``tree`` and one ``parent`` (not on any branch yet). ``date``
        fixes author and committer time, so the same call yields the same commit."""
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        return self.run("commit-tree", tree, "-p", parent, "-m", message, env=env)

    def fast_forward(self, commit: str) -> None:
        """Move the current branch (and worktree) forward to ``commit``."""
        self.run("merge", "--quiet", "--ff-only", commit)

    def annotated_tag(self, name: str, commit: str, message: str) -> None:
        out = subprocess.run(["git", "tag", "--annotate", "--cleanup=verbatim", name, commit,
                              "--file", "-"], cwd=self.root, input=message, capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise GitFailed(f"git tag {name} failed: {(out.stderr or out.stdout).strip()}")
