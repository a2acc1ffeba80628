"""`ewspipe models sweep`: refusal on validation, JSON output, --apply and its gate."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

RIDGE = """\
# ridge_line: a linear model; alpha is tuned by `ewspipe models sweep ridge_line`.
name = "ridge_line"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "Ridge per step."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "ridge"
seed = 7   # every learner's seed

[hyperparameters.learner_params]
alpha = {alpha}  # hand-picked

[sweep]
trials = 6
seed = 3
batch_size = 3

[sweep.space]
learner_params.alpha = {space}
"""

PLAIN = """\
name = "last_value"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "baseline"
owner = "tests"
description = "LOCF."
features = []
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "ridge_line.toml").write_text(RIDGE.format(
        alpha="100000.0", space="{ float = [0.001, 1000000.0], log = true }"))
    (models / "last_value.toml").write_text(PLAIN)
    (tmp_path / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    return tmp_path


@pytest.fixture
def run(workspace: Path, cli):
    def go(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "25", "--pgm-cells", "50",
              "--last-month", "520").code == 0
    return go


def test_sweep_on_validation_is_refused_with_exit_2(run, workspace):
    res = run("models", "sweep", "ridge_line", "--run-type", "validation")
    assert res.code == 2
    assert "refused" in res.err and "leak" in res.err and "calibration" in res.err
    doc = run("models", "sweep", "ridge_line", "--run-type", "validation", "--json").json()
    assert doc["exit_code"] == 2 and "leak" in doc["error"]
    assert not (workspace / "state" / "sweeps").exists()


def test_bad_options_and_models_exit_2(run):
    assert run("models", "sweep", "ridge_line", "--executor", "spark").code == 2
    assert run("models", "sweep", "ridge_line", "--trials", "0").code == 2
    res = run("models", "sweep", "last_value")
    assert res.code == 2 and "no [sweep] table" in res.err
    assert run("models", "sweep", "ridge_lin").code == 2
    cm = next(s["id"] for s in run("data", "list", "--json").json()["snapshots"]
              if s["level"] == "cm")
    res = run("models", "sweep", "ridge_line", "--snapshot", cm, "--snapshot", cm[:8], "--json")
    assert res.code == 2
    assert res.json()["error"].startswith("option --snapshot: two snapshots given for level cm")


def test_sweep_json_and_human_output(run):
    res = run("models", "sweep", "ridge_line", "--on", "calibration", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["model"] == "ridge_line" and doc["run_type"] == doc["on"] == "calibration"
    assert doc["counts"]["complete"] == 6 and doc["budget"] == 6
    assert doc["best"]["calibration"] < doc["references"]["current"]["calibration"]
    assert doc["best"]["validation"] is not None
    assert doc["improved"] is True and doc["applied"] is None
    assert "trial #" in res.err  # progress on stderr

    # --snapshot as evaluate takes it, one id per level: the model's level's is used
    ids = {s["level"]: s["id"] for s in run("data", "list", "--json").json()["snapshots"]}
    again = run("models", "sweep", "ridge_line", "--trials", "7", "--snapshot", ids["pgm"],
                "--snapshot", ids["cm"], "--on", "calibration")
    assert again.code == 0, again.err
    assert "7 of 7 trials done: 1 evaluated now (0 resumed), 6 kept" in again.out
    assert "best trial #" in again.out and "validation (reported, not selected on)" in again.out


def test_apply_rewrites_the_model_file_keeping_comments(run, workspace):
    path = workspace / "models" / "ridge_line.toml"
    before_text = path.read_text()
    before_hash = run("models", "show", "ridge_line", "--json").json()["config_hash"]
    res = run("models", "sweep", "ridge_line", "--apply", "--on", "calibration", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    applied = doc["applied"]
    assert applied["applied"] and applied["file"] == "models/ridge_line.toml"
    best = doc["best"]["params"]["learner_params.alpha"]

    text = path.read_text()
    data = tomllib.loads(text)
    assert data["hyperparameters"]["learner_params"]["alpha"] == best
    result = data["sweep"]["result"]
    assert result["study"] == doc["study"] and result["trial"] == doc["best"]["trial"]
    assert result["score"] == pytest.approx(doc["best"]["calibration"], abs=1e-6)
    assert result["score_before"] == pytest.approx(
        doc["references"]["current"]["calibration"], abs=1e-6)
    assert result["previous"] == {"learner_params.alpha": 100000.0}
    assert result["on"] == "calibration"
    assert "run_id" not in result  # tracking is off in this workspace
    # only the alpha line changed, comment kept; everything else is as it was
    old, new = before_text.splitlines(), text.splitlines()
    assert [line for line in old if line not in new] == ["alpha = 100000.0  # hand-picked"]
    assert f"alpha = {best!r}  # hand-picked" in new
    assert new[: len(old)] == [f"alpha = {best!r}  # hand-picked" if line.startswith("alpha")
                               else line for line in old]

    assert run("models", "check").code == 0
    shown = run("models", "show", "ridge_line", "--json").json()
    assert shown["config_hash"] == applied["config_hash"] != before_hash
    assert shown["spec"]["sweep"]["result"]["trial"] == doc["best"]["trial"]


def test_apply_refuses_when_the_sweep_does_not_beat_the_file(run, workspace):
    path = workspace / "models" / "ridge_line.toml"
    path.write_text(RIDGE.format(alpha="0.01",
                                 space="{ choices = [100000.0, 1000000.0] }"))
    before = path.read_text()
    res = run("models", "sweep", "ridge_line", "--apply", "--trials", "2", "--on", "calibration")
    assert res.code == 1
    assert "not applied" in res.out and "does not beat" in res.out
    assert path.read_text() == before


def test_sweep_selects_on_the_backtest_windows_by_default(run, workspace):
    """The default objective is the mean over the backtest windows (two here, to stay
    cheap); each window's score is recorded and validation is only reported."""
    config = workspace / "ewspipe.toml"
    config.write_text(config.read_text() + "\n[partitions.backtest]\ntest_firsts = [397, 445]\n")
    res = run("models", "sweep", "ridge_line", "--trials", "1", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["on"] == doc["run_type"] == "backtest"
    best, current = doc["best"], doc["references"]["current"]
    assert list(best["windows"]) == ["2013-2016", "2017-2020"]
    assert best["backtest"] == pytest.approx(sum(best["windows"].values()) / 2)
    assert current["backtest"] == pytest.approx(sum(current["windows"].values()) / 2)
    assert "calibration" not in best and best["validation"] is not None
    # the last window is calibration's: a calibration sweep scores it the same
    cal = run("models", "sweep", "ridge_line", "--trials", "1", "--on", "calibration",
              "--json").json()
    assert cal["references"]["current"]["calibration"] == pytest.approx(
        current["windows"]["2017-2020"])
    assert cal["study"] != doc["study"]
    text = run("models", "sweep", "ridge_line", "--trials", "1")
    assert "on the mean over the backtest windows" in text.out and "by window: 2013-2016" in \
        text.out
    assert run("models", "sweep", "ridge_line", "--on", "validation").code == 2
