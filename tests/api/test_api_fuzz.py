"""Property-based fuzzing of every endpoint from the OpenAPI document (schemathesis): no
request, however odd, gets a 5xx. The app has writes on and the fuzzer sends the right token,
so the POST body and the publish checks are exercised too, not only the 401."""

from __future__ import annotations

import pytest
import schemathesis
from api_workspace import TOKEN_ENV
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from ewspipe.api.app import create_app
from ewspipe.settings import ApiSettings, Settings

TOKEN = "fuzzing-token-for-the-api-tests"


@pytest.fixture
def fuzzed_app(workspace, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return create_app(workspace.settings)


# The OpenAPI document does not depend on state, so the schema is read at collection from an
# app over built-in settings; each case is sent to the app over the real workspace.
# (schemathesis.pytest.from_fixture would be the lazy way, but fails on pytest 9.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(
    Settings(api=ApiSettings(token_env="EWSPIPE_API_TOKEN_UNSET_FOR_THE_SCHEMA"))))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case, fuzzed_app):
    case.call_and_validate(app=fuzzed_app, checks=[not_a_server_error],
                           headers={"Authorization": f"Bearer {TOKEN}"})


def test_every_endpoint_is_fuzzed():
    operations = {(op.method.upper(), op.path) for op in
                  (result.ok() for result in schema.get_all_operations())}
    assert len(operations) >= 16
    assert ("POST", "/api/v1/published/{level}/{target}") in operations


# ------------------------------------------------------------------ over damaged state
# The same operations against a workspace whose stored files are damaged: a flipped bit in
# the published cm partition; a garbage production state.db plus a bad line in each alert
# log. Every answer must be a 4xx or a 503 naming a file of the state folder (never a 500).


def _corrupt_partition(ws):
    from tests.abuse.test_abuse_store import partition_bitflip

    return [partition_bitflip(ws)]


def _corrupt_databases(ws):
    from tests.abuse.test_abuse_store import alerts_bad_line, env_alerts_bad_line, statedb_garbage

    return [statedb_garbage(ws), alerts_bad_line(ws), env_alerts_bad_line(ws)]


@pytest.fixture(params=[_corrupt_partition, _corrupt_databases],
                ids=["partition-bitflip", "garbage-state-db-and-alert-lines"])
def damaged_app(request, workspace, monkeypatch):
    from tests.abuse.test_abuse_store import damaged

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    app = create_app(workspace.settings)
    with damaged(workspace, lambda ws: request.param(ws)):
        yield app, str(workspace.state)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_over_damaged_state(case, damaged_app):
    app, state = damaged_app
    response = case.call(app=app, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500 or response.status_code == 503, \
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    if response.status_code == 503:
        detail = response.json()["detail"]
        assert state in detail, detail
    if case.path == "/api/v1/health" and response.status_code == 200:
        body = response.json()
        assert body["status"] == "degraded" and body["damaged"], body
