"""The dashboard page and its data endpoints (/dashboard/data/...) through the test client, on
a real workspace built with the real commands (tests/browser/dashboard_workspace.py) and on an
empty one; malformed query values answer 422 naming the parameter."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.browser import dashboard_workspace

from ewspipe.alerts.log import AlertLog
from ewspipe.alerts.records import Alert, Severity
from ewspipe.api import dashboard
from ewspipe.api.app import create_app
from ewspipe.panel.snapshot import DATA_FILE, SnapshotStore
from ewspipe.settings import load_settings
from ewspipe.store.prediction_store import PredictionStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ENV = "development"


WS = dashboard_workspace


@pytest.fixture(scope="module")
def dash_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        return WS.build_dashboard_workspace(tmp_path_factory.mktemp("dash") / "ws")


@pytest.fixture(scope="module")
def dash(dash_config: Path) -> TestClient:
    return TestClient(create_app(load_settings(dash_config)))


@pytest.fixture
def empty(tmp_path: Path) -> TestClient:
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    return TestClient(create_app(load_settings(tmp_path / "ewspipe.toml")))


def _ok(client: TestClient, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def _refused(client: TestClient, url: str, param: str) -> str:
    response = client.get(url)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"] == ["query", param] for d in detail), detail
    return " ".join(d["msg"] for d in detail)


def _newest(config: Path, level: str) -> pd.DataFrame:
    s = load_settings(config)
    snap = [m for m in SnapshotStore(s.snapshot_dir).list() if m.level == level][-1]
    return pd.read_parquet(s.snapshot_dir / snap.id / DATA_FILE)


# --------------------------------------------------------------------------- page


def test_page_and_static_files_are_served_same_origin_only(dash: TestClient) -> None:
    root = dash.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    page = dash.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith(("/dashboard/static/", "data:", "#")) for r in refs)
    for name in ("dashboard.js", "dashboard.css"):
        body = dash.get(f"/dashboard/static/{name}")
        assert body.status_code == 200 and len(body.text) > 1000
        # no third-party code, no network but this origin (the SVG namespace is a name)
        urls = set(re.findall(r"https?://[^\s\"')]+", body.text))
        assert urls <= {"http://www.w3.org/2000/svg"}
    assert dash.get("/dashboard/static/..%2Fapp.py").status_code == 404
    assert dash.get("/dashboard/static/index.htm").status_code == 404


def test_static_files_are_served_and_shipped_as_package_data() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "ewspipe.api"]
    static = Path(dashboard.__file__).parent / "static"
    files = sorted(p.name for p in static.iterdir() if p.is_file())
    assert files == sorted({*dashboard.STATIC, "index.html"})
    assert all(any(fnmatch(f"static/{f}", pat) for pat in patterns) for f in files)


def test_dashboard_routes_stay_out_of_the_openapi_schema(dash: TestClient) -> None:
    paths = _ok(dash, "/openapi.json")["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


# --------------------------------------------------------------------------- overview, release


def test_overview_lists_environments_runs_and_stored_forecasts(dash: TestClient) -> None:
    ov = _ok(dash, "/dashboard/data/overview")
    assert ov["default_environment"] == ENV and not ov["empty"]
    dev = next(e for e in ov["environments"] if e["name"] == ENV)
    assert dev["runs"][0]["status"] == "ok" and dev["runs"][0]["qa_passed"] is True
    assert set(dev["levels"]) == {"cm", "pgm"}
    cm = dev["levels"]["cm"]
    assert cm["default_model"] == "small_chorus"  # the deployed ensemble
    models = {m["model"]: m for m in cm["models"]}
    assert models["past_draws"]["n_samples"] == 50 and models["past_draws"]["status"] == "shadow"
    # baselines are forecast and stored by the monthly run (for online evaluation), shown
    # with their status; only deployed models and ensembles are published
    assert models["zero_line"]["status"] == "baseline"
    assert {s["level"] for s in ov["snapshots"]} == {"cm", "pgm"}


def test_release_status_from_git_and_the_ledger(dash: TestClient, dash_config: Path) -> None:
    rel = _ok(dash, "/dashboard/data/release")
    git = rel["git"]
    tag = subprocess.run(["git", "describe", "--tags", "--abbrev=0", "production"],
                         cwd=dash_config.parent, capture_output=True, text=True, check=True)
    assert git["available"] and git["production"]["version"] == tag.stdout.strip()
    assert (git["development"]["ahead"], git["development"]["behind"]) == (1, 0)
    assert git["current_branch"] == "development" and git["dirty_files"] == 0
    staging = rel["ledger"]["last_staging"]
    assert staging["passed"] is True
    assert [g["status"] for g in staging["gates"]] == ["PASS", "PASS", "WARN"]
    (release,) = rel["ledger"]["releases"]
    assert release["status"] == "completed" and f"v{release['version']}" == git[
        "production"]["version"]
    details = rel["details"]
    assert details["problems"] == [] and details["production_at_tag"] is True
    assert [c["subject"] for c in details["unreleased"]] == ["docs: describe the baseline"]
    assert details["staging_is_development_head"] is True


def test_a_tag_without_a_ledger_entry_is_shown_as_a_problem(
    dash_config: Path, tmp_path: Path,
) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(dash_config.parent, copy)
    subprocess.run(["git", "-c", "tag.gpgsign=false", "tag", "-a", "v9.0.0", "-m", "stray",
                    "production"], cwd=copy, check=True, capture_output=True)
    client = TestClient(create_app(load_settings(copy / "ewspipe.toml")))
    rel = _ok(client, "/dashboard/data/release")
    assert rel["git"]["production"]["version"] == "v9.0.0"
    assert any("v9.0.0" in p for p in rel["details"]["problems"])


# --------------------------------------------------------------------------- map, geometry


def test_map_values_are_the_stored_forecast(dash: TestClient, dash_config: Path) -> None:
    d = _ok(dash, f"/dashboard/data/map?env={ENV}&level=pgm&model=grid_chorus&step=7")
    assert (d["step"], d["month"], d["month_label"]) == (7, 527, "2023-11")
    assert len(d["units"]) == WS.PGM_CELLS and len(d["months"]) == 36
    store = PredictionStore(load_settings(dash_config).state_dir / ENV / "predictions")
    stored = store.query("pgm", "grid_chorus", month=527).set_index("priogrid_gid")["point"]
    got = pd.Series({u: v for u, v in d["units"]})
    assert np.allclose(got.sort_index().to_numpy(), stored.sort_index().to_numpy(), rtol=1e-3)
    by_month = _ok(dash, f"/dashboard/data/map?env={ENV}&level=pgm&model=grid_chorus&month=527")
    assert by_month["units"] == d["units"]
    cells = _newest(dash_config, "pgm").drop_duplicates("priogrid_gid", keep="last")
    country = dict(zip(cells.priogrid_gid, cells.country_id, strict=True))
    gid = d["units"][0][0]  # the demo world has no names: a cell is labelled by its country id
    assert d["labels"][str(gid)] == f"cell {gid} (country {country[gid]})"
    assert set(d["labels"]) == {str(u) for u, _ in d["units"]}


def test_geometry_draws_each_country_from_its_cells(dash: TestClient, dash_config: Path) -> None:
    geo = _ok(dash, "/dashboard/data/geometry")
    frame = _newest(dash_config, "pgm")
    last = frame[frame.month_id == frame.month_id.max()]
    counts = last.groupby("country_id").size()
    assert {int(k) for k in geo["countries"]} == set(counts.index.tolist())
    for cid, shape in geo["countries"].items():
        assert shape["cells"] == counts[int(cid)]
    assert geo["source"] == f"cells of pgm snapshot {geo['snapshot']}"  # a demo world
    west, south, east, north = geo["bbox"]
    assert west < east and south < north


# --------------------------------------------------------------------------- unit series


def test_large_answers_are_gzipped_for_clients_that_accept_it(dash: TestClient) -> None:
    """The map's shapes are the page's largest download: compressed when the browser asks."""
    plain = dash.get("/dashboard/data/geometry", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    packed = dash.get("/dashboard/data/geometry", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.json() == plain.json()  # the client unpacks it to the same document
    assert int(packed.headers["content-length"]) < len(plain.content) / 3


def test_series_has_observed_history_and_a_sample_interval(
    dash: TestClient, dash_config: Path,
) -> None:
    cm = _newest(dash_config, "cm")
    unit = int(cm.loc[cm.month_id == 520].sort_values("ged_sb").iloc[-1]["country_id"])
    d = _ok(dash, f"/dashboard/data/series?env={ENV}&level=cm&model=past_draws&unit={unit}"
                  "&history=24")
    assert d["origin"] == 520 and d["interval"] == "10-90% of samples"
    assert d["label"] == f"country {unit}" and d["name"] is None
    assert [f["step"] for f in d["forecast"]] == list(range(1, 37))
    assert all(f["q10"] <= f["q50"] <= f["q90"] for f in d["forecast"])
    assert any(f["q10"] < f["q90"] for f in d["forecast"])
    expected = cm[(cm.country_id == unit) & (cm.month_id > 520 - 24)].sort_values("month_id")
    assert d["observed"] == expected[["month_id", "ged_sb"]].to_numpy().tolist()
    point = _ok(dash, f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus&unit={unit}")
    assert point["interval"] is None and "q10" not in point["forecast"][0]
    assert len(point["observed"]) == 60


def test_series_of_an_absent_unit_is_404(dash: TestClient) -> None:
    r = dash.get(f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus&unit=9999")
    assert r.status_code == 404 and "unit 9999" in r.json()["detail"]


# --------------------------------------------------------------------------- evaluation


def test_evaluation_by_step_for_deployed_and_baselines(dash: TestClient) -> None:
    d = _ok(dash, "/dashboard/data/evaluation?level=cm&metric=mae")
    assert d["run_type"] == "calibration" and d["metric"] == "mae"
    models = {m["model"]: m for m in d["models"]}
    assert models["zero_line"]["status"] == "baseline"
    assert models["small_chorus"]["kind"] == "ensemble"
    assert [s for s, _ in models["small_chorus"]["by_step"]] == list(range(1, 37))
    assert "msle" in d["metrics"]
    again = _ok(dash, f"/dashboard/data/evaluation?level=cm&run={d['run']}")
    assert again["run"] == d["run"] and again["metric"] == "msle"
    pgm = _ok(dash, "/dashboard/data/evaluation?level=pgm")
    assert pgm["models"] == [] and "ewspipe evaluate" in pgm["hint"]


def test_online_results_by_step(dash: TestClient) -> None:
    d = _ok(dash, "/dashboard/data/online?level=cm")
    models = {m["model"]: m for m in d["models"]}
    assert {"small_chorus", "zero_line", "past_draws"} <= set(models)
    assert [s for s, _ in models["small_chorus"]["by_step"]] == [1, 2, 3, 4]  # 517..520
    assert models["small_chorus"]["window_score"] is not None
    assert _ok(dash, "/dashboard/data/online?level=pgm")["hint"]


# --------------------------------------------------------------------------- alerts


def test_alerts_newest_first_filtered_and_limited(dash: TestClient) -> None:
    d = _ok(dash, f"/dashboard/data/alerts?env={ENV}&limit=20")
    times = [a["time"] for a in d["alerts"]]
    assert 0 < len(times) <= 20 and times == sorted(times, reverse=True)
    assert {a["log"] for a in _ok(dash, "/dashboard/data/alerts?limit=1000")["alerts"]} >= {ENV}


def test_alerts_of_the_workspace_and_an_environment_merge_newest_first(
    empty: TestClient, tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    AlertLog.in_state_dir(state).extend([
        Alert("data.import", Severity.ERROR, "first", time="2026-01-01T00:00:00Z"),
        Alert("data.import", Severity.INFO, "third", time="2026-01-03T00:00:00Z")])
    AlertLog.in_state_dir(state / ENV).extend([
        Alert("drift.ks_drift", Severity.WARNING, "second", time="2026-01-02T00:00:00Z"),
        Alert("qa", Severity.CRITICAL, "fourth", time="2026-01-04T00:00:00Z")])
    every = _ok(empty, "/dashboard/data/alerts")["alerts"]
    assert [a["message"] for a in every] == ["fourth", "third", "second", "first"]
    assert [a["log"] for a in every] == [ENV, "workspace", ENV, "workspace"]
    errors = _ok(empty, "/dashboard/data/alerts?severity=error")["alerts"]
    assert [a["message"] for a in errors] == ["fourth", "first"]
    assert [a["message"] for a in _ok(empty, "/dashboard/data/alerts?limit=1")["alerts"]] == [
        "fourth"]
    staging = _ok(empty, "/dashboard/data/alerts?env=staging")["alerts"]
    assert [a["message"] for a in staging] == ["third", "first"]


# --------------------------------------------------------------------------- refusals


MAP = f"/dashboard/data/map?env={ENV}&level=cm&model=small_chorus"


@pytest.mark.parametrize(("url", "param"), [
    (f"{MAP}&step=0", "step"),
    (f"{MAP}&step=37", "step"),
    (f"{MAP}&step=two", "step"),
    (f"{MAP}&month=600", "month"),
    (f"{MAP}&month=-3", "month"),
    (f"{MAP}&step=1&month=521", "month"),
    (f"/dashboard/data/map?env={ENV}&level=country&model=small_chorus", "level"),
    (f"/dashboard/data/map?env={ENV}&level=cm", "model"),
    (f"/dashboard/data/map?env={ENV}&level=cm&model=../x", "model"),
    ("/dashboard/data/map?env=moon&level=cm&model=small_chorus", "env"),
    ("/dashboard/data/map?env=dev%20x&level=cm&model=small_chorus", "env"),
    (f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus", "unit"),
    (f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus&unit=-1", "unit"),
    (f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus&unit=1.5", "unit"),
    (f"/dashboard/data/series?env={ENV}&level=cm&model=small_chorus&unit=1&history=0",
     "history"),
    ("/dashboard/data/evaluation", "level"),
    ("/dashboard/data/evaluation?level=cm&metric=accuracy", "metric"),
    ("/dashboard/data/evaluation?level=cm&metric=M%20SE", "metric"),
    ("/dashboard/data/online?level=", "level"),
    ("/dashboard/data/alerts?limit=0", "limit"),
    ("/dashboard/data/alerts?limit=lots", "limit"),
    ("/dashboard/data/alerts?severity=loud", "severity"),
    ("/dashboard/data/alerts?env=nowhere", "env"),
])
def test_malformed_query_values_are_422_naming_the_parameter(
    dash: TestClient, url: str, param: str,
) -> None:
    _refused(dash, url, param)


@pytest.mark.parametrize(("url", "words"), [
    (f"/dashboard/data/map?env={ENV}&level=cm&model=nobody", "stored models: "),
    (f"{MAP}&run=m000-missing", "runs: "),
    ("/dashboard/data/map?env=production&level=cm&model=small_chorus", "ewspipe run"),
    ("/dashboard/data/evaluation?level=cm&run=nope", "not an evaluation run"),
])
def test_what_is_not_stored_is_404_with_a_way_forward(
    dash: TestClient, url: str, words: str,
) -> None:
    response = dash.get(url)
    assert response.status_code == 404 and words in response.json()["detail"]


# --------------------------------------------------------------------------- empty workspace


def test_an_empty_workspace_says_which_command_to_run(empty: TestClient) -> None:
    ov = _ok(empty, "/dashboard/data/overview")
    assert ov["empty"] and "ewspipe run" in ov["hint"]
    assert all(not e["levels"] and not e["runs"] for e in ov["environments"])
    assert "ewspipe evaluate" in _ok(empty, "/dashboard/data/evaluation?level=cm")["hint"]
    assert "online-eval" in _ok(empty, "/dashboard/data/online?level=cm")["hint"]
    assert _ok(empty, "/dashboard/data/alerts")["alerts"] == []
    assert _ok(empty, "/dashboard/data/geometry")["note"]
    rel = _ok(empty, "/dashboard/data/release")
    assert rel["ledger"]["available"] is False
    r = empty.get(f"{MAP}")
    assert r.status_code == 404 and "ewspipe run" in r.json()["detail"]


def test_reading_an_empty_workspace_creates_nothing(empty: TestClient, tmp_path: Path) -> None:
    for url in ("/dashboard/data/overview", "/dashboard/data/release",
                "/dashboard/data/alerts", "/dashboard/data/geometry",
                "/dashboard/data/evaluation?level=cm", "/dashboard/data/online?level=cm"):
        _ok(empty, url)
    assert not (tmp_path / "state").exists()


# --------------------------------------------------------------------------- fuzzing

DATA_PATHS = ["overview", "release", "map", "geometry", "series", "evaluation", "online",
              "alerts"]
PARAMS = ["env", "level", "model", "run", "step", "month", "unit", "history", "metric",
          "limit", "severity"]
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-10, 2_000_000).map(str),
    st.sampled_from([ENV, "production", "cm", "pgm", "small_chorus", "grid_chorus",
                     "past_draws", "msle", "ERROR", "1", "36", "521", ".", "..", "-x", "",
                     "1e3", "nan", "m520-x"]),
)


@settings(max_examples=100, deadline=None)
@given(path=st.sampled_from(DATA_PATHS),
       params=st.dictionaries(st.sampled_from(PARAMS), VALUES, max_size=6))
def test_no_query_makes_the_data_endpoints_fail(
    dash: TestClient, path: str, params: dict[str, str],
) -> None:
    response = dash.get(f"/dashboard/data/{path}", params=params)
    assert response.status_code in (200, 404, 422), (params, response.text)
    if response.status_code == 422:
        assert all(d["msg"] for d in response.json()["detail"])


def test_series_interval_from_stored_quantiles_equals_the_draws(
    dash: TestClient, dash_config: Path,
) -> None:
    """A partition that stores its quantile columns gives the interval its draws give (a
    copy without the columns, as older versions stored it; run last in this module: it adds
    a run to the workspace)."""
    from api_workspace import strip_stored_quantiles

    store = PredictionStore(load_settings(dash_config).layout.env(ENV).predictions)
    run = store.runs("cm", "past_draws")[-1]
    source = store.partition_path("cm", run, "past_draws")
    copy = store.partition_path("cm", f"{run}-q", "past_draws")
    shutil.copytree(source, copy)
    strip_stored_quantiles(copy / "part-0.parquet")
    assert store.stored_quantiles("cm", run, "past_draws")
    assert not store.stored_quantiles("cm", f"{run}-q", "past_draws")
    cm = _newest(dash_config, "cm")
    unit = int(cm.loc[cm.month_id == 520].sort_values("ged_sb").iloc[-1]["country_id"])
    url = f"/dashboard/data/series?env={ENV}&level=cm&model=past_draws&unit={unit}&run="
    want, got = _ok(dash, url + f"{run}-q"), _ok(dash, url + run)
    for a, b in zip(want["forecast"], got["forecast"], strict=True):
        assert a["point"] == b["point"]
        assert [b[k] for k in ("q10", "q50", "q90")] == pytest.approx(
            [a[k] for k in ("q10", "q50", "q90")], rel=1e-3, abs=1e-6)
