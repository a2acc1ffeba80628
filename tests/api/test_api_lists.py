"""Health, runs, evaluations, models, alerts and releases: contents, filters, pagination,
and 404/422 answers naming the parameter."""

from __future__ import annotations

import pytest


def _page(client, url, **params):
    resp = client.get(url, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_health(client):
    doc = _page(client, "/api/v1/health")
    assert doc["status"] == "ok" and doc["publish_environment"] == "production"
    assert doc["environments"] == ["development", "staging", "production"]


def test_runs(client, workspace):
    doc = _page(client, "/api/v1/runs")
    ids = [r["run_id"] for r in doc["items"]]
    assert {workspace.dev_run["run_id"], workspace.prod_run["run_id"],
            workspace.evaluation["run_id"]} <= set(ids)
    assert doc["total"] == len(ids)
    prod = _page(client, "/api/v1/runs", env="production")["items"]
    assert [r["run_id"] for r in prod] == [workspace.prod_run["run_id"]]
    assert prod[0]["published"] == ["cm/ged_sb", "pgm/ged_sb"] and prod[0]["qa_passed"]
    evals = _page(client, "/api/v1/runs", kind="evaluate")["items"]
    assert [r["run_id"] for r in evals] == [workspace.evaluation["run_id"]]
    assert _page(client, "/api/v1/runs", status="failed")["total"] == 0
    one = _page(client, f"/api/v1/runs/{workspace.dev_run['run_id']}")
    assert one["kind"] == "monthly" and one["environment"] == "development"
    assert _page(client, f"/api/v1/runs/{workspace.evaluation['run_id']}")["kind"] == "evaluate"


def test_evaluations(client, workspace):
    run_id = workspace.evaluation["run_id"]
    doc = _page(client, "/api/v1/evaluations")
    assert [r["run_id"] for r in doc["items"]] == [run_id]
    models = {m["model"]: m for m in doc["items"][0]["models"]}
    want = {m["model"]: m["metrics"]["pooled"] for m in workspace.evaluation["models"]}
    assert {k: v["pooled"] for k, v in models.items()} == want
    assert _page(client, "/api/v1/evaluations", run_type="validation")["total"] == 0
    assert _page(client, "/api/v1/evaluations", model="small_tree")["total"] == 0
    assert _page(client, f"/api/v1/evaluations/{run_id}")["run_type"] == "calibration"
    steps = _page(client, f"/api/v1/evaluations/{run_id}/small_ridge", scheme="step",
                  metric="msle", limit=1000)
    assert [r["group"] for r in steps["items"]] == list(range(1, 37))
    assert {r["metric"] for r in steps["items"]} == {"msle"}
    months = _page(client, f"/api/v1/evaluations/{run_id}/small_ridge", scheme="month")
    assert months["total"] > months["limit"] == 100  # paged


@pytest.mark.parametrize(("url", "params", "status", "name"), [
    ("/api/v1/evaluations/20200101_000000_evaluate_calibration_nope", {}, 404, "run_id"),
    ("/api/v1/evaluations/{run}/no_model", {}, 404, "model"),
    ("/api/v1/evaluations/{run}/small_ridge", {"metric": "nope"}, 422, "metric"),
    ("/api/v1/evaluations/{run}/small_ridge", {"scheme": "week"}, 422, "scheme"),
    ("/api/v1/evaluations", {"run_type": "forecasting"}, 422, "run_type"),
    ("/api/v1/runs/no_such_run", {}, 404, "run_id"),
    ("/api/v1/runs", {"env": "moon"}, 422, "env"),
    ("/api/v1/runs", {"kind": "weekly"}, 422, "kind"),
    ("/api/v1/runs", {"limit": 5000}, 422, "limit"),
    ("/api/v1/runs", {"offset": -1}, 422, "offset"),
    ("/api/v1/models/no_such_model", {}, 404, "name"),
    ("/api/v1/models", {"status": "retired"}, 422, "status"),
    ("/api/v1/alerts", {"since": "yesterday"}, 422, "since"),
    # valid ISO texts whose UTC instant falls outside years 1-9999 (was a 500)
    ("/api/v1/alerts", {"since": "0001-01-01T00:00+01:00"}, 422, "since"),
    ("/api/v1/alerts", {"since": "9999-12-31T23:59-01:00"}, 422, "since"),
    ("/api/v1/alerts", {"env": ""}, 422, "env"),  # an empty env is no environment
    ("/api/v1/alerts", {"severity": "LOUD"}, 422, "severity"),
    ("/api/v1/releases/v9.9.9", {}, 404, "version"),
    ("/api/v1/releases", {"kind": "merge"}, 422, "kind"),
])
def test_errors_name_the_parameter(client, workspace, url, params, status, name):
    resp = client.get(url.format(run=workspace.evaluation["run_id"]), params=params)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    if status == 422:
        assert detail[0]["loc"][-1] == name
    else:
        assert f"parameter '{name}'" in detail


def test_models(client):
    doc = _page(client, "/api/v1/models")
    names = {m["name"]: m for m in doc["items"]}
    assert set(names) == {"small_tree", "small_ridge", "last_value", "grid_ridge", "old_guess",
                          "small_chorus", "grid_chorus"}
    assert names["grid_chorus"]["members"] == ["grid_ridge"]
    assert names["old_guess"]["status"] == "deprecated"
    deployed = _page(client, "/api/v1/models", status="deployed", level="cm", kind="model")
    assert {m["name"] for m in deployed["items"]} == {"small_tree", "small_ridge"}
    one = _page(client, "/api/v1/models/small_ridge")
    assert one["algorithm"] == "stepshifter" and one["hyperparameters"]["learner"] == "ridge"
    two = _page(client, "/api/v1/models", limit=2, offset=2)
    assert [m["name"] for m in two["items"]] == [m["name"] for m in doc["items"][2:4]]


def test_alerts(client, workspace):
    doc = _page(client, "/api/v1/alerts", limit=1000)
    assert doc["total"] == len(doc["items"]) > 0
    times = [a["time"] for a in doc["items"]]
    assert times == sorted(times, reverse=True)
    assert {a["log"] for a in doc["items"]} <= {"workspace", "development", "production"}
    prod = _page(client, "/api/v1/alerts", env="production", limit=1000)["items"]
    assert prod and {a["log"] for a in prod} == {"production"}
    warn = _page(client, "/api/v1/alerts", severity="WARNING", limit=1000)["items"]
    assert all(a["severity"] in ("WARNING", "ERROR", "CRITICAL") for a in warn)
    drift = _page(client, "/api/v1/alerts", source="drift", limit=1000)["items"]
    assert all(a["source"].startswith("drift") for a in drift)
    assert _page(client, "/api/v1/alerts", since="2999-01-01")["total"] == 0


def test_a_damaged_alert_log_is_a_503_naming_the_line(client, workspace):
    """One hand-edited line in an alert log: the API says the stored state is damaged and
    where (503), not a bare 500."""
    log = workspace.settings.layout.env("production").alerts_log
    before = log.read_bytes()
    try:
        with log.open("a", encoding="utf-8") as fh:
            fh.write("{not json\n")
        resp = client.get("/api/v1/alerts", params={"env": "production"})
        assert resp.status_code == 503, resp.text
        detail = resp.json()["detail"]
        assert "stored state is damaged" in detail and "alerts.jsonl, line" in detail
        assert "fix or delete that line" in detail
    finally:
        log.write_bytes(before)
    assert client.get("/api/v1/alerts", params={"env": "production"}).status_code == 200


def test_releases(client, workspace):
    doc = _page(client, "/api/v1/releases")
    versions = [e["version"] for e in doc["items"]]
    assert workspace.tag.lstrip("v") in versions
    entry = _page(client, f"/api/v1/releases/{versions[0]}")
    assert entry["status"] == "completed" and entry["kind"] == "promote"
    assert _page(client, "/api/v1/releases", status="pending")["total"] == 0
    staging = _page(client, "/api/v1/releases/staging/latest")
    assert staging["passed"] is True and len(staging["gates"]) == 7


def test_online_evaluation_not_run_yet(client):
    resp = client.get("/api/v1/evaluations/online")
    assert resp.status_code == 404 and "ewspipe online-eval" in resp.json()["detail"]


def test_openapi_documents_every_endpoint(client):
    doc = client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        assert path.startswith("/api/v1/")
        for op in ops.values():
            assert op["summary"] and op.get("description"), path
            assert "200" in op["responses"]
