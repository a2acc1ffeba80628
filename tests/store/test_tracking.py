"""MLflow tracking of evaluation and forecast runs (SQLite store in the state directory)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest

from ewspipe.errors import SettingsError
from ewspipe.settings import load_settings
from ewspipe.store.predictions import read_forecast
from ewspipe.store.tracking import track_run, tracking_uri

TREE = """
name = "quick_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "A tiny LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
seed = 3

[hyperparameters.learner_params]
n_estimators = 5
"""

ZERO = """
name = "zero_line"
level = "cm"
target = "ged_sb"
algorithm = "zero"
status = "baseline"
owner = "tests"
description = "All zeros."
features = []
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "quick_tree.toml").write_text(TREE)
    (models / "zero_line.toml").write_text(ZERO)
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    return tmp_path


@pytest.fixture
def run(workspace: Path, cli):
    def go(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "20", "--pgm-cells", "50",
              "--last-month", "520").code == 0
    return go


def _client(workspace: Path):
    tracking = pytest.importorskip("mlflow.tracking")
    settings = load_settings(workspace / "ewspipe.toml")
    return tracking.MlflowClient(tracking_uri=tracking_uri(settings))


def test_evaluation_run_is_logged(run, workspace):
    pytest.importorskip("mlflow")
    res = run("evaluate", "--run-type", "calibration", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    tracked = doc["tracking"]
    assert tracked["status"] == "logged" and not tracked["warning"], tracked
    assert tracked["uri"] == f"sqlite:///{(workspace / 'state' / 'mlflow.db').resolve()}"
    assert (workspace / "state" / "mlflow.db").is_file()
    assert set(tracked["model_runs"]) == {"quick_tree", "zero_line"}

    client = _client(workspace)
    experiment = client.get_experiment_by_name("ewspipe-calibration")
    assert experiment is not None and experiment.experiment_id == tracked["experiment_id"]
    assert experiment.artifact_location == (workspace / "state" / "mlruns").as_uri()

    parent = client.get_run(tracked["parent_run_id"])
    assert parent.data.tags["ewspipe.run_id"] == doc["run_id"]
    assert parent.data.tags["ewspipe.role"] == "run"
    assert parent.data.tags["ewspipe.snapshots"].startswith("cm:cm-")
    assert parent.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["run.json"]

    model = {m["model"]: m for m in doc["models"]}["quick_tree"]
    child = client.get_run(tracked["model_runs"]["quick_tree"])
    tags, params = child.data.tags, child.data.params
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["mlflow.runName"] == "quick_tree"
    assert tags["ewspipe.run_id"] == doc["run_id"]
    assert tags["ewspipe.snapshot"] == model["snapshot"]
    assert tags["ewspipe.code_commit"] == doc["code"]["commit"]
    assert tags["ewspipe.code_dirty"] == str(doc["code"]["dirty"]).lower()
    assert tags["ewspipe.release_tag"] == (doc["code"]["tag"] or "none")
    assert tags["ewspipe.environment"] == "development"
    assert tags["ewspipe.model_status"] == "shadow"

    _, meta = read_forecast(Path(doc["path"]) / model["predictions"])
    assert params["config_hash"] == meta["config_hash"] == tags["ewspipe.config_hash"]
    assert params["algorithm"] == "stepshifter" and params["level"] == "cm"
    assert params["target"] == "ged_sb" and params["n_features"] == "2"
    assert params["features"] == "ged_sb; lag(ged_sb, 1)"
    assert params["hyperparameters.learner"] == "lightgbm"
    assert params["hyperparameters.learner_params.n_estimators"] == "5"

    history = client.get_metric_history(child.info.run_id, "step/msle")
    assert sorted(m.step for m in history) == list(range(1, 37))
    expected = {g["group"]: g["value"] for g in model["metrics"]["groups"]["step"]
                if g["metric"] == "msle"}
    assert {m.step: m.value for m in history} == pytest.approx(expected)
    metrics = child.data.metrics
    # default [tracking] step_metrics: msle, mse, crps as series; mae only pooled / means
    assert "step/mse" in metrics and "step/mae" not in metrics and "pooled/mae" in metrics
    assert metrics["pooled/msle"] == pytest.approx(model["metrics"]["pooled"]["msle"])
    for scheme in ("step", "month", "sequence"):
        assert metrics[f"{scheme}_mean/mse"] == pytest.approx(
            model["metrics"]["means"][scheme]["mse"])
    assert metrics["rows"] == model["rows"]

    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert artifacts == {"config.json", "metrics"}
    assert [a.path for a in client.list_artifacts(child.info.run_id, "metrics")] == [
        "metrics/quick_tree.json"]

    text = run("evaluate", "--run-type", "calibration", "--model", "zero_line")
    assert text.code == 0 and "tracked: MLflow experiment ewspipe-calibration" in text.out
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`ewspipe.role` = 'run'")
    assert len(runs) == 2
    _report_is_logged(run, workspace, doc)


def _report_is_logged(run, workspace: Path, doc: dict) -> None:
    """The report is written after its run was tracked (`evaluate report RUN`, as
    `evaluate --report` does): it is logged to the run's MLflow run, page and figures, and
    again when it is re-written (shares the evaluation of the test above: the costly part)."""
    pytest.importorskip("matplotlib")
    res = run("evaluate", "report", doc["run_id"], "--json")
    assert res.code == 0, res.err
    parent = doc["tracking"]["parent_run_id"]
    tracked = res.json()["tracking"]
    assert tracked["status"] == "logged" and tracked["parent_run_id"] == parent, tracked
    client = _client(workspace)
    folder = Path(res.json()["report"]).parent
    logged = {Path(a.path).name for a in client.list_artifacts(parent, "report")}
    assert logged == {p.name for p in folder.iterdir()}
    assert "index.html" in logged and any(n.endswith((".png", ".svg")) for n in logged)
    page = client.download_artifacts(parent, "report/index.html", str(workspace))
    assert Path(page).read_bytes() == (folder / "index.html").read_bytes()


def test_forecast_run_is_logged_without_scores(run, workspace):
    pytest.importorskip("mlflow")
    res = run("forecast", "--model", "zero_line", "--json")
    assert res.code == 0, res.err
    tracked = res.json()["tracking"]
    assert tracked["status"] == "logged" and tracked["experiment"] == "ewspipe-forecasting"
    child = _client(workspace).get_run(tracked["model_runs"]["zero_line"])
    assert child.data.metrics["rows"] == res.json()["models"][0]["rows"]
    assert not any(k.startswith(("pooled/", "step/")) for k in child.data.metrics)
    assert child.data.params["algorithm"] == "zero"


def test_forecast_run_registers_model_versions_evaluation_does_not(run, workspace):
    """A release points the ``production`` alias at what it deploys: each forecasting run's
    model becomes a registered version whose source is its hash-verified artifact."""
    pytest.importorskip("mlflow")
    assert run("evaluate", "--run-type", "calibration", "--model", "quick_tree").code == 0
    client = _client(workspace)
    assert client.search_model_versions("name = 'quick_tree'") == []
    first = run("forecast", "--model", "quick_tree", "--json")
    assert first.code == 0, first.err
    [version] = client.search_model_versions("name = 'quick_tree'")
    settings = load_settings(workspace / "ewspipe.toml")
    artifact = first.json()["models"][0]["artifact"]
    assert version.tags["ewspipe.artifact_uri"] == \
        (settings.artifact_dir / artifact).resolve().as_uri()
    assert version.run_id == first.json()["tracking"]["model_runs"]["quick_tree"]
    # its pyfunc flavour serves the run's stored forecast, exactly
    assert version.source.endswith("/artifacts/pyfunc/quick_tree")
    served = _served(settings, "models:/quick_tree/1", None)
    stored = pd.read_parquet(Path(first.json()["path"]) / "predictions" / "quick_tree.parquet")
    pd.testing.assert_frame_equal(served, stored, check_exact=True)
    some = stored.iloc[[5, 0, 5]][["month_id", "country_id"]]
    pd.testing.assert_frame_equal(_served(settings, "models:/quick_tree/1", some),
                                  stored.iloc[[0, 5]].reset_index(drop=True))
    assert version.tags["ewspipe.run_id"] == first.json()["run_id"]
    assert len(version.tags["ewspipe.config_hash"]) >= 12
    assert run("forecast", "--model", "quick_tree").code == 0  # a new run, a new version
    assert len(client.search_model_versions("name = 'quick_tree'")) == 2


def test_tracking_a_run_twice_logs_it_once(run, workspace):
    pytest.importorskip("mlflow")
    from ewspipe.catalog import load_catalog
    from ewspipe.flows.modelrun import evaluate_models

    settings = load_settings(workspace / "ewspipe.toml", state_dir=workspace / "state")
    catalog = load_catalog(settings.models_dir)
    result = evaluate_models(settings, catalog, run_type="calibration", names=["zero_line"])
    assert result.record["tracking"]["status"] == "logged"
    again = track_run(settings, result)
    assert again.status == "already_logged"
    assert again.parent_run_id == result.record["tracking"]["parent_run_id"]


def test_disabled_logs_nothing(run, workspace):
    (workspace / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    res = run("evaluate", "--run-type", "calibration", "--model", "zero_line", "--json")
    assert res.code == 0, res.err
    assert res.json()["tracking"]["status"] == "disabled"
    assert not (workspace / "state" / "mlflow.db").exists()
    assert not (workspace / "state" / "mlruns").exists()
    text = run("evaluate", "--run-type", "calibration", "--model", "zero_line")
    assert "tracked" not in text.out and "warning" not in text.out


def test_broken_uri_warns_and_keeps_the_run(run, workspace, caplog):
    pytest.importorskip("mlflow")
    blocker = workspace / "not_a_folder"
    blocker.write_text("a file where the store's folder should be\n")
    (workspace / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\n'
        f'uri = "sqlite:///{blocker}/mlflow.db"\n')
    with caplog.at_level(logging.WARNING, logger="ewspipe.store.tracking"):
        res = run("evaluate", "--run-type", "calibration", "--model", "zero_line", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    tracked = doc["tracking"]
    assert tracked["status"] == "failed" and tracked["warning"]
    assert "the run's outputs are stored" in tracked["message"]
    assert any("MLflow tracking of run" in r.message for r in caplog.records)
    run_dir = Path(doc["path"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["run_id"] == doc["run_id"] and "tracking" not in record
    assert (run_dir / "predictions" / "zero_line.parquet").is_file()
    assert (run_dir / "metrics" / "zero_line.json").is_file()
    text = run("evaluate", "--run-type", "calibration", "--model", "zero_line")
    assert text.code == 0 and "warning: MLflow tracking of run" in text.out


def test_without_mlflow_tracking_is_unavailable(run, workspace, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import now fails
    res = run("evaluate", "--run-type", "calibration", "--model", "zero_line", "--json")
    assert res.code == 0, res.err
    tracked = res.json()["tracking"]
    assert tracked["status"] == "unavailable" and tracked["warning"]
    assert "pip install mlflow-skinny" in tracked["message"]
    assert (Path(res.json()["path"]) / "run.json").is_file()


def test_tracking_section_is_strict(tmp_path):
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[tracking]\nenabeld = false\n')
    with pytest.raises(SettingsError, match=r"tracking\.enabeld"):
        load_settings(cfg)
    cfg.write_text('[tracking]\nuri = "sqlite:////tmp/x.db"\n')
    settings = load_settings(cfg)
    assert settings.tracking.enabled and tracking_uri(settings) == "sqlite:////tmp/x.db"


def test_credentials_in_the_uri_are_never_printed(tmp_path, monkeypatch, caplog):
    pytest.importorskip("mlflow")
    from ewspipe.flows.modelrun import RunResult

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[tracking]\nuri = "http://bob:s3cret@127.0.0.1:1"\n')  # nothing listens
    settings = load_settings(cfg, state_dir=tmp_path / "state")
    run = RunResult("20260101_000000_evaluate_calibration_abcdef", "evaluate", "calibration",
                    str(tmp_path), [], {})
    with caplog.at_level(logging.WARNING, logger="ewspipe.store.tracking"):
        result = track_run(settings, run)
    assert result.status == "failed" and result.warning
    assert "s3cret" not in json.dumps(result.to_dict()) and "s3cret" not in caplog.text
    assert "http://***@127.0.0.1:1" in result.message


def test_mlflow_ui_command_follows_the_tracking_uri(tmp_path, cli):
    """`ewspipe mlflow-ui` names the configured store, masks credentials, and says that a
    tracking server needs no command (it serves its own UI)."""
    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text('[tracking]\nuri = "postgresql://bob:s3cret@db.example/mlflow"\n')
    shown = cli("--config", str(cfg), "mlflow-ui", "--json")
    assert shown.code == 0, shown.err
    assert "s3cret" not in shown.out
    assert shown.json()["command"][2:4] == ["--backend-store-uri",
                                           "postgresql://***@db.example/mlflow"]
    cfg.write_text('[tracking]\nuri = "http://mlflow.example:5000"\n')
    served = cli("--config", str(cfg), "mlflow-ui")
    assert served.code == 0 and "serves the MLflow UI itself" in served.out
    cfg.write_text('[tracking]\nenabled = false\n')
    off = cli("--config", str(cfg), "--state-dir", str(tmp_path / "state"), "mlflow-ui")
    assert "tracking is off" in off.out and str((tmp_path / "state").resolve()) in off.out


def test_an_ensemble_result_logs_its_definition(tmp_path):
    pytest.importorskip("mlflow")
    from dataclasses import dataclass, field

    @dataclass
    class Result:  # the shape flows.ensemble_run gives an ensemble's result
        model: str = "calm_blend"
        level: str = "cm"
        status: str = "shadow"
        snapshot: str = "cm-0123"
        artifact: str = ""
        predictions: str = "predictions/calm_blend.parquet"
        reused: bool = True
        rows: int = 10
        n_samples: int = 1
        timings: dict = field(default_factory=lambda: {"predict": 0.1})
        metrics: dict | None = None
        kind: str = "ensemble"
        ensemble: dict = field(default_factory=lambda: {
            "config_hash": "c" * 64, "members": ["zero_line", "quick_tree"],
            "weights": {"zero_line": 1.0, "quick_tree": 3.0}, "aggregation": "mean",
            "samples": None, "reconcile_with": None})

    @dataclass
    class Run:
        run_id: str = "20260101_000000_forecast_forecasting_abcdef"
        kind: str = "forecast"
        run_type: str = "forecasting"
        path: str = str(tmp_path)
        models: list = field(default_factory=lambda: [Result()])
        record: dict = field(default_factory=dict)

    (tmp_path / "ewspipe.toml").write_text("")
    settings = load_settings(tmp_path / "ewspipe.toml", state_dir=tmp_path / "state")
    result = track_run(settings, Run())
    assert result.status == "logged", result.message
    child = _client_for(settings).get_run(result.model_runs["calm_blend"])
    assert child.data.params["algorithm"] == "ensemble"
    assert child.data.params["members"] == "zero_line; quick_tree"
    assert child.data.params["weights.quick_tree"] == "3.0"
    assert child.data.tags["ewspipe.model_kind"] == "ensemble"
    assert child.data.tags["ewspipe.config_hash"] == "c" * 64
    # an ensemble has no artifact: its registered version points at its predictions
    [version] = _client_for(settings).search_model_versions("name = 'calm_blend'")
    assert version.source == (tmp_path / "predictions" / "calm_blend.parquet").as_uri()


def _served(settings, uri: str, frame):
    """``mlflow.pyfunc.load_model(uri).predict(frame)`` against the workspace's store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(settings))  # the registry's too, when unset
    try:
        return mlflow.pyfunc.load_model(uri).predict(frame)
    finally:
        mlflow.set_tracking_uri(None)


def _client_for(settings):
    tracking = pytest.importorskip("mlflow.tracking")
    return tracking.MlflowClient(tracking_uri=tracking_uri(settings))


def test_step_metrics_choose_the_series_logged(run, workspace):
    (workspace / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n[tracking]\nstep_metrics = ["mae"]\n')
    pytest.importorskip("mlflow")
    result = run("evaluate", "--run-type", "calibration", "--model", "quick_tree", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    client = _client(workspace)
    metrics = client.get_run(doc["tracking"]["model_runs"]["quick_tree"]).data.metrics
    assert len(client.get_metric_history(
        doc["tracking"]["model_runs"]["quick_tree"], "step/mae")) == 36
    assert "step/msle" not in metrics and "pooled/msle" in metrics


def test_an_unknown_step_metric_is_refused_by_name(workspace):
    (workspace / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n[tracking]\nstep_metrics = ["msle", "rmse"]\n')
    with pytest.raises(SettingsError, match=r"step_metrics.*rmse|rmse.*step_metrics"):
        load_settings(workspace / "ewspipe.toml")
