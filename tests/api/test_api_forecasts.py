"""GET /api/v1/forecasts/{level}/{target}: published by default, ?run=, filters, formats,
quantiles, pagination, and the 404/422 answers that name the parameter."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as paipc
import pyarrow.parquet as pq
import pytest
from api_workspace import N_SAMPLES, QUANTILES_RUN, SAMPLED_MODEL, SAMPLED_RUN
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ewspipe.api import forecast_reads
from ewspipe.api.app import create_app
from ewspipe.store.predictions import STORED_QUANTILES

URL = "/api/v1/forecasts"


def _loc(resp) -> list[str]:
    return resp.json()["detail"][0]["loc"]


def _msg(resp) -> str:
    return resp.json()["detail"][0]["msg"]


def test_published_default_matches_the_store(client, workspace):
    resp = client.get(f"{URL}/cm/ged_sb")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    run = workspace.prod_run["outputs"]["runs"]["cm"]
    assert (doc["environment"], doc["run"], doc["model"], doc["published"]) == (
        "production", run, "small_chorus", True)
    want = workspace.store("production").query("cm", "small_chorus", run=run)
    assert doc["total"] == len(want) == len(doc["rows"])
    got = pd.DataFrame(doc["rows"])
    assert list(got.columns) == ["origin", "step", "month_id", "country_id", "name", "isoab",
                                 "label", "point"]
    assert (got["label"] == "country " + got["country_id"].astype(str)).all()  # demo: no names
    assert np.array_equal(got["country_id"], want["country_id"])
    assert np.allclose(got["point"], want["point"], atol=1e-6)
    assert resp.headers["x-total-count"] == str(len(want))


def test_model_of_the_published_forecast(client):
    doc = client.get(f"{URL}/cm/ged_sb", params={"model": "small_ridge"}).json()
    assert doc["model"] == "small_ridge" and doc["published"] is True


def test_other_run_and_env(client, workspace):
    run = workspace.dev_run["outputs"]["runs"]["pgm"]
    resp = client.get(f"{URL}/pgm/ged_sb", params={"run": run, "model": "grid_ridge"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert (doc["environment"], doc["published"], doc["unit_column"]) == (
        "development", False, "priogrid_gid")
    row = doc["rows"][0]  # a cell names its country (the demo world: by id)
    assert row["label"] == f"cell {row['priogrid_gid']} (country {row['country_id']})"
    env = client.get(f"{URL}/pgm/ged_sb", params={"run": run, "model": "grid_ridge",
                                                  "env": "development"}).json()
    assert env["rows"] == doc["rows"]
    missing = client.get(f"{URL}/pgm/ged_sb", params={"run": run, "model": "grid_ridge",
                                                      "env": "staging"})
    assert missing.status_code == 404 and "query parameter 'run'" in missing.json()["detail"]


def test_filters(client):
    doc = client.get(f"{URL}/cm/ged_sb", params={"month_from": 523, "month_to": 525,
                                                "units": "1,2,3"}).json()
    rows = pd.DataFrame(doc["rows"])
    assert set(rows["month_id"]) == {523, 524, 525} and set(rows["country_id"]) <= {1, 2, 3}
    assert doc["total"] == len(rows) > 0
    step = pd.DataFrame(client.get(f"{URL}/cm/ged_sb", params={"step": 2}).json()["rows"])
    assert set(step["step"]) == {2} and set(step["month_id"]) == {522}


def test_csv_and_parquet_equal_json(client):
    params = {"month_from": 521, "month_to": 521}
    rows = pd.DataFrame(client.get(f"{URL}/cm/ged_sb", params=params).json()["rows"])
    csv = client.get(f"{URL}/cm/ged_sb", params={**params, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    by_accept = client.get(f"{URL}/cm/ged_sb", params=params, headers={"Accept": "text/csv"})
    assert by_accept.content == csv.content
    got = pd.read_csv(io.StringIO(csv.text))
    assert np.array_equal(got["country_id"], rows["country_id"])
    assert np.allclose(got["point"], rows["point"], atol=1e-6)
    parquet = client.get(f"{URL}/cm/ged_sb", params=params,
                         headers={"Accept": "application/vnd.apache.parquet"})
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert parquet.headers["x-total-count"] == str(len(rows))
    table = pq.read_table(io.BytesIO(parquet.content)).to_pandas()
    assert np.array_equal(table["country_id"], rows["country_id"])
    assert np.allclose(table["point"], rows["point"], atol=1e-6)


def test_quantiles_and_samples_come_from_the_draws(client, workspace):
    params = {"run": SAMPLED_RUN, "model": SAMPLED_MODEL, "month_from": 521, "month_to": 521}
    doc = client.get(f"{URL}/pgm/ged_sb", params={**params, "quantiles": "0.05,0.95",
                                                 "samples": "true"}).json()
    want = workspace.store("production").query("pgm", SAMPLED_MODEL, run=SAMPLED_RUN,
                                                month=521, samples=True)
    draws = np.stack(want["samples"].to_numpy())
    rows = pd.DataFrame(doc["rows"])
    assert doc["n_samples"] == N_SAMPLES and doc["quantiles"] == [0.05, 0.95]
    assert np.allclose(rows["q0.05"], np.quantile(draws, 0.05, axis=1), atol=1e-5)
    assert np.allclose(rows["q0.95"], np.quantile(draws, 0.95, axis=1), atol=1e-5)
    assert np.allclose(np.stack(rows["samples"].to_numpy()), draws, atol=1e-5)
    plain = client.get(f"{URL}/pgm/ged_sb", params=params).json()["rows"][0]
    assert "samples" not in plain and "q0.05" not in plain
    csv = client.get(f"{URL}/pgm/ged_sb", params={**params, "samples": "true",
                                                  "format": "csv"})
    wide = pd.read_csv(io.StringIO(csv.text))
    assert [c for c in wide.columns if c.startswith("sample_")] == [
        f"sample_{i}" for i in range(N_SAMPLES)]
    parquet = client.get(f"{URL}/pgm/ged_sb", params={**params, "samples": "true",
                                                      "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert len(table.column("samples")[0]) == N_SAMPLES


def test_stored_quantiles_equal_those_computed_from_the_draws(client, monkeypatch):
    """The same forecast with and without its stored quantile columns answers the same
    numbers; with them, asked levels that are all stored never touch the draws."""
    params = {"model": SAMPLED_MODEL, "month_from": 521, "month_to": 522,
              "quantiles": "0.05,0.5,0.95"}
    old = client.get(f"{URL}/pgm/ged_sb", params={**params, "run": SAMPLED_RUN}).json()
    assert old["stored_quantiles"] == []
    with monkeypatch.context() as mp:
        mp.setattr(forecast_reads, "_quantile_columns", lambda *a: pytest.fail("from draws"))
        new = client.get(f"{URL}/pgm/ged_sb", params={**params, "run": QUANTILES_RUN}).json()
    assert new["stored_quantiles"] == list(STORED_QUANTILES)
    want, got = pd.DataFrame(old["rows"]), pd.DataFrame(new["rows"])
    assert list(got.columns) == list(want.columns) and len(got) == new["total"] == 100
    for column in ("q0.05", "q0.5", "q0.95"):
        assert np.allclose(got[column], want[column], rtol=1e-6, atol=1e-6)
    assert (got[["step", "priogrid_gid", "point"]] == want[["step", "priogrid_gid",
                                                           "point"]]).all().all()
    other = {**params, "quantiles": "0.05,0.33", "samples": "true"}  # 0.33 is not stored
    mixed = client.get(f"{URL}/pgm/ged_sb", params={**other, "run": QUANTILES_RUN}).json()
    assert mixed["rows"] == client.get(f"{URL}/pgm/ged_sb",
                                       params={**other, "run": SAMPLED_RUN}).json()["rows"]


def test_arrow_stream_equals_json(client):
    params = {"run": QUANTILES_RUN, "model": SAMPLED_MODEL, "month_from": 521,
              "month_to": 521, "quantiles": "0.1,0.9"}
    rows = pd.DataFrame(client.get(f"{URL}/pgm/ged_sb", params=params).json()["rows"])
    resp = client.get(f"{URL}/pgm/ged_sb", params=params,
                      headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert resp.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert resp.headers["x-total-count"] == str(len(rows))
    table = paipc.open_stream(io.BytesIO(resp.content)).read_all()
    assert table.column_names == list(rows.columns)
    assert table.schema.field("q0.1").type == pa.float32()
    got = table.to_pandas()
    assert np.array_equal(got["priogrid_gid"], rows["priogrid_gid"])
    assert np.allclose(got["q0.9"], rows["q0.9"], atol=1e-6)


def test_a_large_answer_is_gzipped_when_the_client_accepts_it(client, monkeypatch):
    from ewspipe.api import routes_forecasts

    plain = client.get(f"{URL}/cm/ged_sb", headers={"Accept-Encoding": "identity"})
    monkeypatch.setattr(routes_forecasts, "LARGE_BODY", 1)
    packed = client.get(f"{URL}/cm/ged_sb", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.json() == plain.json()
    assert int(packed.headers["content-length"]) < len(plain.content) / 3
    again = client.get(f"{URL}/cm/ged_sb", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in again.headers and again.content == plain.content


def test_pages_add_up(client):
    whole = client.get(f"{URL}/pgm/ged_sb").json()
    pages, offset = [], 0
    while offset < whole["total"]:
        doc = client.get(f"{URL}/pgm/ged_sb", params={"limit": 1000, "offset": offset}).json()
        assert doc["total"] == whole["total"] and doc["limit"] == 1000
        pages += doc["rows"]
        offset += 1000
    assert pages == whole["rows"]
    past = client.get(f"{URL}/pgm/ged_sb", params={"offset": whole["total"] + 5}).json()
    assert past["rows"] == [] and past["total"] == whole["total"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.integers(515, 560), span=st.integers(0, 40), limit=st.integers(1, 200),
       offset=st.integers(0, 400))
def test_any_page_is_a_slice_of_the_filtered_whole(client, lo, span, limit, offset):
    whole = client.get(f"{URL}/cm/ged_sb").json()["rows"]
    want = [r for r in whole if lo <= r["month_id"] <= lo + span]
    doc = client.get(f"{URL}/cm/ged_sb", params={"month_from": lo, "month_to": lo + span,
                                                "limit": limit, "offset": offset}).json()
    assert doc["total"] == len(want)
    assert doc["rows"] == want[offset:offset + limit]


@pytest.mark.parametrize(("params", "name", "needle"), [
    ({"month_from": 530, "month_to": 520}, "month_to", "before month_from"),
    ({"units": "1,x"}, "units", "not a comma-separated list"),
    ({"units": "1,9223372036854775808"}, "units", "out of range"),
    ({"units": "-5"}, "units", "out of range"),
    ({"month_from": 2**70}, "month_from", "less than or equal"),
    ({"quantiles": "0.5,1.5"}, "quantiles", "outside [0, 1]"),
    ({"quantiles": "a"}, "quantiles", "not a comma-separated list"),
    # two levels, one column name (q0.05): one would silently overwrite the other
    ({"quantiles": "0.05,0.0500000001"}, "quantiles", "both name the column q0.05"),
    ({"quantiles": "0.5"}, "quantiles", "point forecasts only"),
    ({"env": "nowhere"}, "env", "not an environment"),
    ({"limit": 200_000}, "limit", "max_forecast_rows"),
    ({"limit": 0}, "limit", "greater than or equal to 1"),
    ({"format": "xml"}, "format", "'json', 'csv', 'parquet' or 'arrow'"),
    ({"month_from": "soon"}, "month_from", "valid integer"),
    ({"run": "../etc"}, "run", "pattern"),
])
def test_invalid_values_are_422_naming_the_parameter(client, params, name, needle):
    resp = client.get(f"{URL}/cm/ged_sb", params=params)
    assert resp.status_code == 422, resp.text
    assert _loc(resp)[-1] == name
    assert needle in _msg(resp)


def test_bad_level_is_422(client):
    resp = client.get(f"{URL}/country/ged_sb")
    assert resp.status_code == 422 and _loc(resp) == ["path", "level"]


def test_model_required_with_an_unpublished_run(client, workspace):
    run = workspace.dev_run["outputs"]["runs"]["cm"]
    resp = client.get(f"{URL}/cm/ged_sb", params={"run": run})
    assert resp.status_code == 422 and _loc(resp) == ["query", "model"]
    assert "small_chorus" in _msg(resp)  # lists the stored models


@pytest.mark.parametrize(("path", "params", "name"), [
    ("cm/ged_sb", {"model": "no_such_model"}, "model"),
    ("cm/ged_ns", {}, "target"),
    ("cm/ged_sb", {"run": "m999-nothing"}, "run"),
    ("cm/ged_sb", {"run": SAMPLED_RUN}, "run"),  # the sampled run is pgm only
])
def test_unknown_things_are_404_naming_the_parameter(client, path, params, name):
    resp = client.get(f"{URL}/{path}", params=params)
    assert resp.status_code == 404, resp.text
    assert f"parameter '{name}'" in resp.json()["detail"]


def test_unknown_model_in_a_run_is_404(client, workspace):
    run = workspace.prod_run["outputs"]["runs"]["cm"]
    resp = client.get(f"{URL}/cm/ged_sb", params={"run": run, "model": "grid_ridge"})
    assert resp.status_code == 404 and "query parameter 'model'" in resp.json()["detail"]
    assert "small_chorus" in resp.json()["detail"]


def test_nothing_published_in_a_fresh_state(workspace, tmp_path):
    settings = workspace.settings.model_copy(update={"workspace": workspace.settings.workspace
                                                     .model_copy(update={"state_dir": tmp_path})})
    with TestClient(create_app(settings)) as fresh:
        resp = fresh.get(f"{URL}/cm/ged_sb")
        assert resp.status_code == 404
        assert "nothing published for cm/ged_sb in environment 'production'; publish with " \
            "`ewspipe run --env production`" in resp.json()["detail"]
        # an environment that never publishes is not told to publish
        dev = fresh.get(f"{URL}/cm/ged_sb", params={"env": "development"}).json()["detail"]
        assert "environment 'development' never publishes ([run] publish_environments: " \
            "production)" in dev and "ewspipe run --env development" not in dev
        assert not any(tmp_path.iterdir())  # a read created no state


def test_a_pointer_to_a_pruned_run_is_404(workspace, tmp_path):
    from ewspipe.store.published import PublishedPointers
    from ewspipe.store.statedb import open_state_db

    prod = tmp_path / "production"
    PublishedPointers(prod / "published", open_state_db("", prod),
                      environment="production").move({
        "publish_id": "gone", "level": "cm", "target": "ged_sb", "run": "m520-gone",
        "primary": "small_chorus", "models": ["small_chorus"],
        "published_at": "2026-01-01T00:00:00Z"})
    settings = workspace.settings.model_copy(update={"workspace": workspace.settings.workspace
                                                     .model_copy(update={"state_dir": tmp_path})})
    with TestClient(create_app(settings)) as fresh:
        resp = fresh.get(f"{URL}/cm/ged_sb")
        assert resp.status_code == 404
        assert "query parameter 'run'" in resp.json()["detail"] and "pruned" in \
            resp.json()["detail"]


@pytest.mark.parametrize("header", ["identity, gzip;q=0", "gzip;q=0", "*;q=0", "br"])
def test_gzip_refused_by_q_zero_is_not_sent(client, monkeypatch, header):
    from ewspipe.api import routes_forecasts

    plain = client.get(f"{URL}/cm/ged_sb", headers={"Accept-Encoding": "identity"})
    monkeypatch.setattr(routes_forecasts, "LARGE_BODY", 1)  # the route's own gzip
    resp = client.get(f"{URL}/cm/ged_sb", headers={"Accept-Encoding": header})
    assert "content-encoding" not in resp.headers and resp.content == plain.content
    small = client.get("/api/v1/models", headers={"Accept-Encoding": header})  # middleware
    assert "content-encoding" not in small.headers and small.status_code == 200
    packed = client.get("/api/v1/models", headers={"Accept-Encoding": "gzip;q=0.5"})
    assert packed.headers["content-encoding"] == "gzip"
