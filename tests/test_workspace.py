"""ewspipe.workspace: a workspace opened like the CLI opens it, its configured environments,
and one artifact cache shared by the monthly run and ``ewspipe forecast``/``evaluate``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.flows.monthly_workspace import write_monthly_workspace

from ewspipe.errors import InputError
from ewspipe.settings import STAGING_ENVIRONMENT, RunSettings
from ewspipe.workspace import Workspace


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_monthly_workspace(tmp_path_factory.mktemp("ws") / "ws").parent


def test_open_reads_a_folder_or_its_settings_file(folder: Path) -> None:
    by_folder, by_file = Workspace.open(folder), Workspace.open(folder / "ewspipe.toml")
    assert by_folder.settings == by_file.settings
    assert by_folder.layout.root == folder / "state"
    assert by_folder.layout.artifacts == folder / "state" / "artifacts"
    assert by_folder.environments == RunSettings().environments
    assert Workspace.open(folder, state_dir=folder / "elsewhere").layout.root == \
        folder / "elsewhere"


def test_open_refuses_a_folder_without_settings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no ewspipe\.toml in this folder"):
        Workspace.open(tmp_path)


def test_an_unknown_environment_names_the_configured_ones(folder: Path) -> None:
    ws = Workspace.open(folder)
    with pytest.raises(InputError, match="'nowhere' is not an environment") as info:
        ws.env("nowhere")
    for name in ws.environments:
        assert name in str(info.value)
    staging = ws.env(STAGING_ENVIRONMENT)
    assert staging.layout.root == ws.layout.root / STAGING_ENVIRONMENT
    assert not staging.publishes
    assert ws.production.publishes
    assert ws.production.name == ws.settings.run.production_environment
    assert ws.env().name == ws.settings.run.environment


def test_the_monthly_run_and_forecast_share_one_artifact_cache(folder: Path) -> None:
    """The monthly run trains into <state>/artifacts; `ewspipe forecast` of the same model on
    the same snapshot and code then loads that artifact instead of fitting again."""
    ws = Workspace.open(folder)
    env = ws.env()
    run = env.run_monthly(executor="local")
    assert run.status == "ok", run.to_dict()
    assert run.environment == env.name
    assert not env.layout.legacy_artifacts.exists()  # no per-environment cache any more
    trained = sorted((ws.layout.artifacts / "small_ridge" / "forecasting").glob(
        "*/manifest.json"))
    assert len(trained) == 1

    result = ws.forecast(names=["small_ridge"])
    [model] = result.models
    assert model.reused, model
    assert (ws.layout.artifacts / model.artifact / "manifest.json") in trained
    assert sorted((ws.layout.artifacts / "small_ridge" / "forecasting").glob(
        "*/manifest.json")) == trained
