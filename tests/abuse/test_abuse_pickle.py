"""Fault-and-abuse cases of issue 18, item 3: a planted pickle must never run.

The issue's reproduction: replace a learner file of a trained model with a malicious pickle,
update its sha256 in the ``manifest.json`` beside it, delete ``tasks/`` and run again. Every
payload here creates a marker file when unpickled; no case may create it. A planted pickle
makes the artifact count as missing (a warning names the file) and the model is retrained; a
file that claims a safe format but is not one, or a setting that is not a boolean, is a clean
refusal (exit 2, one JSON document, the file or option named with the fix).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.abuse.harness import Outcome, assert_refused, tree_digest

from ewspipe.cli.main import main

_MODEL = """name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
status = "deployed"
owner = "tests"
description = "A quick model of the pickle abuse cases."
features = {features}
{hyper}
"""
_FEATURES = '["ged_sb", "lag(ged_sb, 1)"]'
_MODELS = {
    "small_ridge": ("stepshifter", _FEATURES, '[hyperparameters]\nlearner = "ridge"\nseed = 7\n'),
    "small_tree": ("stepshifter", _FEATURES, '[hyperparameters]\nlearner = "lightgbm"\nseed = 7\n'
                   "[hyperparameters.learner_params]\nn_estimators = 3\n"),
    "small_gate": ("hurdle", _FEATURES, '[hyperparameters]\nclassifier = "logistic"\n'
                   'regressor = "lightgbm"\nseed = 7\n'
                   "[hyperparameters.regressor_params]\nn_estimators = 3\n"),
    "last_value": ("locf", "[]", ""),
}
_SETTINGS = ('[workspace]\nstate_dir = "state"\n\n{models}[tracking]\nenabled = false\n\n'
             "[demo]\ncountries = 20\npgm_cells = 50\nlast_month = 520\n\n"
             "[qa]\nexpected_last_month = 520\n")


class _Payload:
    """Unpickling this runs a shell command that creates ``marker`` (an attacker's code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _write_workspace(root: Path, models_section: str = "") -> Path:
    (root / "models").mkdir(parents=True)
    (root / "ensembles").mkdir()
    for name, (algorithm, features, hyper) in _MODELS.items():
        (root / "models" / f"{name}.toml").write_text(_MODEL.format(
            name=name, algorithm=algorithm, features=features, hyper=hyper))
    cfg = root / "ewspipe.toml"
    cfg.write_text(_SETTINGS.format(models=models_section))
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose monthly run trained every model (shared; copy it before changing)."""
    root = tmp_path_factory.mktemp("pickle") / "ws"
    cfg = _write_workspace(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        assert main(["--config", str(cfg), "--state-dir", str(root / "state"), "run",
                     "--json"]) == 0
    return root


@pytest.fixture
def ws(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained workspace."""
    root = tmp_path / "ws"
    shutil.copytree(trained, root)
    return root


def _artifact(ws: Path, model: str) -> Path:
    return sorted((ws / "state" / "artifacts" / model / "forecasting").iterdir())[-1]


def _rehash(folder: Path, *names: str, drop: tuple[str, ...] = ()) -> None:
    """The attacker's step: the manifest's sha256 of the changed files updated to match."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in drop:
        manifest["files"].pop(name, None)
    for name in names:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _edit_model_json(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads((folder / "model.json").read_text())
    change(doc)
    (folder / "model.json").write_text(json.dumps(doc))


def plant_pickle(folder: Path, key: str, marker: Path, *, rehash: bool = True) -> str:
    """Learner ``key`` replaced by ``<key>.joblib`` holding the payload (as the old format
    named it); model.json and the manifest's hashes updated. Returns the planted file name."""
    name = f"{key}.joblib"
    old: list[str] = []

    def point(doc: dict[str, Any]) -> None:
        entry = doc["estimators"].get(key, {})
        if "file" in entry:
            old.append(entry["file"])
            (folder / entry["file"]).unlink()
        doc["estimators"][key] = {"file": name, "kind": "joblib"}

    _edit_model_json(folder, point)
    (folder / name).write_bytes(pickle.dumps(_Payload(marker)))
    if rehash:
        _rehash(folder, name, "model.json", drop=tuple(old))
    return name


def _run(ewspipe: Callable[..., Outcome], ws: Path, *args: str) -> Outcome:
    return ewspipe("--config", ws / "ewspipe.toml", "--state-dir", ws / "state", *args, "--json")


def _warned(caplog: pytest.LogCaptureFixture, folder: Path, name: str) -> bool:
    """The warning (on stderr outside pytest, which captures logging) names the file."""
    return any(r.levelname == "WARNING" and folder.name in r.getMessage()
               and f"holds a pickle ({name})" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- healing: retrain ---


@pytest.mark.parametrize("delete_tasks", [True, False], ids=["tasks-deleted", "tasks-kept"])
def test_a_planted_pickle_in_a_monthly_run_is_retrained_never_run(
        ewspipe: Callable[..., Outcome], ws: Path, delete_tasks: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    """The issue's reproduction, then the same with the task cache still in place."""
    marker = ws / "PWNED"
    folder = _artifact(ws, "small_ridge")
    name = plant_pickle(folder, "step01", marker)
    if delete_tasks:
        shutil.rmtree(ws / "state" / "development" / "tasks")
    result = _run(ewspipe, ws, "run")
    assert not marker.exists(), "the planted pickle was unpickled"
    assert result.code == 0, result.err
    assert json.loads(result.out)["status"] == "ok"
    assert _warned(caplog, folder, name)
    fresh = _artifact(ws, "small_ridge")
    assert fresh != folder and (fresh / "step01.skops").is_file()  # retrained, no pickle
    assert (folder / name).is_file()  # the planted folder is left for the owner to inspect
    again = _run(ewspipe, ws, "run")
    assert again.code == 0 and not marker.exists()


@pytest.mark.parametrize("model,key", [("small_tree", "step01"),
                                       ("small_gate", "classifier_step01"),
                                       ("last_value", "step01")])
def test_a_planted_pickle_under_each_model_kind_is_retrained_never_run(
        ewspipe: Callable[..., Outcome], ws: Path, model: str, key: str,
        caplog: pytest.LogCaptureFixture) -> None:
    marker = ws / "PWNED"
    folder = _artifact(ws, model)
    name = plant_pickle(folder, key, marker)
    shutil.rmtree(ws / "state" / "tasks", ignore_errors=True)
    result = _run(ewspipe, ws, "forecast", "--model", model)
    assert not marker.exists(), "the planted pickle was unpickled"
    assert result.code == 0, result.err
    assert _warned(caplog, folder, name)
    assert _artifact(ws, model) != folder
    assert not any(p.suffix == ".joblib" for p in _artifact(ws, model).iterdir())


# ------------------------------------------------------------------ refusals: exit 2 ---


@pytest.mark.parametrize("value", ['"yes"', "1", '"false"'])
def test_allow_pickle_must_be_a_boolean(ewspipe: Callable[..., Outcome], ws: Path,
                                        value: str) -> None:
    (ws / "ewspipe.toml").write_text(_SETTINGS.format(models=f"[models]\nallow_pickle = "
                                                             f"{value}\n\n"))
    before = tree_digest(ws)
    result = _run(ewspipe, ws, "run")
    assert_refused(result, code=2,
                   mentions=["models.allow_pickle", "ewspipe.toml", "true or false"],
                   before=before, after=tree_digest(ws))


def _renamed_pickle(folder: Path, marker: Path) -> str:
    (folder / "step01.skops").write_bytes(pickle.dumps(_Payload(marker)))
    _rehash(folder, "step01.skops")
    return "not a skops file"


def _untrusted_skops(folder: Path, marker: Path) -> str:
    import numpy as np
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    hostile = FunctionTransformer(func=os.system).fit(np.zeros((2, 1)))
    sio.dump(hostile, folder / "step01.skops")
    _rehash(folder, "step01.skops")
    return "trusted list"


def _pickled_arrays(folder: Path, marker: Path) -> str:
    (folder / "arrays.npz").write_bytes(pickle.dumps(_Payload(marker)))
    _edit_model_json(folder, lambda doc: doc.update(arrays="arrays.npz"))
    _rehash(folder, "arrays.npz", "model.json")
    return "pickled"


def _outside_file(folder: Path, marker: Path) -> str:
    def point(doc: dict[str, Any]) -> None:
        doc["estimators"]["step01"]["file"] = "../../step01.skops"

    shutil.copy(folder / "step01.skops", folder.parent.parent / "step01.skops")
    _edit_model_json(folder, point)
    _rehash(folder, "model.json")
    return "not a plain file name"


def _unknown_kind(folder: Path, marker: Path) -> str:
    (folder / "step01.cloudpickle").write_bytes(pickle.dumps(_Payload(marker)))

    def point(doc: dict[str, Any]) -> None:
        doc["estimators"]["step01"] = {"file": "step01.cloudpickle", "kind": "cloudpickle"}

    _edit_model_json(folder, point)
    _rehash(folder, "step01.cloudpickle", "model.json")
    return "unknown kind 'cloudpickle'"


def _allowed_but_unhashed(folder: Path, marker: Path) -> str:
    settings = folder.parents[4] / "ewspipe.toml"
    settings.write_text(_SETTINGS.format(models="[models]\nallow_pickle = true\n\n"))
    name = plant_pickle(folder, "step01", marker)  # a valid old artifact, hashes recorded,
    (folder / name).write_bytes(pickle.dumps(_Payload(marker.with_name("PWNED2"))))  # changed
    return "does not match the sha256"


@pytest.mark.parametrize("plant", [_renamed_pickle, _untrusted_skops, _pickled_arrays,
                                   _outside_file, _unknown_kind, _allowed_but_unhashed],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_hostile_model_file_is_refused_and_never_run(
        ewspipe: Callable[..., Outcome], ws: Path, plant: Callable[[Path, Path], str]) -> None:
    marker = ws / "PWNED"
    folder = _artifact(ws, "small_ridge")
    why = plant(folder, marker)
    shutil.rmtree(ws / "state" / "tasks", ignore_errors=True)
    artifacts = ws / "state" / "artifacts"
    before = tree_digest(artifacts)
    result = _run(ewspipe, ws, "forecast", "--model", "small_ridge")
    assert not marker.exists(), "the planted file was unpickled"
    assert not marker.with_name("PWNED2").exists()
    assert_refused(result, code=2, mentions=[folder.name, why, "delete", "retrain"],
                   before=before, after=tree_digest(artifacts))
