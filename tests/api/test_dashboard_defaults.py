"""The dashboard's default map selection on a production environment whose newest stored runs
hold other models than the published one (tests/api/api_workspace.py): the defaults must be
a pair the map can draw, and the published model must be offered."""

from __future__ import annotations

from api_workspace import Workspace
from fastapi.testclient import TestClient


def test_the_default_model_is_one_the_default_run_holds(client: TestClient,
                                                         workspace: Workspace) -> None:
    overview = client.get("/dashboard/data/overview").json()
    production = next(e for e in overview["environments"] if e["name"] == "production")
    pointers = {p["level"]: p for p in production["published"]}
    for level, info in production["levels"].items():
        run, model = info["default_run"], info["default_model"]
        assert model in info["run_models"][run], (level, run, model, info["run_models"])
        stored = {p.model for p in workspace.store("production").partitions(level=level, run=run)}
        assert set(info["run_models"][run]) == stored
        if level in pointers:  # the published run and its primary model come first
            assert (run, model) == (pointers[level]["run"], pointers[level]["primary"])
        for each_run, models in info["run_models"].items():  # every listed model is described
            assert set(models) <= {m["model"] for m in info["models"]}, each_run
        response = client.get("/dashboard/data/map", params={
            "env": "production", "level": level, "model": model, "run": run})
        assert response.status_code == 200, response.text
    # the fixture's newest pgm runs hold only a sampled model, not the published primary
    pgm = production["levels"]["pgm"]
    assert pgm["runs"][0] != pgm["default_run"]
