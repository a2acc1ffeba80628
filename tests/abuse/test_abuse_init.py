"""`ewspipe init DIR` refuses a folder it would spoil or cannot write: exit 2 naming it,
nothing written."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from tests.abuse.harness import assert_refused, tree_digest


def test_non_empty_folder_is_refused_without_force(ewspipe, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("mine\n")
    before = tree_digest(tmp_path)
    res = ewspipe("init", ws, "--json")
    assert_refused(res, mentions=[str(ws), "not empty", "--force"], before=before,
                   after=tree_digest(tmp_path))


def test_a_file_is_refused(ewspipe, tmp_path: Path) -> None:
    target = tmp_path / "ws"
    target.write_text("a file\n")
    before = tree_digest(tmp_path)
    res = ewspipe("init", target, "--force", "--json")
    assert_refused(res, mentions=[str(target), "is a file"], before=before,
                   after=tree_digest(tmp_path))


def test_a_file_as_parent_is_refused(ewspipe, tmp_path: Path) -> None:
    parent = tmp_path / "plain"
    parent.write_text("a file\n")
    before = tree_digest(tmp_path)
    res = ewspipe("init", parent / "ws", "--json")
    assert_refused(res, mentions=[str(parent), "not a folder"], before=before,
                   after=tree_digest(tmp_path))


def _lock(folder: Path, on: bool) -> bool:
    """Make ``folder`` read-only: chmod for a user, ``chattr +i`` for root (which writes
    through permissions); False when that is impossible here."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR if on else stat.S_IRWXU)
        return True
    chattr = shutil.which("chattr")
    return chattr is not None and subprocess.run(
        [chattr, "+i" if on else "-i", str(folder)], capture_output=True).returncode == 0


def test_unwritable_parent_is_refused(ewspipe, tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    if not _lock(parent, True):
        pytest.skip("running as root without `chattr +i`: no folder is read-only for root")
    try:
        before = tree_digest(tmp_path)
        res = ewspipe("init", parent / "ws", "--json")
        assert_refused(res, mentions=[str(parent), "not writable"], before=before,
                       after=tree_digest(tmp_path))
    finally:
        _lock(parent, False)
