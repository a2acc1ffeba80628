"""`ewspipe evaluate` and `ewspipe forecast` end to end on the demo world and on real cm data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ewspipe.store.predictions import read_forecast

REPO = Path(__file__).resolve().parents[2]

SMALL_TREE = """
name = "small_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A quick LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
seed = 7

[hyperparameters.learner_params]
n_estimators = 10
"""

BASELINE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A baseline."
features = []
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with an ewspipe.toml and a few small models."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "small_tree.toml").write_text(SMALL_TREE)
    (models / "zero_line.toml").write_text(BASELINE.format(
        name="zero_line", level="cm", algorithm="zero", status="baseline"))
    (models / "last_value.toml").write_text(BASELINE.format(
        name="last_value", level="cm", algorithm="locf", status="baseline"))
    (models / "old_guess.toml").write_text(BASELINE.format(
        name="old_guess", level="cm", algorithm="locf", status="deprecated"))
    (models / "zero_grid.toml").write_text(BASELINE.format(
        name="zero_grid", level="pgm", algorithm="zero", status="baseline"))
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    return tmp_path


@pytest.fixture
def run(workspace: Path, cli):
    def go(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "30", "--pgm-cells", "100",
              "--last-month", "520").code == 0
    return go


def test_evaluate_stores_predictions_metrics_and_reuses(run, workspace):
    res = run("evaluate", "--run-type", "calibration", "--level", "cm", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    models = {m["model"]: m for m in doc["models"]}
    assert set(models) == {"small_tree", "zero_line", "last_value"}  # deprecated left out
    run_dir = Path(doc["path"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["partition"]["cm"]["origins"] == list(range(444, 457))
    assert record["snapshots"]["cm"]["id"].startswith("cm-")
    fc, meta = read_forecast(run_dir / models["small_tree"]["predictions"])
    assert meta["model"] == "small_tree" and meta["run_type"] == "calibration"
    assert sorted(set(fc.frame["origin"])) == list(range(444, 457))
    assert sorted(set(fc.frame["step"])) == list(range(1, 37))
    assert (fc.frame["month_id"] == fc.frame["origin"] + fc.frame["step"]).all()
    assert np.isfinite(fc.point).all() and (fc.point >= 0).all()
    pooled = models["small_tree"]["metrics"]["pooled"]
    assert pooled["msle"] < models["zero_line"]["metrics"]["pooled"]["msle"]
    assert set(models["small_tree"]["metrics"]["means"]) == {"step", "month", "sequence"}
    assert not models["small_tree"]["reused"]

    again = run("evaluate", "--run-type", "calibration", "--model", "small_tree", "--json")
    second = again.json()["models"][0]
    assert second["reused"] and second["artifact"] == models["small_tree"]["artifact"]
    fc2, _ = read_forecast(Path(again.json()["path"]) / second["predictions"])
    np.testing.assert_array_equal(fc2.point, fc.point)


def test_forecast_covers_last_months_entities(run):
    res = run("forecast", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    for m in doc["models"]:
        fc, _ = read_forecast(Path(doc["path"]) / m["predictions"])
        assert set(fc.frame["month_id"]) == set(range(521, 557))
        assert (fc.frame["origin"] == 520).all()
        n_units = fc.frame[fc.unit_column].nunique()
        assert m["rows"] == n_units * 36
        assert m["metrics"] is None
    assert {m["level"] for m in doc["models"]} == {"cm", "pgm"}


def test_tampered_artifact_is_refused(run, workspace):
    first = run("evaluate", "--run-type", "calibration", "--model", "small_tree", "--json")
    artifact = workspace / "state" / "artifacts" / first.json()["models"][0]["artifact"]
    booster = next(p for p in artifact.iterdir() if p.name != "manifest.json"
                   and p.name != "model.json")
    booster.write_bytes(booster.read_bytes() + b"\n# tampered")
    res = run("evaluate", "--run-type", "calibration", "--model", "small_tree")
    assert res.code == 2
    assert "does not match the sha256" in res.err and "refusing to load" in res.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("evaluate", "--run-type", "forecasting"), "ewspipe forecast"),
        (("evaluate", "--run-type", "testing"), "--run-type"),
        (("evaluate", "--run-type", "calibration", "--model", "old_guess"), "deprecated"),
        (("evaluate", "--run-type", "calibration", "--model", "smal_tree"), "small_tree"),
        (("evaluate", "--run-type", "calibration", "--level", "world"), "--level"),
        (("forecast", "--snapshot", "cm-0000000"), "no snapshot"),
    ],
)
def test_bad_options_exit_2(run, args, needle):
    res = run(*args)
    assert res.code == 2, res.out
    assert needle in res.err


def test_model_whose_level_has_no_data(workspace, cli, tmp_path):
    models = workspace / "models"
    for p in models.glob("*.toml"):
        if p.stem != "zero_grid":
            p.unlink()
    res = cli("--config", str(workspace / "ewspipe.toml"), "forecast")
    assert res.code == 2
    assert "zero_grid" in res.err and "pgm" in res.err


def test_feature_column_missing_from_data(run, workspace):
    spec = SMALL_TREE.replace('"ged_sb", "lag', '"ged_sb", "lag(ged_xx, 1)", "lag')
    spec = spec.replace("small_tree", "other_tree")
    (workspace / "models" / "other_tree.toml").write_text(spec)
    res = run("evaluate", "--run-type", "calibration", "--model", "other_tree")
    assert res.code == 2
    assert "other_tree" in res.err and "ged_xx" in res.err


def test_snapshot_not_covering_partition(workspace, cli):
    go = lambda *a: cli("--config", str(workspace / "ewspipe.toml"), *a)  # noqa: E731
    assert go("data", "demo", "--countries", "30", "--pgm-cells", "100",
              "--last-month", "440").code == 0
    res = go("evaluate", "--run-type", "calibration", "--model", "zero_line")
    assert res.code == 2 and "origins up to 456" in res.err
    assert not any((workspace / "state" / "runs").glob("2*")), "no run may be recorded"


@pytest.mark.shared_data
def test_reference_values_on_real_cm_data(cli, shared_data, tmp_path):
    """Zero and LOCF reproduce the VIEWS figures; the shipped learned model beats 0.37."""
    shutil.copytree(REPO / "models", tmp_path / "models")
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    go = lambda *a: cli("--config", str(tmp_path / "ewspipe.toml"), *a)  # noqa: E731
    path = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    assert go("data", "import", "panel", str(path), "--level", "cm").code == 0
    res = go("evaluate", "--run-type", "calibration", "--model", "zero_line", "--model",
             "last_value", "--model", "log_mean", "--model", "amber_tree", "--json")
    assert res.code == 0, res.err
    msle = {m["model"]: m["metrics"]["pooled"]["msle"] for m in res.json()["models"]}
    assert msle["zero_line"] == pytest.approx(2.147, abs=1e-3)
    assert msle["last_value"] == pytest.approx(0.5635, abs=1e-3)
    assert msle["log_mean"] == pytest.approx(0.391, abs=1e-3)
    assert msle["amber_tree"] <= 0.37


@pytest.mark.parametrize("where", ["predict_chunks", "forecast_writer", "score_chunks"])
def test_a_failure_in_the_background_finish_commits_nothing(run, workspace, monkeypatch,
                                                             where):
    """Predicting, writing and scoring run in a background thread: a failure there still
    fails the run, names its cause, and leaves no run (and no temporary folder) behind."""
    from ewspipe.errors import EwspipeError
    from ewspipe.flows import modelrun

    real = getattr(modelrun, where)

    def failing(*args, **kwargs):
        forecast_or_model = args[0]
        name = getattr(forecast_or_model, "learner", None)
        if name is not None or where != "predict_chunks":  # the stepshifter, or any call
            raise EwspipeError(f"boom in {where}")
        return real(*args, **kwargs)

    monkeypatch.setattr(modelrun, where, failing)
    runs = workspace / "state" / "runs"
    before = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
    res = run("evaluate", "--run-type", "calibration", "--level", "cm")
    assert res.code != 0
    assert f"boom in {where}" in res.err
    after = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
    assert after == before
