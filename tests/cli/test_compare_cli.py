"""`ewspipe evaluate compare A B` end to end on a small demo workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.cli.model_files import baseline

CONFIG = '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n'


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name, algorithm in (("zero_line", "zero"), ("last_value", "locf"),
                            ("new_idea", "zero")):
        (models / f"{name}.toml").write_text(baseline(name, algorithm))
    (tmp_path / "ewspipe.toml").write_text(CONFIG)
    return tmp_path


@pytest.fixture
def run(workspace: Path, cli):
    def go(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "30", "--pgm-cells", "50",
              "--last-month", "520").code == 0
    return go


def _evaluate(run, *args: str) -> str:
    res = run("evaluate", "--run-type", "calibration", *args, "--json")
    assert res.code == 0, res.err
    return res.json()["run_id"]


def test_same_models_same_data_have_zero_delta(run):
    a = _evaluate(run, "--model", "zero_line", "--model", "last_value")
    b = _evaluate(run, "--model", "zero_line", "--model", "last_value")
    res = run("evaluate", "compare", a, b, "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["run_a"] == a and doc["run_b"] == b and doc["metric"] == "msle"
    assert [m["model"] for m in doc["models"]] == ["zero_line", "last_value"]
    for m in doc["models"]:
        assert m["rows"]["only_a"] == m["rows"]["only_b"] == 0
        assert all(v["delta"] == 0.0 for v in m["values"].values())
        assert set(m["values"]) == {"pooled", "step", "month", "sequence"}
        assert m["dm"]["p_value"] == 1.0 and m["dm"]["statistic"] == 0.0
        assert m["dm"]["n_periods"] == 48 and m["dm"]["max_lag"] == 3
        assert m["verdict"] == "no significant difference"
        assert m["config_hash"]["same"] and m["snapshot"]["same"]
        assert [g["group"] for g in m["groups"]["step"]] == list(range(1, 37))
    text = run("evaluate", "compare", a[-6:], b[-6:])  # unique parts of the ids do
    assert text.code == 0, text.err
    assert "no significant difference" in text.out and "+0.0000" in text.out


def test_different_model_sets_and_a_better_model(run, workspace):
    a = _evaluate(run, "--model", "zero_line", "--model", "new_idea")
    (workspace / "models" / "new_idea.toml").write_text(
        baseline("new_idea", "locf"))  # same name, a better algorithm
    b = _evaluate(run, "--model", "new_idea", "--model", "last_value")
    res = run("evaluate", "compare", a, b, "--metric", "msle", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["models_only_in_a"] == ["zero_line"] and doc["models_only_in_b"] == ["last_value"]
    (m,) = doc["models"]
    assert m["model"] == "new_idea" and not m["config_hash"]["same"]
    assert m["values"]["pooled"]["delta"] < 0
    assert m["dm"]["verdict"] == "B better" and m["dm"]["p_value"] < 0.05
    reverse = run("evaluate", "compare", b, a, "--by", "origin", "--json").json()
    assert reverse["models"][0]["verdict"] == "A better"
    assert reverse["models"][0]["dm"]["n_periods"] == 13
    text = run("evaluate", "compare", a, b)
    assert "B better" in text.out and "only in A (not compared): zero_line" in text.out


def test_unknown_or_ambiguous_ids_exit_2(run):
    a = _evaluate(run, "--model", "zero_line")
    _evaluate(run, "--model", "zero_line")
    res = run("evaluate", "compare", a, "no_such_run", "--json")
    assert res.code == 2 and "no run matches 'no_such_run'" in res.json()["error"]
    res = run("evaluate", "compare", a, "evaluate_calibration")
    assert res.code == 2 and "2 runs match" in res.err


def test_mismatched_run_types_exit_2(run):
    cal = _evaluate(run, "--model", "zero_line")
    val = run("evaluate", "--run-type", "validation", "--model", "zero_line", "--json")
    assert val.code == 0, val.err
    res = run("evaluate", "compare", cal, val.json()["run_id"], "--json")
    assert res.code == 2
    assert "different run types" in res.json()["error"]
    fc = run("forecast", "--level", "cm", "--model", "zero_line", "--json")
    res = run("evaluate", "compare", cal, fc.json()["run_id"])
    assert res.code == 2 and "is a forecast run" in res.err


def test_different_partitions_exit_2(run, workspace):
    a = _evaluate(run, "--model", "zero_line")
    (workspace / "ewspipe.toml").write_text(
        CONFIG + "\n[partitions.calibration]\ntrain = [121, 443]\ntest = [444, 491]\n")
    b = _evaluate(run, "--model", "zero_line")
    res = run("evaluate", "compare", a, b)
    assert res.code == 2 and "different cm partitions" in res.err


def test_bad_options_exit_2(run):
    a = _evaluate(run, "--model", "zero_line")
    b = _evaluate(run, "--model", "zero_line")
    assert run("evaluate", "compare", a, b, "--metric", "nope").code == 2
    res = run("evaluate", "compare", a, b, "--max-lag", "47")
    assert res.code == 2 and "does not fit" in res.err
    assert run("evaluate", "compare", a, b, "--by", "week").code == 2
    assert run("evaluate", "compare", a).code == 2  # B missing: a usage error
