"""Published pointers: reading them, and moving one (bearer token; off without the variable;
the monthly run's publish checks)."""

from __future__ import annotations

import hmac

import pytest
from api_workspace import SAMPLED_RUN, TOKEN_ENV
from fastapi.testclient import TestClient

from ewspipe.api.app import create_app
from ewspipe.errors import InputError

URL = "/api/v1/published"
TOKEN = "s3cret-token-for-the-api-tests"


@pytest.fixture
def writer(workspace, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with TestClient(create_app(workspace.settings)) as c:
        yield c


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_list_and_one_pointer(client, workspace):
    doc = client.get(URL).json()
    assert doc["total"] == 2 and [p["level"] for p in doc["items"]] == ["cm", "pgm"]
    one = client.get(f"{URL}/pgm/ged_sb").json()
    assert one["current"]["primary"] == "grid_chorus"
    assert one["current"]["run"] == workspace.prod_run["outputs"]["runs"]["pgm"]
    assert one["history"][-1]["run"] == one["current"]["run"]
    assert client.get(URL, params={"env": "development"}).json()["total"] == 0


def test_pointer_404_and_422(client):
    resp = client.get(f"{URL}/cm/ged_ns")
    assert resp.status_code == 404 and "path parameter 'target'" in resp.json()["detail"]
    bad = client.get(f"{URL}/cm/ged_sb", params={"env": "moon"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "env"]
    target = client.get(f"{URL}/cm/Bad-Target")
    assert target.status_code == 422 and target.json()["detail"][0]["loc"] == ["path", "target"]


def test_writes_are_off_without_the_variable(client, workspace):
    run = workspace.prod_run["outputs"]["runs"]["cm"]
    resp = client.post(f"{URL}/cm/ged_sb", json={"run": run}, headers=_auth())
    assert resp.status_code == 403
    assert TOKEN_ENV in resp.json()["detail"] and "restart" in resp.json()["detail"]
    assert client.get("/api/v1/health").json()["write_enabled"] is False


def test_a_short_token_refuses_to_start(workspace, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(InputError, match=f"environment variable {TOKEN_ENV}.*at least 16"):
        create_app(workspace.settings)


@pytest.mark.parametrize("headers", [{}, _auth("wrong-token-of-enough-length"),
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer "}])
def test_missing_or_wrong_token_is_401(writer, workspace, headers):
    run = workspace.prod_run["outputs"]["runs"]["cm"]
    resp = writer.post(f"{URL}/cm/ged_sb", json={"run": run}, headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"


def test_right_token_publishes_with_a_constant_time_compare(writer, workspace, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    run = workspace.prod_run["outputs"]["runs"]["cm"]
    before = writer.get(f"{URL}/cm/ged_sb").json()["history"]
    resp = writer.post(f"{URL}/cm/ged_sb", json={"run": run, "requested_by": "duty officer"},
                       headers=_auth())
    assert resp.status_code == 200, resp.text
    pointer = resp.json()
    assert calls == [(TOKEN.encode(), TOKEN.encode())]
    assert (pointer["run"], pointer["primary"]) == (run, "small_chorus")
    assert pointer["published_by"] == {"via": "api", "client": "testclient",
                                       "requested_by": "duty officer",
                                       "monthly_run": workspace.prod_run["run_id"]}
    assert pointer["release"]["tag"] == workspace.tag and pointer["last_month"] == 520
    after = writer.get(f"{URL}/cm/ged_sb").json()
    assert len(after["history"]) == len(before) + 1
    assert after["current"]["publish_id"] == pointer["publish_id"]


def test_publish_checks(writer, workspace):
    missing = writer.post(f"{URL}/cm/ged_sb", json={"run": "m520-nothing"}, headers=_auth())
    assert missing.status_code == 404 and "body parameter 'run'" in missing.json()["detail"]
    # stored, deployed, but not made by `ewspipe run`: refused like the monthly run would
    sampled = writer.post(f"{URL}/pgm/ged_sb", json={"run": SAMPLED_RUN}, headers=_auth())
    assert sampled.status_code == 409
    assert "only runs of the monthly run are published" in sampled.json()["detail"]
    dev = writer.post(f"{URL}/cm/ged_sb", headers=_auth(), json={
        "run": workspace.dev_run["outputs"]["runs"]["cm"], "env": "development"})
    assert dev.status_code == 422 and dev.json()["detail"][0]["loc"] == ["body", "env"]
    other_target = writer.post(f"{URL}/cm/ged_ns", headers=_auth(), json={
        "run": workspace.prod_run["outputs"]["runs"]["cm"]})
    assert other_target.status_code == 409 and "no deployed cm model" in \
        other_target.json()["detail"]


@pytest.mark.parametrize("body", [{}, {"run": ""}, {"run": "../x"}, {"run": "a", "extra": 1},
                                  {"run": 5}])
def test_malformed_bodies_are_422(writer, body):
    resp = writer.post(f"{URL}/cm/ged_sb", json=body, headers=_auth())
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][0] == "body"
