"""Fault-and-abuse cases of the API (issue 18, case 2 and the API items of "Also").

Damaged stored files (the corruptions of tests/abuse/test_abuse_store.py, applied to one real
workspace per module and undone after each case) must give 503 with a JSON body naming the
file, never a 500 and never a wrong answer; ``/api/v1/health`` must report them. Plus: the
OpenAPI document states the page caps the app enforces, and an unauthenticated
state-changing request is refused (401/403) before its body is validated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.abuse.harness import tree_digest
from tests.abuse.test_abuse_store import (
    alerts_bad_line,
    alerts_not_utf8,
    damaged,
    env_alerts_bad_line,
    partition_bitflip,
    partition_hash_edited,
    partition_truncated,
    pointer_edited,
    pointer_garbage,
    run_record_edited,
    run_record_garbage,
    statedb_bad_pointer_entry,
    statedb_bad_run_record,
    statedb_garbage,
)
from tests.api.api_workspace import TOKEN_ENV, Workspace, build_workspace

from ewspipe.api.app import create_app

TOKEN = "abuse-token-for-the-api-tests-0123"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("abuse-api"))


@pytest.fixture(scope="module")
def app(ws: Workspace) -> Any:
    """The app with writes on (the token is set), so POST reaches the stores."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, TOKEN)
        return create_app(ws.settings)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def served(ws: Workspace, client: TestClient) -> dict[str, Any]:
    """What the intact workspace serves: the published cm run, its primary model, a unit."""
    pointer = json.loads((ws.state / "production" / "published" / "cm" / "ged_sb.json")
                         .read_text())
    page = client.get("/api/v1/forecasts/cm/ged_sb", params={"limit": 1}).json()
    return {"run": pointer["run"], "model": pointer["primary"],
            "unit": page["rows"][0]["country_id"], "eval": ws.evaluation["run_id"],
            "monthly": ws.prod_run["run_id"]}


