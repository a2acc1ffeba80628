"""`ewspipe models stack`: member forecasts on windows before validation, weights learned,
compared with equal weights, and written back with --apply (demo world, cheap baselines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewspipe.catalog.ensembles import check_ensemble_text
from ewspipe.flows.stacking import stacking_windows, window_label
from ewspipe.partitions import Window
from ewspipe.settings import Settings

MODEL = """name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
status = "shadow"
owner = "tests"
description = "A cheap member."
features = []
"""
ENSEMBLE = """# learned weights go below
name = "steady_chorus"
level = "cm"
target = "ged_sb"
members = ["calm_mean", "last_line"]
aggregation = "mean"
status = "shadow"
owner = "tests"
description = "Two baselines."
"""


@pytest.fixture
def run(tmp_path: Path, cli):
    (tmp_path / "models").mkdir()
    (tmp_path / "ensembles").mkdir()
    for name, algorithm in (("calm_mean", "log_average"), ("last_line", "locf")):
        (tmp_path / "models" / f"{name}.toml").write_text(MODEL.format(name=name,
                                                                       algorithm=algorithm))
    (tmp_path / "ensembles" / "steady_chorus.toml").write_text(ENSEMBLE)
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n\n'
                                           '[tracking]\nenabled = false\n')

    def go(*args: str):
        return cli("--config", str(tmp_path / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "20", "--pgm-cells", "50",
              "--last-month", "500").code == 0
    return go


def test_windows_are_calibration_and_earlier_test_windows() -> None:
    windows = stacking_windows(Settings().partition_scheme(), 3)
    assert [label for label, _ in windows] == ["2009-2012", "2013-2016", "2017-2020"]
    assert [(p.train.first, p.train.last, p.test.first, p.test.last) for _, p in windows] == [
        (121, 348, 349, 396), (121, 396, 397, 444), (121, 444, 445, 492)]
    assert window_label(Window(445, 450)) == "2017"


def test_stack_reports_then_applies(run, tmp_path: Path) -> None:
    path = tmp_path / "ensembles" / "steady_chorus.toml"
    res = run("models", "stack", "steady_chorus", "--windows", "2", "--json", "--quiet")
    assert res.code == 0, res.err
    doc = res.json()
    assert [w["window"] for w in doc["windows"]] == ["2013-2016", "2017-2020"]
    assert doc["shrinkage"] == 0.5 and doc["applied"] is None
    assert sum(doc["weights"].values()) == pytest.approx(1.0)
    for w in doc["windows"]:
        assert w["rows"] > 0 and (w["rows"] + w["unscored"]) % (36 * 13) == 0
        assert w["stacked_msle"] > 0 and w["current_msle"] > 0
    assert doc["pooled"]["stacked_msle"] <= doc["pooled"]["equal_msle"] + 1e-12
    assert path.read_text() == ENSEMBLE  # nothing written without --apply

    text = run("models", "stack", "steady_chorus", "--windows", "2", "--shrinkage", "0.25",
               "--apply", "--quiet")
    assert text.code == 0, text.err
    assert "2017-2020" in text.out and "applied to ensembles/steady_chorus.toml" in text.out
    spec = check_ensemble_text(path, path.read_text())[0].spec
    assert spec is not None and spec.aggregation == "logmean"
    assert spec.stacking is not None and spec.stacking.shrinkage == 0.25
    assert spec.stacking.windows == ("2013-2016", "2017-2020")
    fitted = doc["fitted_weights"]
    for m in ("calm_mean", "last_line"):
        assert spec.weight_of(m) == pytest.approx(0.75 * fitted[m] + 0.125, abs=1e-5)
    assert path.read_text().startswith("# learned weights go below")
    assert run("models", "check").code == 0
    # the written ensemble runs: its calibration score is the stacked one of that window
    evaluated = run("evaluate", "--run-type", "calibration", "--model", "steady_chorus",
                    "--json", "--quiet")
    assert evaluated.code == 0, evaluated.err
    scored = {m["model"]: m for m in evaluated.json()["models"]}["steady_chorus"]
    again = run("models", "stack", "steady_chorus", "--windows", "2", "--json", "--quiet").json()
    assert scored["metrics"]["pooled"]["msle"] == pytest.approx(
        again["windows"][-1]["current_msle"], rel=1e-6)


def test_stack_learns_count_mean_weights(run, tmp_path: Path) -> None:
    path = tmp_path / "ensembles" / "steady_chorus.toml"
    res = run("models", "stack", "steady_chorus", "--windows", "1", "--combine", "mean",
              "--apply", "--json", "--quiet")
    assert res.code == 0, res.err
    assert res.json()["combine"] == "mean"
    spec = check_ensemble_text(path, path.read_text())[0].spec
    assert spec is not None and spec.aggregation == "mean"
    assert spec.stacking is not None and spec.stacking.combine == "mean"
    bad = run("models", "stack", "steady_chorus", "--combine", "median")
    assert bad.code == 2 and "median" in bad.out + bad.err


def test_stack_refusals(run) -> None:
    res = run("models", "stack", "steady_chorsu", "--json")
    assert res.code == 2 and "steady_chorus" in res.out + res.err  # did you mean
    many = run("models", "stack", "steady_chorus", "--windows", "8", "--json")
    assert many.code == 2 and "use fewer --windows" in many.out + many.err
    # a model is not an ensemble, and no "did you mean" the very name refused
    model = run("models", "stack", "calm_mean", "--json")
    assert model.code == 2 and "'calm_mean' is a model, not an ensemble" in model.json()["error"]
    assert "Did you mean 'calm_mean'" not in model.json()["error"]
    # a snapshot of the other level was silently ignored: the weights came from other data
    other = run("models", "stack", "steady_chorus", "--snapshot", "pgm", "--json")
    assert other.code == 2 and "is a pgm snapshot, but ensemble 'steady_chorus' is cm" in \
        other.json()["error"]
