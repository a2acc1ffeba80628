"""The artifact cache: hash-checked loads, and artifacts holding a pickle count as missing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from tests.models.test_persistence import ORIGIN, TRAIN_LAST, design

from ewspipe.errors import IntegrityError
from ewspipe.models import registry
from ewspipe.store.artifacts import MANIFEST, ArtifactKey, ArtifactManifest, ArtifactStore


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _key() -> ArtifactKey:
    return ArtifactStore.key("small_ridge", "forecasting", "c" * 64, "s" * 64, TRAIN_LAST)


def _saved(root: Path) -> tuple[Any, ArtifactManifest]:
    model = registry.create("stepshifter", {"learner": "ridge", "steps": 2})
    model.fit(design(), train_last=TRAIN_LAST)
    return model, ArtifactStore(root).save(model, _key(), status="deployed",
                                           snapshot_id="cm-test", snapshot_fetched_at="now")


def _plant(root: Path, manifest: ArtifactManifest, payload: Any, *, rehash: bool = True) -> Path:
    """What the issue did: step01 replaced by a pickle, the manifest's sha256 updated."""
    folder = root / manifest.directory
    doc = json.loads((folder / "model.json").read_text())
    (folder / "step01.skops").unlink()
    joblib.dump(payload, folder / "step01.joblib")
    doc["estimators"]["step01"] = {"file": "step01.joblib", "kind": "joblib"}
    (folder / "model.json").write_text(json.dumps(doc))
    files = {k: v for k, v in manifest.files.items() if k != "step01.skops"}
    if rehash:
        for name in ("step01.joblib", "model.json"):
            files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps({**manifest.to_dict(), "files": files}))
    return folder / "step01.joblib"


def test_a_saved_artifact_is_found_and_loads_identically(tmp_path: Path) -> None:
    model, manifest = _saved(tmp_path)
    store = ArtifactStore(tmp_path)
    found = store.find(_key())
    assert found == manifest
    assert store.find_digest("small_ridge", "forecasting", _key().digest) == manifest
    assert not any(name.endswith(".joblib") for name in manifest.files)
    loaded = store.load(found)
    d = design()
    np.testing.assert_array_equal(model.predict(d, origin=ORIGIN, steps=[1, 2]).point,
                                  loaded.predict(d, origin=ORIGIN, steps=[1, 2]).point)


def test_a_planted_pickle_is_a_miss_with_a_warning_and_never_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "pwned"
    _, manifest = _saved(tmp_path / "a")
    _plant(tmp_path / "a", manifest, _Planted(marker))
    store = ArtifactStore(tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="ewspipe.store.artifacts"):
        assert store.find(_key()) is None
        assert store.find_digest("small_ridge", "forecasting", _key().digest) is None
    assert "step01.joblib" in caplog.text and "retraining" in caplog.text
    with pytest.raises(IntegrityError, match=r"step01\.joblib is a pickle"):
        store.load(store.list("small_ridge")[0])  # handed it directly, it does not unpickle
    assert not marker.exists()


def test_a_newer_artifact_is_used_past_a_planted_one(tmp_path: Path) -> None:
    _, planted = _saved(tmp_path)
    _plant(tmp_path, planted, _Planted(tmp_path / "pwned"))
    folder = tmp_path / planted.directory
    future = folder.with_name("29991231_000000_" + folder.name.split("_")[-1])
    folder.rename(future)  # the attacker dates theirs in the future
    (future / MANIFEST).write_text(json.dumps(
        {**json.loads((future / MANIFEST).read_text()),
         "directory": future.relative_to(tmp_path).as_posix()}))
    assert ArtifactStore(tmp_path).find(_key()) is None
    _, fresh = _saved(tmp_path)  # what the retrain writes
    assert ArtifactStore(tmp_path).find(_key()) == fresh
    assert not (tmp_path / "pwned").exists()


def test_an_old_pickled_artifact_loads_only_when_allowed_and_hash_checked(
        tmp_path: Path) -> None:
    model, manifest = _saved(tmp_path)
    _plant(tmp_path, manifest, model.models_[1])  # a genuine legacy artifact
    assert ArtifactStore(tmp_path).find(_key()) is None
    allowed = ArtifactStore(tmp_path, allow_pickle=True)
    found = allowed.find(_key())
    assert found is not None
    d = design()
    np.testing.assert_array_equal(model.predict(d, origin=ORIGIN, steps=[1, 2]).point,
                                  allowed.load(found).predict(d, origin=ORIGIN,
                                                              steps=[1, 2]).point)


def test_allowed_pickles_are_still_refused_on_a_hash_mismatch(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _, manifest = _saved(tmp_path / "a")
    _plant(tmp_path / "a", manifest, _Planted(marker), rehash=False)
    store = ArtifactStore(tmp_path / "a", allow_pickle=True)
    found = store.find(_key())
    assert found is not None
    with pytest.raises(IntegrityError, match=r"(step01\.joblib|model\.json) .*sha256"):
        store.load(found)
    assert not marker.exists()


def test_allowed_pickles_must_be_listed_in_the_manifest(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _, manifest = _saved(tmp_path / "a")
    _plant(tmp_path / "a", manifest, _Planted(marker))
    store = ArtifactStore(tmp_path / "a", allow_pickle=True)
    found = store.find(_key())
    assert found is not None
    unlisted = ArtifactManifest(**{**found.to_dict(), "files": {
        k: v for k, v in found.files.items() if k != "step01.joblib"}})
    with pytest.raises(IntegrityError, match=r"step01\.joblib is a pickle without a sha256"):
        store.load(unlisted)
    assert not marker.exists()
