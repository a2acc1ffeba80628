"""Atomic writes: the one implementation every layer uses (tests/test_atomic_only.py).

The pipeline promises that no reader ever sees a half-written file or folder. Every write
therefore goes to a temporary sibling with a name unique to this process and call (pid +
uuid, so two writers never share one), is fsynced, and is renamed over the final name; the
parent folder is fsynced too so the rename survives a crash. On any failure the temporary is
removed and the old file (if any) stays as it was.

Temporary names are hidden and recognisable by the stores that skip them: files are
``.<name>.<pid>-<hex>.tmp``, folders ``.tmp-<name>-<pid>-<hex>``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "TMP_DIR_PREFIX",
    "atomic_dir",
    "atomic_file",
    "commit_dir",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "json_default",
    "make_temp_dir",
    "process_alive",
    "remove_stale_temps",
    "temp_path",
    "write_bytes",
    "write_json",
    "write_text",
]

TMP_DIR_PREFIX = ".tmp-"


def _token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def temp_path(final: Path) -> Path:
    """A fresh, unique temporary name beside ``final`` (not created)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{_token()}.tmp")


def fsync_file(path: Path) -> None:
    """Flush one file's data to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename still happened
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and ``root`` itself)."""
    root = Path(root)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_file():
            fsync_file(path)
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(root)


def _link_new(tmp: Path, final: Path) -> None:
    """Publish ``tmp`` as ``final`` only if ``final`` does not exist (FileExistsError)."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if final.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(final)) from None
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(
    path: Path, *, mode: int | None = None, exclusive: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write (for writers that need a path, e.g. Parquet); on a
    clean exit it is fsynced and renamed to ``path``, on any failure removed.

    Args:
        mode: permission bits to give the file (default: as created, i.e. the umask).
        exclusive: never replace an existing ``path``: raise FileExistsError instead, even
            when another process creates it meanwhile.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        if mode is not None:
            tmp.chmod(mode)
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _write(path: Path, data: bytes, mode: int | None, exclusive: bool) -> None:
    with atomic_file(path, mode=mode, exclusive=exclusive) as tmp, open(tmp, "xb") as fh:
        fh.write(data)


def write_bytes(
    path: Path, data: bytes, *, mode: int | None = None, exclusive: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file` for the options)."""
    _write(Path(path), data, mode, exclusive)


def write_text(
    path: Path, text: str, *, encoding: str = "utf-8", mode: int | None = None,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_file` for the options)."""
    _write(Path(path), text.encode(encoding), mode, exclusive)


def write_json(
    path: Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Replace ``path`` with ``obj`` as JSON (``json.dumps`` with these options, then a
    newline), atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    write_text(path, text)


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default`` for the records we store: NumPy scalars as Python
    numbers, paths as strings; anything else is a TypeError naming its type."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_TEMP_PID = re.compile(r"^\.(?:tmp-.*-|.*\.)(\d+)-[0-9a-f]{12}(?:\.tmp)?$")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still exists (another user's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` left by writers that died (a
    ``kill -9`` mid-write): their names carry the writer's pid, and one whose process is gone
    will never be committed. Those of live writers are left alone."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).iterdir():
        match = _TEMP_PID.match(path.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def make_temp_dir(final: Path) -> Path:
    """Create a fresh, unique temporary folder beside ``final`` (and ``final``'s parent if
    missing); fill it, then :func:`commit_dir` it or remove it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_DIR_PREFIX}{final.name}-{_token()}"
    tmp.mkdir()
    return tmp


def commit_dir(tmp: Path, final: Path, *, replace: bool = False) -> None:
    """Flush ``tmp`` and rename it to ``final``.

    Without ``replace`` an existing ``final`` is never touched: FileExistsError (the caller
    decides whether a concurrent writer's folder is as good as its own). With ``replace`` the
    old ``final`` is swapped out and deleted only once the new one is in place; if the swap
    fails the old one is put back. ``tmp`` is left to the caller on failure.
    """
    tmp, final = Path(tmp), Path(final)
    fsync_tree(tmp)
    if not replace:
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if final.exists():
                raise FileExistsError(errno.EEXIST, "folder exists", str(final)) from exc
            raise
        fsync_dir(final.parent)
        return
    old = final.parent / f"{TMP_DIR_PREFIX}{final.name}-old-{_token()}"
    had_old = final.exists()
    if had_old:
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if had_old and not final.exists():
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; on a clean exit it is committed with
    :func:`commit_dir` (FileExistsError if ``final`` exists and not ``replace``), on any
    failure removed."""
    tmp = make_temp_dir(final)
    try:
        yield tmp
        commit_dir(tmp, final, replace=replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
