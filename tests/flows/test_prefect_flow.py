"""The optional Prefect flow: one Prefect task per graph node, the same keys and cache as
`ewspipe run`, and `ewspipe prefect deploy` against Prefect's temporary test server.

Runs only where Prefect is installed (the `prefect` extra)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from prefect.testing.utilities import prefect_test_harness

from ewspipe.catalog import load_catalog
from ewspipe.cli.main import main
from ewspipe.flows.monthly import build_monthly_graph, run_monthly
from ewspipe.flows.prefect_flow import FLOW_NAME, build_prefect_flow
from ewspipe.settings import load_settings


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_runs_every_node_as_a_task_and_shares_the_run_cache(prefect_server, workspace):
    settings = load_settings(workspace)
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    graph = build_monthly_graph(catalog, publish=False)

    flow = build_prefect_flow()
    assert flow.name == FLOW_NAME
    summary = flow(config=str(workspace))

    assert summary["status"] == "ok"
    assert summary["executor"] == "prefect"
    assert [t["task"] for t in summary["tasks"]] == graph.names
    assert all(t["status"] == "ran" for t in summary["tasks"])
    stored = summary["outputs"]["store"]["partitions"]
    assert {p["model"] for p in stored} >= {"small_chorus", "grid_chorus", "small_tree"}

    # the CLI's runner computes the same keys over the same cache: nothing is recomputed
    again = run_monthly(settings)
    assert again.status == "ok"
    cached = {t.name for t in graph if t.cache}
    assert set(again.reused) == cached
    keys = {t["task"]: t["key"] for t in summary["tasks"]}
    assert all(r.key == keys[r.task] for r in again.tasks if r.task in cached)


def test_flow_runs_reuse_their_own_results(prefect_server, workspace):
    flow = build_prefect_flow()
    flow(config=str(workspace))
    second = flow(config=str(workspace))
    assert {t["task"] for t in second["tasks"] if t["status"] == "ran"} == {"snapshot"}


def test_deploy_creates_a_scheduled_deployment(prefect_server, workspace, capsys):
    from prefect.client.orchestration import get_client

    code = main(["--config", str(workspace), "prefect", "deploy", "--cron", "0 6 5 * *",
                 "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["deployment"] == f"{FLOW_NAME}/monthly"
    assert doc["parameters"]["config"] == str(Path(workspace).resolve())

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW_NAME}/monthly")
    assert str(deployment.id) == doc["id"]
    assert deployment.entrypoint == "ewspipe.flows.prefect_flow.monthly_flow"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 6 5 * *"]
    assert deployment.parameters["state_dir"] == doc["parameters"]["state_dir"]


def test_deploy_refuses_a_bad_cron(prefect_server, workspace, capsys):
    code = main(["--config", str(workspace), "prefect", "deploy", "--cron", "every month"])
    assert code == 2
    assert "not a valid cron expression" in capsys.readouterr().err
