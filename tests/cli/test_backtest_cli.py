"""`ewspipe evaluate --run-type backtest` end to end on a small demo world: one stored run
per [partitions.backtest] window, the per-window table and rank stability, and the scores
read back from the run store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ewspipe.flows.backtest_run import stored_backtest
from ewspipe.settings import load_settings

BASELINE = """
name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A baseline."
features = []
"""
ENSEMBLE = """name = "pair_mean"
level = "cm"
target = "ged_sb"
members = ["last_value", "mean_twelve"]
aggregation = "mean"
status = "shadow"
owner = "tests"
description = "Mean of two baselines."
"""
WINDOWS = ["2005-2008", "2009-2012", "2013-2016", "2017-2020"]


@pytest.fixture
def run(tmp_path: Path, cli):
    (tmp_path / "models").mkdir()
    (tmp_path / "ensembles").mkdir()
    for name, algorithm, status in (("zero_line", "zero", "baseline"),
                                    ("last_value", "locf", "shadow"),
                                    ("mean_twelve", "log_average", "shadow")):
        (tmp_path / "models" / f"{name}.toml").write_text(
            BASELINE.format(name=name, algorithm=algorithm, status=status))
    (tmp_path / "ensembles" / "pair_mean.toml").write_text(ENSEMBLE)
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n\n'
                                           "[tracking]\nenabled = false\n")

    def go(*args: str):
        return cli("--config", str(tmp_path / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "20", "--pgm-cells", "50",
              "--last-month", "500").code == 0
    return go


def test_backtest_evaluates_every_window_and_ranks_the_models(run, tmp_path: Path) -> None:
    res = run("evaluate", "--run-type", "backtest", "--level", "cm", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["run_type"] == "backtest" and list(doc["windows"]) == WINDOWS
    assert doc["windows"]["2005-2008"]["train"] == [121, 300]
    assert doc["windows"]["2017-2020"]["test"] == [445, 492]
    models = doc["models"]
    assert set(models) == {"zero_line", "last_value", "mean_twelve", "pair_mean"}
    assert models["pair_mean"]["kind"] == "ensemble"
    for label, window in doc["windows"].items():  # each window is a stored evaluation run
        record = json.loads((Path(window["path"]) / "run.json").read_text())
        assert (record["run_type"], record["window"]) == ("backtest", label)
        assert record["backtest"]["id"] == doc["backtest_id"]
        assert record["partition"]["cm"]["origins"][0] == window["test"][0] - 1
        pooled = {m["model"]: m["metrics"]["pooled"] for m in record["models"]}
        assert {m: models[m]["scores"][label] for m in models} == {
            m: pooled[m]["msle"] for m in models}
        ranked = sorted(models, key=lambda m: pooled[m]["msle"])
        assert models[ranked[0]]["ranks"][label] == 1
        assert models[ranked[-1]]["ranks"][label] == 4
    for m in models.values():
        scores = list(m["scores"].values())
        assert m["mean"] == pytest.approx(sum(scores) / 4)
        assert m["worst"] == max(scores) and m["scores"][m["worst_window"]] == m["worst"]
        assert m["mean_rank"] == pytest.approx(sum(m["ranks"].values()) / 4)
        assert m["worst_rank"] == max(m["ranks"].values())

    # the last window trains like calibration: calibration reuses its fitted models
    cal = run("evaluate", "--run-type", "calibration", "--model", "last_value", "--json")
    entry = cal.json()["models"][0]
    assert entry["reused"] and entry["metrics"]["pooled"]["msle"] == \
        models["last_value"]["scores"]["2017-2020"]

    text = run("evaluate", "--run-type", "backtest", "--model", "pair_mean")
    assert text.code == 0, text.err
    assert "2005-2008" in text.out and "mean rank" in text.out and "pair_mean" in text.out

    # the catalog page shows each window's score and the rank stability
    pages = run("models", "catalog", "--out", str(tmp_path / "pages"), "--json")
    assert pages.code == 0, pages.err
    assert pages.json()["backtest"]["windows"] == WINDOWS
    page = (tmp_path / "pages" / "models_cm.md").read_text()
    assert "## Backtest windows" in page
    section = page.split("## Backtest windows")[1].splitlines()
    header = next(line for line in section if line.startswith("| name |"))
    assert header == ("| name | " + " | ".join(WINDOWS)
                      + " | mean | worst | mean rank | worst rank |")
    row = next(line for line in section if line.startswith("| `zero_line`"))
    zero = models["zero_line"]
    assert f"{zero['scores']['2005-2008']:.4f} ({zero['ranks']['2005-2008']})" in row
    assert row.endswith(f"| {zero['mean_rank']:.2f} | {zero['worst_rank']} |")
    assert "Backtest" not in (tmp_path / "pages" / "models_pgm.md").read_text()
    # an edited model's old scores are not shown as its own
    model_file = tmp_path / "models" / "zero_line.toml"
    model_file.write_text(model_file.read_text().replace('"zero"', '"locf"'))
    again = run("models", "catalog", "--out", str(tmp_path / "pages"), "--json").json()
    assert "zero_line" not in again["backtest"]["scored"]

    settings = load_settings(tmp_path / "ewspipe.toml")
    stored = stored_backtest(settings.runs_dir, WINDOWS)
    assert stored["zero_line"] == models["zero_line"]["scores"]
    # a stale definition's scores are not shown as the current one's
    assert stored_backtest(settings.runs_dir, WINDOWS, {"zero_line": "0" * 64}) == {}


def test_backtest_refusals_name_the_option(run, tmp_path: Path) -> None:
    res = run("evaluate", "--run-type", "backtest", "--report", "--json")
    assert res.code == 2 and "--report" in res.json()["error"]
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n\n'
                                           "[partitions.backtest]\ntest_firsts = [301, 300]\n")
    res = run("evaluate", "--run-type", "backtest", "--json")
    assert res.code == 2 and "[partitions.backtest] test_firsts" in res.out
