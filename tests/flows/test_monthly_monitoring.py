"""The monthly run feeds monitoring: baselines are forecast and stored (never published),
output drift is a task of the graph (first run: nothing to compare; next month: compared, its
alerts routed with the run's), and ``ewspipe online-eval [--env ENV]`` scores the monthly
runs. Two development runs of the small monthly workspace plus a zero baseline, on the demo
world through 519 and then 520 (about 10 s, shared by the module)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.flows.monthly_workspace import MODEL, write_monthly_workspace

from ewspipe.catalog import load_catalog
from ewspipe.cli.main import main
from ewspipe.flows.monitoring_tasks import previous_partition
from ewspipe.flows.monthly import build_monthly_graph
from ewspipe.settings import load_settings
from ewspipe.store.prediction_store import PredictionStore

TIGHT = "\n[qa.output_drift]\nmax_unit_jump = 0.01\nmax_alerts = 2\n"


def _workspace(root: Path) -> Path:
    cfg = write_monthly_workspace(root)
    (root / "models" / "zero_line.toml").write_text(MODEL.format(
        name="zero_line", level="cm", algorithm="zero", status="baseline", features="[]",
        hyper=""))
    cfg.write_text(cfg.read_text() + TIGHT)  # every changed forecast alerts: routed alerts
    return cfg


@dataclass
class Months:
    cfg: Path
    first: dict
    second: dict
    again: dict

    def cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.cfg), *args])
        return code, out.getvalue(), err.getvalue()

    def json(self, *args: str) -> tuple[int, dict]:
        code, out, _ = self.cli(*args, "--json")
        return code, json.loads(out)

    @property
    def state(self) -> Path:
        return self.cfg.parent / "state" / "development"


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> Months:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        cfg = _workspace(tmp_path_factory.mktemp("monthly_monitoring") / "ws")
        m = Months(cfg, {}, {}, {})

        def month(last: int) -> dict:
            code, _, err = m.cli("data", "demo", "--countries", "30", "--pgm-cells", "100",
                                 "--last-month", str(last))
            assert code == 0, err
            code, doc = m.json("run", "--quiet")
            assert code == 0, doc
            return doc

        m.first, m.second = month(519), month(520)
        m.again = m.json("run", "--quiet")[1]
    return m


def test_graph_forecasts_baselines_and_runs_output_drift_before_report(tmp_path: Path):
    cfg = _workspace(tmp_path / "ws")
    settings = load_settings(cfg)
    graph = build_monthly_graph(load_catalog(settings.models_dir,
                                             ensembles_dir=settings.ensembles_dir),
                                publish=True)
    names = graph.names
    assert {"train:zero_line", "forecast:zero_line"} <= set(names)
    assert "train:old_guess" not in names  # deprecated models stay out
    assert names.index("store") < names.index("output_drift") < names.index("publish") \
        < names.index("report") < names.index("alerts")
    assert graph["output_drift"].upstream == ("store",)
    assert "output_drift" in graph["alerts"].upstream  # its alerts are routed with the run's
    assert "forecast:zero_line" in graph["store"].upstream


def test_baselines_are_stored_never_published(months: Months):
    parts = {p["model"]: p["status"] for p in months.first["outputs"]["partitions"]}
    assert parts["zero_line"] == "baseline" and parts["last_value"] == "shadow"
    assert {c["model"] for c in months.first["qa"]["failed"]} == set()
    store = PredictionStore(months.state / "predictions")
    zero = store.query("cm", "zero_line", run=months.first["outputs"]["runs"]["cm"])
    assert len(zero) == 36 * months.first["snapshots"]["cm"]["units_last_month"]
    assert (zero["point"] == 0).all()
    assert months.first["outputs"]["published"] is None  # development never publishes


def test_output_drift_first_run_says_nothing_to_compare(months: Months):
    first = months.first["output_drift"]
    assert first["compared"] == 0 and first["alerts"] == 0 and first["previous_runs"] == []
    assert "first monthly run" in first["note"]
    assert all("no earlier forecast" in m["skipped"] for m in first["models"])
    assert len(first["models"]) == len(months.first["outputs"]["partitions"])


def test_output_drift_compares_with_the_previous_month_and_routes_alerts(months: Months):
    second = months.second["output_drift"]
    run1 = months.first["outputs"]["runs"]
    assert second["previous_runs"] == sorted(set(run1.values()))
    assert second["compared"] == len(months.second["outputs"]["partitions"])
    assert second["note"] is None
    for m in second["models"]:
        assert (m["origin"], m["previous_origin"]) == (520, 519)
        assert m["previous_run"] == run1[m["level"]]
    report = json.loads(Path(second["report"]).read_text())
    assert len(report["alerts"]) == second["alerts"] > 0
    # only deployed and shadow models alert ([qa.output_drift] statuses), baselines never
    assert {a["details"]["model"] for a in report["alerts"]} <= {
        m["model"] for m in second["models"] if m["status"] in ("deployed", "shadow")}
    assert months.second["alerts"]["by_source"]["output_drift"] == second["alerts"]
    logged = [json.loads(line) for line in (months.state / "alerts.jsonl").read_text()
              .splitlines()]
    assert sum(a["source"] == "output_drift" for a in logged) == second["alerts"]


def test_rerun_of_the_month_reuses_output_drift(months: Months):
    assert months.again["ran"] == ["snapshot"]
    assert months.again["output_drift"] == months.second["output_drift"]
    code, out, _ = months.cli("run")
    assert code == 0
    assert f"output drift: {months.second['output_drift']['compared']} forecasts vs " in out


def test_previous_partition_is_the_latest_earlier_origin(months: Months):
    store = PredictionStore(months.state / "predictions")
    run1 = months.first["outputs"]["runs"]["cm"]
    assert previous_partition(store, "cm", "small_ridge", 520) == (run1, 519)
    assert previous_partition(store, "cm", "small_ridge", 519) is None
    assert previous_partition(store, "cm", "nobody", 521) is None


def test_online_eval_scores_the_monthly_runs_with_baselines(months: Months):
    code, doc = months.json("online-eval", "--env", "development", "--no-alerts")
    assert code == (1 if doc["alerts"] else 0)
    assert doc["source"] == {"kind": "monthly_runs", "environment": "development",
                             "path": str(months.state / "predictions")}
    models = {m["model"]: m for m in doc["models"]}
    assert models["zero_line"]["status"] == "baseline"
    assert models["small_chorus"]["kind"] == "ensemble"
    units = months.first["snapshots"]["cm"]["units_last_month"]
    for name in ("small_ridge", "zero_line", "small_chorus"):
        m = models[name]
        assert [r["origin"] for r in m["runs"]] == [519, 520]
        assert m["scored"] + m["missing_actuals"] == units  # step 1 of origin 519 is due
        assert m["scored"] > 0 and m["pooled"]["msle"] >= 0
    baselines = {b["baseline"] for b in models["small_ridge"]["assessment"]["baselines"]}
    assert baselines == {"zero_line"}
    assert (months.state / "online" / "summary.json").is_file()
    # without --env and without any `ewspipe forecast` run: the default environment's runs
    code, plain = months.json("online-eval", "--no-alerts")
    assert plain["source"]["kind"] == "monthly_runs" and plain["models"] == doc["models"]
    assert any("no stored forecast run" in n for n in plain["notes"])


def test_online_eval_env_refusals(months: Months):
    code, _, err = months.cli("online-eval", "--env", "staging")
    assert code == 2 and "no stored monthly run" in err and "ewspipe run --env staging" in err
    code, _, err = months.cli("online-eval", "--env", "testing")
    assert code == 2 and "--env" in err and "testing" in err


def test_forecast_runs_keep_their_online_eval(months: Months, tmp_path: Path):
    """Once an `ewspipe forecast` run is stored, online-eval without --env evaluates the
    forecast runs as before, and --env still reads the monthly runs."""
    import shutil

    cfg = tmp_path / "ws" / "ewspipe.toml"
    shutil.copytree(months.cfg.parent, cfg.parent)
    other = Months(cfg, {}, {}, {})
    code, doc = other.json("forecast", "--level", "cm", "--model", "zero_line")
    assert code == 0, doc
    code, plain = other.json("online-eval", "--no-alerts")
    assert plain["source"]["kind"] == "forecast_runs"
    assert [m["model"] for m in plain["models"]] == ["zero_line"]
    assert plain["models"][0]["scored"] == 0  # its origin is the last month: all pending
    assert (cfg.parent / "state" / "online" / "summary.json").is_file()
    code, env = other.json("online-eval", "--env", "development", "--no-alerts")
    assert env["source"]["kind"] == "monthly_runs" and len(env["models"]) > 1


def test_api_and_dashboard_show_the_monthly_online_evaluation(months: Months):
    from fastapi.testclient import TestClient

    from ewspipe.api.app import create_app

    code, doc = months.json("online-eval", "--env", "development", "--no-alerts")
    assert code == (1 if doc["alerts"] else 0)
    with TestClient(create_app(load_settings(months.cfg))) as client:
        resp = client.get("/api/v1/evaluations/online", params={"env": "development"})
        assert resp.status_code == 200 and resp.json()["digest"] == doc["digest"]
        # no forecast run was evaluated: the default environment's is the latest
        assert client.get("/api/v1/evaluations/online").json()["digest"] == doc["digest"]
        assert client.get("/api/v1/evaluations/online",
                          params={"env": "staging"}).status_code == 404
        assert client.get("/api/v1/evaluations/online",
                          params={"env": "testing"}).status_code == 422
        dash = client.get("/dashboard/data/online", params={"level": "cm"}).json()
        assert {"small_chorus", "zero_line"} <= {m["model"] for m in dash["models"]}