def _forecast_run(s: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return ("GET", "/api/v1/forecasts/cm/ged_sb",
            {"run": s["run"], "model": s["model"], "format": "csv"})


def _map(s: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return ("GET", "/dashboard/data/map",
            {"env": "production", "level": "cm", "model": s["model"], "run": s["run"]})


def _series(s: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return ("GET", "/dashboard/data/series", {"env": "production", "level": "cm",
                                              "model": s["model"], "run": s["run"],
                                              "unit": s["unit"]})


def _publish(s: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return ("POST", "/api/v1/published/cm/ged_sb", {"json": {"run": s["run"]}})


def _get(path: str, **params: Any) -> Callable[[dict[str, Any]], tuple[str, str, dict]]:
    return lambda s: ("GET", path.format(**s), params)


PUBLISHED_FORECAST = _get("/api/v1/forecasts/cm/ged_sb")

CASES = [
    # (corruption, request)
    (partition_bitflip, PUBLISHED_FORECAST),
    (partition_bitflip, _forecast_run),
    (partition_bitflip, _map),
    (partition_bitflip, _series),
    (partition_bitflip, _publish),
    (partition_truncated, PUBLISHED_FORECAST),
    (partition_truncated, _get("/api/v1/forecasts/cm/ged_sb", format="parquet")),
    (partition_hash_edited, PUBLISHED_FORECAST),
    (statedb_garbage, _get("/api/v1/runs/{monthly}")),
    (statedb_garbage, _get("/api/v1/published/cm/ged_sb")),
    (statedb_garbage, _get("/api/v1/runs")),
    (statedb_garbage, _get("/api/v1/runs", kind="monthly", env="production")),
    (statedb_garbage, _get("/api/v1/releases")),
    (statedb_garbage, _get("/api/v1/releases/staging/latest")),
    (statedb_garbage, _get("/dashboard/data/overview")),
    (statedb_garbage, _publish),
    (statedb_bad_run_record, _get("/api/v1/runs")),
    (statedb_bad_run_record, _get("/dashboard/data/overview")),
    (statedb_bad_pointer_entry, _get("/api/v1/published/cm/ged_sb")),
    (pointer_edited, PUBLISHED_FORECAST),
    (pointer_edited, _get("/api/v1/published")),
    (pointer_edited, _get("/api/v1/published/cm/ged_sb")),
    (pointer_garbage, PUBLISHED_FORECAST),
    (run_record_edited, _get("/api/v1/runs")),
    (run_record_edited, _get("/api/v1/evaluations")),
    (run_record_edited, _get("/api/v1/evaluations/{eval}")),
    (run_record_garbage, _get("/api/v1/runs/{eval}")),
    (alerts_bad_line, _get("/api/v1/alerts")),
    (alerts_not_utf8, _get("/api/v1/alerts")),
    (env_alerts_bad_line, _get("/api/v1/alerts", env="production")),
]


def _send(client: TestClient, method: str, path: str, params: dict[str, Any]) -> Any:
    if method == "POST":
        return client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}, **params)
    return client.get(path, params=params)


@pytest.mark.parametrize("corrupt, request_of", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_damaged_state_is_a_503_naming_the_file(ws, client, served, corrupt,
                                                 request_of) -> None:
    method, path, params = request_of(served)
    with damaged(ws, corrupt) as damage:
        before = tree_digest(ws.state)
        response = _send(client, method, path, params)
        after = tree_digest(ws.state)
    assert response.status_code == 503, (response.status_code, response.text[:500])
    detail = response.json()["detail"]
    assert str(damage.file) in detail, detail
    for needle in damage.mentions:
        assert needle.lower() in detail.lower(), (needle, detail)
    assert before == after, "a refused request changed stored files"


HEALTH_CASES = [partition_bitflip, partition_truncated, statedb_garbage,
                statedb_bad_run_record, pointer_edited, pointer_garbage, run_record_edited,
                alerts_bad_line, env_alerts_bad_line]


@pytest.mark.parametrize("corrupt", HEALTH_CASES, ids=[c.__name__ for c in HEALTH_CASES])
def test_health_reports_the_damaged_file(ws, client, served, corrupt) -> None:
    with damaged(ws, corrupt) as damage:
        response = client.get("/api/v1/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded", body
    assert str(damage.file) in [d["file"] for d in body["damaged"]], body["damaged"]


def test_a_damaged_state_db_does_not_stop_the_published_forecast(ws, client) -> None:
    """The pointer file and partitions are intact and verified: serving them is right."""
    with damaged(ws, statedb_garbage):
        assert client.get("/api/v1/forecasts/cm/ged_sb").status_code == 200
        assert client.get("/api/v1/published").status_code == 200


def test_health_is_ok_and_cheap_on_intact_state(client, served) -> None:
    """Nothing damaged: ok; a repeated call re-hashes nothing (the verdicts are cached)."""
    import time

    assert client.get("/api/v1/health").json()["status"] == "ok"
    start = time.perf_counter()
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["damaged"] == []
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- "Also": caps and auth


def test_the_openapi_limits_are_the_caps_the_app_enforces(ws, client) -> None:
    doc = client.get("/openapi.json").json()
    caps = {}
    for path, ops in doc["paths"].items():
        for param in ops.get("get", {}).get("parameters", []):
            if param["name"] == "limit":
                schema = param["schema"]
                caps[path] = next(o["maximum"] for o in schema.get("anyOf", [schema])
                                  if o.get("type") == "integer")
    api = ws.settings.api
    assert caps.pop("/api/v1/forecasts/{level}/{target}") == api.max_forecast_rows
    assert caps and set(caps.values()) == {api.max_page_size}, caps
    for path in ("/api/v1/runs", "/api/v1/alerts"):
        assert client.get(path, params={"limit": api.max_page_size}).status_code == 200
        assert client.get(path, params={"limit": api.max_page_size + 1}).status_code == 422


@pytest.mark.parametrize("token, auth, expected", [
    (None, None, 403),                      # writes off
    (TOKEN, None, 401),                     # writes on, no token sent
    (TOKEN, "Bearer wrong-token-wrong-token", 401),
    (TOKEN, f"Bearer {TOKEN}", 422),        # authenticated: now the body is checked
], ids=["writes-off", "no-token", "wrong-token", "right-token"])
@pytest.mark.parametrize("body", ['{"run": ', "not json", '{"unknown": 1}'],
                         ids=["truncated", "not-json", "bad-field"])
def test_auth_is_checked_before_the_body(ws, monkeypatch, token, auth, expected,
                                         body) -> None:
    if token is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, token)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    before = tree_digest(ws.state)
    with TestClient(create_app(ws.settings)) as c:
        response = c.post("/api/v1/published/cm/ged_sb", content=body, headers=headers)
    assert response.status_code == expected, response.text
    if expected != 422:
        assert "token" in response.json()["detail"].lower()
    assert tree_digest(ws.state) == before
