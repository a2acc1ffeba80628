"""Hash checks of stored files: each is verified against the sha256 recorded when it was
written, before anyone reads it.

A stored file (a prediction partition, a run record) gets a sidecar ``<name>.sha256`` written
in the same atomic folder commit as the file itself, so the two appear together or not at all.
A Parquet file's sidecar is ``_<name>.sha256``: the leading ``_`` keeps it out of what dataset
readers (pyarrow, pandas, polars) list when they open the prediction store as one dataset; the
name of earlier versions (``<name>.sha256``) is still honoured.
A JSON file replaced in place (a published pointer) carries its hash inside instead
(:func:`seal_json` / :func:`open_sealed_json`): one atomic write, no window in which file and
hash disagree. A mismatch, or a file that cannot be read, is an
:class:`~ewspipe.errors.IntegrityError` naming the file and how to repair it.

Reads stay fast: a file is hashed once per process and the verdict cached by
``(path, mtime_ns, size)``, so the API, which reads the same partitions again and again,
hashes each only after it changed. Files written before hashes were recorded (no sidecar)
are read as before, unverified.

The hashes detect accidental damage (a flipped bit, a truncated copy, an edited file); they
are no defence against someone who can write the state folder, who can rewrite a file and its
hash alike (README, "Limits and threat model").
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from ewspipe.atomic import write_text
from ewspipe.errors import IntegrityError

__all__ = [
    "SEAL_KEY",
    "SIDECAR_PREFIX",
    "SIDECAR_SUFFIX",
    "file_sha256",
    "open_sealed_json",
    "record_sha256",
    "seal_json",
    "sidecar",
    "verify_file",
]

SIDECAR_SUFFIX = ".sha256"
SIDECAR_PREFIX = "_"  # of a Parquet file's: dataset readers skip names starting with "_"
SEAL_KEY = "content_sha256"
_CHUNK = 1 << 20
_LOCK = threading.Lock()
# (path, mtime_ns, size, sidecar mtime_ns) -> None (verified) or the problem found
_VERDICTS: dict[tuple[str, int, int, int], str | None] = {}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    """Where the sha256 of ``path`` is recorded."""
    path = Path(path)
    prefix = SIDECAR_PREFIX if path.suffix == ".parquet" else ""
    return path.with_name(prefix + path.name + SIDECAR_SUFFIX)


def _recorded_sidecar(path: Path) -> Path:
    """The sidecar to check: the current name, else one of an earlier version."""
    side = sidecar(path)
    legacy = path.with_name(path.name + SIDECAR_SUFFIX)
    return legacy if not side.exists() and legacy.exists() else side


def record_sha256(path: Path) -> str:
    """Record the sha256 of a freshly written ``path`` in its sidecar (atomically); call it
    before the folder holding both is committed."""
    value = file_sha256(path)
    write_text(sidecar(path), f"{value}  {Path(path).name}\n")
    return value


def _problem(path: Path, side: Path) -> str | None:
    try:
        recorded = side.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        return f"its recorded sha256 ({side.name}) is unreadable ({exc})"
    try:
        actual = file_sha256(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if actual != recorded:
        return (f"does not match the sha256 recorded when it was written ({side.name}: "
                f"{recorded[:12]}..., now {actual[:12]}...)")
    return None


def verify_file(path: Path, *, fix: str) -> bool:
    """Check ``path`` against its recorded sha256 (once per change of the file).

    Returns:
        True when verified, False when no hash was recorded (a file of an older version).

    Raises:
        IntegrityError: the file is missing, unreadable or damaged; the message names it and
            ends with ``fix``.
    """
    path = Path(path)
    side = _recorded_sidecar(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise IntegrityError(f"{path}: stored file is missing or unreadable "
                             f"({exc.strerror or exc}); {fix}") from exc
    try:
        side_mtime = side.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise IntegrityError(f"{side}: unreadable ({exc.strerror or exc}); {fix}") from exc
    key = (str(path), st.st_mtime_ns, st.st_size, side_mtime)
    with _LOCK:
        known = key in _VERDICTS
        problem = _VERDICTS.get(key)
    if not known:
        problem = _problem(path, side)
        with _LOCK:
            _VERDICTS[key] = problem
    if problem is not None:
        raise IntegrityError(f"{path}: stored file is damaged: {problem}; {fix}")
    return True


def _canonical(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def seal_json(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` plus its own sha256 (``content_sha256``, over the other keys)."""
    return {**doc, SEAL_KEY: _canonical(doc)}


def open_sealed_json(path: Path, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object written with :func:`seal_json`, checked and without the seal (an
    unsealed file of an older version is returned as it is).

    Raises:
        IntegrityError: unreadable, not a JSON object, or its content does not match its seal.
    """
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable {what} ({exc}); {fix}") from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{path}: unreadable {what} (not a JSON object); {fix}")
    seal = doc.pop(SEAL_KEY, None)
    if seal is not None and seal != _canonical(doc):
        raise IntegrityError(f"{path}: {what} is damaged: its content does not match the "
                             f"sha256 recorded in it ({SEAL_KEY}); {fix}")
    return doc
