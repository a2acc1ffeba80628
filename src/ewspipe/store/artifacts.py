"""Fitted models as artifacts: files plus a manifest with provenance and a sha256 per file.

An artifact is keyed by what determines it (model, run type, config hash, data snapshot,
training window end, code fingerprint); an identical request reuses it instead of training
again. Loading verifies every file against the manifest *before* deserialising anything, so a
corrupted file is refused. The hashes do not stop someone who can write the artifact folder
(they can rewrite the manifest too); what does is that models are stored without pickle
(ewspipe.models.persistence) and nothing is unpickled unless ``allow_pickle`` is set. An
artifact that holds a pickle (an older version's, or a planted one) is, by default, skipped
with a warning naming the file, as if it were missing, so the caller retrains the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ewspipe.atomic import TMP_DIR_PREFIX, atomic_dir
from ewspipe.errors import IntegrityError, StoreError
from ewspipe.models.base import BaseForecaster
from ewspipe.models.persistence import load_model, pickled_files, save_model
from ewspipe.panel.snapshot import file_sha256
from ewspipe.provenance import code_fingerprint, code_version, library_versions, timestamp

__all__ = ["ArtifactKey", "ArtifactManifest", "ArtifactStore"]

MANIFEST = "manifest.json"
_TMP = TMP_DIR_PREFIX
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactKey:
    model: str
    run_type: str
    config_hash: str
    snapshot_sha256: str
    train_last: int
    code: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ArtifactManifest:
    key: dict[str, Any]
    digest: str
    model: str
    run_type: str
    status: str
    snapshot_id: str
    snapshot_fetched_at: str
    trained_at: str
    code_commit: str
    code_dirty: bool
    release_tag: str | None
    libraries: dict[str, str]
    files: dict[str, str]
    directory: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ArtifactStore:
    """Fitted models under ``root``. ``allow_pickle`` (the ``[models] allow_pickle`` setting)
    lets artifacts of older versions with pickled learners load; off, they are misses."""

    def __init__(self, root: Path, *, allow_pickle: bool = False) -> None:
        self.root = Path(root)
        self.allow_pickle = allow_pickle

    @staticmethod
    def key(model: str, run_type: str, config_hash: str, snapshot_sha256: str,
            train_last: int) -> ArtifactKey:
        return ArtifactKey(model, run_type, config_hash, snapshot_sha256, int(train_last),
                           code_fingerprint())

    def _dir(self, key: ArtifactKey) -> Path:
        return self.root / key.model / key.run_type

    def find_digest(self, model: str, run_type: str, digest: str) -> ArtifactManifest | None:
        """The newest usable artifact of ``model`` and ``run_type`` whose key has this digest."""
        return self._newest(self.root / model / run_type, digest)

    def find(self, key: ArtifactKey) -> ArtifactManifest | None:
        """The newest usable artifact with this key, if one was stored."""
        return self._newest(self._dir(key), key.digest)

    def _newest(self, base: Path, digest: str) -> ArtifactManifest | None:
        """Newest first, skipping (with a warning) folders holding a pickle when pickles are
        not allowed: such an artifact counts as missing, so the model is fitted again."""
        if not base.is_dir():
            return None
        hits = sorted((p for p in base.glob(f"*_{digest[:16]}") if (p / MANIFEST).is_file()),
                      reverse=True)
        for directory in hits:
            pickles = [] if self.allow_pickle else pickled_files(directory)
            if not pickles:
                return self._read(directory)
            _log.warning(
                "artifact %s holds a pickle (%s), which ewspipe does not load (loading a "
                "pickle can run any code); treating it as missing and retraining. Delete "
                "that folder to silence this warning.", directory, pickles[0].name)
        return None

    def save(
        self,
        model: BaseForecaster,
        key: ArtifactKey,
        *,
        status: str,
        snapshot_id: str,
        snapshot_fetched_at: str,
    ) -> ArtifactManifest:
        stamp = timestamp()
        final = self._dir(key) / f"{stamp}_{key.digest[:16]}"
        try:
            with atomic_dir(final) as tmp:
                written = save_model(model, tmp)
                files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in written}
                code = code_version()
                manifest = ArtifactManifest(
                    key=asdict(key), digest=key.digest, model=key.model, run_type=key.run_type,
                    status=status, snapshot_id=snapshot_id,
                    snapshot_fetched_at=snapshot_fetched_at, trained_at=stamp,
                    code_commit=code.commit, code_dirty=code.dirty, release_tag=code.tag,
                    libraries=library_versions(), files=files,
                    directory=final.relative_to(self.root).as_posix(),
                )
                (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        except FileExistsError:  # same key in the same second: keep the first
            return self._read(final)
        return manifest

    def load(self, manifest: ArtifactManifest) -> BaseForecaster:
        """Verify every file's sha256, then deserialise (no pickle unless ``allow_pickle``,
        and then only pickles whose sha256 the manifest records)."""
        directory = self.verify(manifest)
        unlisted = [p.name for p in pickled_files(directory) if p.name not in manifest.files]
        if self.allow_pickle and unlisted:
            raise IntegrityError(
                f"artifact {manifest.directory}: {unlisted[0]} is a pickle without a sha256 in "
                "its manifest; refusing to load it. Delete the artifact folder and rerun to "
                "retrain."
            )
        return load_model(directory, allow_pickle=self.allow_pickle)

    def verify(self, manifest: ArtifactManifest) -> Path:
        """The artifact's folder, once every file matches its sha256; IntegrityError else."""
        directory = self.root / manifest.directory
        for name, expected in manifest.files.items():
            path = directory / name
            if not path.is_file():
                raise IntegrityError(
                    f"artifact {manifest.directory}: file {name} is missing; delete the artifact "
                    "folder and rerun to retrain"
                )
            if file_sha256(path) != expected:
                raise IntegrityError(
                    f"artifact {manifest.directory}: {name} does not match the sha256 in its "
                    "manifest (tampered or corrupted); refusing to load it. Delete the artifact "
                    "folder and rerun to retrain."
                )
        return directory

    def list(self, model: str | None = None) -> list[ArtifactManifest]:
        if not self.root.is_dir():
            return []
        pattern = f"{model}/*/*/{MANIFEST}" if model else f"*/*/*/{MANIFEST}"
        return [self._read(p.parent) for p in sorted(self.root.glob(pattern))
                if not p.parent.name.startswith(_TMP)]

    def _read(self, directory: Path) -> ArtifactManifest:
        try:
            return ArtifactManifest(**json.loads((directory / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(
                f"{directory / MANIFEST}: unreadable artifact manifest ({exc})"
            ) from exc
