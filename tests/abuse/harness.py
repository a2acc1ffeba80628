"""The one set of assertions every fault-and-abuse case makes.

A refusal is correct only when all of these hold: the exit code is the promised one (2 bad
input, 1 failed check), ``--json`` prints exactly one JSON document carrying the error, no
traceback reaches the user, the message names what is at fault (file, option, row, model) and
how to fix it, and nothing was written or lost (the watched folders are byte-identical).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outcome", "assert_refused", "tree_digest"]


@dataclass(frozen=True)
class Outcome:
    """What a CLI call printed and returned."""

    code: int
    out: str
    err: str


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` -> sha256 of its bytes ("dir" for folders).

    Compare two digests to prove a refused command wrote, moved or deleted nothing. A missing
    root digests as absent, so creating it is also caught."""
    digest: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            digest[str(root)] = "absent"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            digest[dirpath] = "dir"
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink():
                    digest[str(path)] = "link:" + os.readlink(path)
                    continue
                try:
                    digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError as exc:  # unreadable on purpose (chmod 000): record that
                    digest[str(path)] = f"unreadable:{exc.errno}"
    return digest


def assert_refused(
    result: Outcome,
    *,
    code: int = 2,
    mentions: Iterable[str] = (),
    json_doc: bool = True,
    before: dict[str, str] | None = None,
    after: dict[str, str] | None = None,
) -> dict:
    """Assert a clean refusal and return the JSON error document (``{}`` without --json).

    ``mentions`` are substrings the message must contain (case-insensitive): the file, option
    or row at fault and the fix. ``before``/``after`` are :func:`tree_digest` results that must
    be equal (nothing written or lost)."""
    both = result.out + result.err
    assert "Traceback" not in both, f"a traceback reached the user:\n{both}"
    assert result.code == code, f"exit {result.code}, expected {code}:\n{both}"
    doc: dict = {}
    if json_doc:
        try:
            doc = json.loads(result.out)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"--json did not print exactly one JSON document:\n{result.out!r}") from exc
        assert isinstance(doc, dict) and doc.get("error"), f"no error in the JSON document: {doc}"
        assert doc.get("exit_code") == code, doc
    message = (doc.get("error") if doc else result.err) or both
    for needle in mentions:
        assert needle.lower() in message.lower(), f"message does not mention {needle!r}: {message}"
    if before is not None or after is not None:
        assert before is not None and after is not None
        changed = sorted(set(before.items()) ^ set(after.items()))
        assert before == after, f"a refused command changed files: {changed[:10]}"
    return doc
