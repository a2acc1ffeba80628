"""A new workspace outside this repository (``ewspipe init DIR``, ``ewspipe.init_workspace``).

The files are package data under ``starter/files`` so that a wheel carries them: the
settings are this repository's own ``ewspipe.toml`` (every default, with its comments; a test
keeps them equal to the built-in defaults), the baseline ``last_value``, the learned models
``amber_tree`` and ``amber_ridge`` and the deployed persistence model ``amber_mean`` copied
from ``models/``, the deployed ensemble of the three (``ensembles/steady_chorus.toml``: a
baseline may not be a member), and a ``.gitignore``. Low in the layers on purpose: it
only copies files, so it reads no settings and imports nothing of the pipeline.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from ewspipe.arguments import as_path
from ewspipe.atomic import write_bytes
from ewspipe.errors import InputError

__all__ = ["STARTER_FILES", "init_workspace"]

#: workspace path -> the packaged file it is copied from (under ``starter/files``)
STARTER_FILES: dict[str, str] = {
    "ewspipe.toml": "ewspipe.toml",
    ".gitignore": "gitignore",
    "models/last_value.toml": "models/last_value.toml",
    "models/amber_tree.toml": "models/amber_tree.toml",
    "models/amber_ridge.toml": "models/amber_ridge.toml",
    "models/amber_mean.toml": "models/amber_mean.toml",
    "ensembles/steady_chorus.toml": "ensembles/steady_chorus.toml",
}


def _check_target(path: Path, force: bool) -> None:
    """Refuse before writing anything, so a refusal leaves no half-made workspace."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a folder: choose a new folder for the "
                         "workspace", parameter="path")
    if path.is_dir():
        if not force and any(path.iterdir()):
            raise InputError(f"{path} is not empty: choose a new or empty folder, or pass "
                             "--force (force=True) to write the starter files into it, "
                             "replacing files of the same names", parameter="path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{path} is not writable: make it writable or choose another "
                             "folder", parameter="path")
        return
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise InputError(f"{parent or path} is not a folder, so {path} cannot be created "
                         "in it: choose another folder", parameter="path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {path}: its parent {parent} is not writable; make "
                         "it writable or choose another folder", parameter="path")


def init_workspace(path: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Write a minimal workspace into the folder ``path`` and return the files written.

    ``path`` must be new or empty unless ``force``; with ``force`` the starter files replace
    files of the same names and every other file stays. ``ewspipe data demo && ewspipe run``
    then works in the folder (no git repository needed).
    """
    target = as_path(path, "path").expanduser()
    _check_target(target, force)
    source = files("ewspipe.starter").joinpath("files")
    written: list[Path] = []
    try:
        for relative, packaged in STARTER_FILES.items():
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(dest, source.joinpath(packaged).read_bytes(), mode=0o644)
            written.append(dest)
    except OSError as exc:  # e.g. a folder under /proc: the checks above cannot see it
        raise InputError(f"cannot write the workspace into {target}: "
                         f"{exc.strerror or exc}; choose another folder",
                         parameter="path") from None
    return written
