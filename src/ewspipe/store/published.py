"""The "published" pointer per level and target: which stored run and models users see.

A pointer is one JSON file ``published/<level>/<target>.json`` replaced atomically (written to
a temporary name, fsynced, renamed over the old one); every move is appended to the pointer
history in the state database (:mod:`ewspipe.store.statedb`), so earlier publications can
be listed and restored. The file carries its own sha256 (``content_sha256``, see
:func:`ewspipe.store.integrity.seal_json`), checked on every read: a damaged pointer is an
:class:`~ewspipe.errors.IntegrityError` naming the file and the fix, never a wrong run served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ewspipe.atomic import write_json
from ewspipe.errors import IntegrityError, StoreError
from ewspipe.store.integrity import open_sealed_json, seal_json
from ewspipe.store.statedb import StateDB

__all__ = ["PublishedPointers"]


class PublishedPointers:
    def __init__(self, root: Path, db: StateDB | None, *, environment: str) -> None:
        """``db`` None: the environment has no state database (nothing was ever published
        there); the pointers can be read, not moved."""
        self.root = Path(root)
        self.db = db
        self.environment = environment

    def _path(self, level: str, target: str) -> Path:
        return self.root / level / f"{target}.json"

    def current(self, level: str, target: str) -> dict[str, Any] | None:
        path = self._path(level, target)
        if not path.is_file():
            return None
        fix = (f"restore it from a backup, or re-publish with `ewspipe run --env "
               f"{self.environment}` (the pointer history lists earlier moves: `ewspipe "
               f"forecasts published --level {level} --target {target}`)")
        data = open_sealed_json(path, what="published pointer", fix=fix)
        for key in ("run", "models"):
            if key not in data:
                raise IntegrityError(f"{path}: damaged published pointer (no {key!r}); {fix}")
        return data

    def move(self, pointer: dict[str, Any]) -> dict[str, Any]:
        """Point ``(level, target)`` at ``pointer['run']``; history first, then the file, so
        a crash in between leaves the old pointer in place. Every move is its own history
        entry, numbered (``seq``), so publishing A, B, then A again reads A-B-A. A history
        entry newer than the pointer file never became visible (a crash between the two
        writes): it is dropped before the next move, so the history's newest entry is always
        the pointer users see. Retrying the same ``publish_id`` is a no-op. A pointer file
        deleted or damaged by hand loses no history: the move follows the history's newest
        entry and writes a new file."""
        if self.db is None:
            raise StoreError(f"environment {self.environment!r} has no state database; "
                             "a pointer is moved by `ewspipe run`")
        level, target = pointer["level"], pointer["target"]
        history = self.history(level, target)
        try:
            previous = self.current(level, target)
        except IntegrityError:  # a damaged file: this move replaces it, the history stays
            previous = None
            lost = True
        else:
            lost = previous is None and bool(history)  # a pointer file deleted by hand
        if previous is not None and previous.get("publish_id") == pointer["publish_id"]:
            return previous  # this exact move already happened
        if lost:
            # the history is the record of what was published: keep every entry and follow
            # its newest (a move interrupted before its file was written is kept with it)
            previous = history[-1] if history else None
        else:
            visible = previous.get("publish_id") if previous else None
            seen = [h.get("publish_id") for h in history]
            cut = seen.index(visible) + 1 if visible in seen else 0
            for orphan in history[cut:]:
                self.db.drop_pointer(orphan["publish_id"], self.environment, level, target)
            history = history[:cut]
        if previous is not None and previous.get("publish_id") == pointer["publish_id"]:
            full = previous  # a retry of a move whose file was lost: recorded, write it again
        else:
            full = {**pointer, "environment": self.environment, "seq": len(history) + 1,
                    "previous_run": previous["run"] if previous else None}
            self.db.add_pointer(full)
        path = self._path(level, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, seal_json(full))
        return full

    def history(self, level: str, target: str) -> list[dict[str, Any]]:
        if self.db is None:
            return []
        return self.db.pointer_history(level, target, self.environment)
