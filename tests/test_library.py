"""ewspipe as a library: the public names, load_panel's inputs and refusals, and backtest /
forecast giving exactly what `ewspipe evaluate` / `ewspipe forecast` store for the same data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ewspipe
from ewspipe.catalog import load_catalog
from ewspipe.errors import InputError, PanelError, SpecError
from ewspipe.flows.modelrun import evaluate_models, forecast_models
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.synthetic import demo_world
from ewspipe.settings import DemoSettings, Settings, load_settings
from ewspipe.store.predictions import read_forecast

MODEL = """name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
features = []
status = "shadow"
owner = "tests"
description = "A cheap model for the library tests."
"""
ENSEMBLE = """name = "tiny_chorus"
level = "cm"
target = "ged_sb"
members = ["flat_line", "calm_mean"]
aggregation = "mean"
status = "shadow"
owner = "tests"
description = "Mean of two cheap models."
"""


@pytest.fixture(scope="module")
def cm_frame() -> pd.DataFrame:
    return demo_world(DemoSettings(countries=12, pgm_cells=50)).cm


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("library")
    (root / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n\n'
                                       "[tracking]\nenabled = false\n")
    (root / "models").mkdir()
    (root / "ensembles").mkdir()
    for name, algorithm in (("flat_line", "locf"), ("calm_mean", "log_average")):
        (root / "models" / f"{name}.toml").write_text(MODEL.format(name=name,
                                                                   algorithm=algorithm))
    (root / "ensembles" / "tiny_chorus.toml").write_text(ENSEMBLE)
    return load_settings(root / "ewspipe.toml")


def test_import_is_light_and_lists_the_public_names() -> None:
    code = ("import sys, ewspipe; heavy = [m for m in ('pandas', 'lightgbm', 'ewspipe.library') "
            "if m in sys.modules]; print(heavy, sorted(ewspipe.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("[] ")
    for name in ("load_panel", "backtest", "forecast", "Evaluation", "Panel", "Forecast",
                 "BacktestResult", "backtest_forecasts",
                 "ModelSpec", "load_settings", "Workspace", "init_workspace"):
        assert name in ewspipe.__all__ and name in dir(ewspipe)
    assert ewspipe.Panel.__module__ == "ewspipe.panel.schema"
    with pytest.raises(AttributeError, match=r"no attribute 'nothing'"):
        _ = ewspipe.nothing  # type: ignore[attr-defined]


def test_load_panel_takes_views_frames_long_frames_and_files(cm_frame: pd.DataFrame,
                                                             tmp_path: Path) -> None:
    long = ewspipe.load_panel(cm_frame)
    views = ewspipe.load_panel(cm_frame.set_index(["month_id", "country_id"]))
    assert long.level.value == views.level.value == "cm"
    pd.testing.assert_frame_equal(long.frame, views.frame)
    cm_frame.to_csv(tmp_path / "cm.csv", index=False)
    pd.testing.assert_frame_equal(ewspipe.load_panel(tmp_path / "cm.csv").frame, long.frame)
    grid = cm_frame.rename(columns={"country_id": "priogrid_gid"})
    assert ewspipe.load_panel(grid.set_index(["month_id", "priogrid_gid"])).level.value == "pgm"
    assert ewspipe.load_panel(long) is long


def test_load_panel_names_the_column_at_fault(cm_frame: pd.DataFrame) -> None:
    with pytest.raises(InputError, match=r"'country_id' or 'priogrid_gid'.*level='cm'"):
        ewspipe.load_panel(cm_frame.rename(columns={"country_id": "gw"}))
    bad = cm_frame.copy()
    bad.loc[5, "ged_ns"] = -3
    with pytest.raises(PanelError, match=r"column 'ged_ns'.*negative"):
        ewspipe.load_panel(bad)
    with pytest.raises(InputError, match=r"level='pgm' but the panel given is cm"):
        ewspipe.load_panel(ewspipe.load_panel(cm_frame), level="pgm")


def test_backtest_equals_the_evaluation_run(workspace: Settings,
                                            cm_frame: pd.DataFrame) -> None:
    """Same protocol, same numbers: the library vs `ewspipe evaluate`'s stored metrics and
    forecasts, for a model and an ensemble (members aggregated as the run does)."""
    import_frame(cm_frame, "cm", SnapshotStore(workspace.snapshot_dir), source={"kind": "test"},
                 source_name="demo cm")
    run = evaluate_models(workspace, load_catalog(workspace.models_dir,
                                                  ensembles_dir=workspace.ensembles_dir),
                          run_type="calibration", names=["tiny_chorus"])
    stored = {m.model: m for m in run.models}
    for name in ("tiny_chorus", "flat_line"):
        ours = ewspipe.backtest(name, cm_frame, settings=workspace)
        assert ours.metrics == stored[name].metrics["pooled"]  # type: ignore[index]
        theirs, _ = read_forecast(Path(run.path) / stored[name].predictions)
        np.testing.assert_array_equal(ours.forecast.point, theirs.point)
    chorus = ewspipe.backtest("tiny_chorus", cm_frame, settings=workspace)
    assert chorus.kind == "ensemble" and set(chorus.members) == {"flat_line", "calm_mean"}
    assert chorus.partition == "calibration" and chorus.msle == chorus.metrics["msle"]
    table = chorus.to_frame()
    assert set(table["scheme"]) == {"step", "month", "sequence"}
    assert len(table[(table.scheme == "sequence") & (table.metric == "msle")]) == 13
    assert "msle=" in repr(chorus)


def test_backtest_partition_scores_every_window(workspace: Settings,
                                                 cm_frame: pd.DataFrame) -> None:
    """One fit per [partitions.backtest] window, each the calibration protocol with its own
    train end: the last window is calibration's, so its scores are calibration's."""
    result = ewspipe.backtest("tiny_chorus", cm_frame, "backtest", settings=workspace)
    assert list(result.windows) == ["2005-2008", "2009-2012", "2013-2016", "2017-2020"]
    calibration = ewspipe.backtest("tiny_chorus", cm_frame, settings=workspace)
    assert result["2017-2020"].metrics == calibration.metrics
    first = result["2005-2008"]
    assert (first.run_type, first.window, first.kind) == ("backtest", "2005-2008", "ensemble")
    months = first.forecast.frame["month_id"]
    assert (int(months.min()), int(months.max())) == (301, 348)
    assert first.metrics != calibration.metrics
    msles = [e.msle for e in result.windows.values()]
    assert result.msle == pytest.approx(sum(msles) / 4)  # type: ignore[arg-type]
    table = result.to_frame()
    assert list(table["window"]) == list(result.windows)
    assert list(table["first_month"]) == [301, 349, 397, 445]
    assert table["msle"].tolist() == msles
    with pytest.raises(KeyError, match="2005-2008"):
        result["2021-2024"]
    forecasts = ewspipe.backtest_forecasts("tiny_chorus", cm_frame, settings=workspace)
    assert list(forecasts) == list(result.windows)
    assert set(forecasts["2009-2012"]) == {"flat_line", "calm_mean", "tiny_chorus"}
    np.testing.assert_array_equal(forecasts["2009-2012"]["tiny_chorus"].point,
                                  result["2009-2012"].forecast.point)


def test_forecast_equals_the_forecast_run(workspace: Settings, cm_frame: pd.DataFrame) -> None:
    import_frame(cm_frame, "cm", SnapshotStore(workspace.snapshot_dir), source={"kind": "test"},
                 source_name="demo cm")
    run = forecast_models(workspace, load_catalog(workspace.models_dir,
                                                  ensembles_dir=workspace.ensembles_dir),
                          names=["tiny_chorus"])
    entry = next(m for m in run.models if m.model == "tiny_chorus")
    theirs, _ = read_forecast(Path(run.path) / entry.predictions)
    ours = ewspipe.forecast("tiny_chorus", cm_frame, settings=workspace)
    pd.testing.assert_frame_equal(ours.frame, theirs.frame)
    np.testing.assert_array_equal(ours.point, theirs.point)
    assert ours.frame["month_id"].min() == int(cm_frame["month_id"].max()) + 1


def test_a_model_file_and_a_spec_run_like_catalog_names(workspace: Settings,
                                                        cm_frame: pd.DataFrame) -> None:
    path = workspace.models_dir / "flat_line.toml"
    by_file = ewspipe.backtest(path, cm_frame, settings=workspace)
    spec = load_catalog(workspace.models_dir).get("flat_line")
    assert by_file.metrics == ewspipe.backtest(spec, cm_frame, settings=workspace).metrics


def test_refusals_say_what_to_do(workspace: Settings, cm_frame: pd.DataFrame,
                                 tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no model or ensemble named 'flat_lime'.*flat_line"):
        ewspipe.backtest("flat_lime", cm_frame, settings=workspace)
    with pytest.raises(InputError, match=r"partition 'forecasting'.*'backtest'.*ewspipe.forecast"):
        ewspipe.backtest("flat_line", cm_frame, "forecasting", settings=workspace)
    with pytest.raises(InputError, match=r"covers months 121..300.*calibration"):
        ewspipe.backtest("flat_line", cm_frame[cm_frame.month_id <= 300], settings=workspace)
    broken = tmp_path / "broken_line.toml"
    broken.write_text(MODEL.format(name="broken_line", algorithm="no_such_algorithm"))
    with pytest.raises(SpecError, match=r"broken_line.toml: invalid model file"):
        ewspipe.backtest(broken, cm_frame, settings=workspace)
    grid = cm_frame.rename(columns={"country_id": "priogrid_gid"})
    with pytest.raises(InputError, match=r"cm model but the panel is pgm"):
        ewspipe.backtest("flat_line", grid, settings=workspace)


@pytest.mark.parametrize(("call", "parameter", "needle"), [
    (lambda ws, df: ewspipe.backtest(None, df, settings=ws), "model", "cannot use a NoneType"),
    (lambda ws, df: ewspipe.backtest(42, df, settings=ws), "model", "cannot use a int"),
    (lambda ws, df: ewspipe.backtest("flat_lime", df, settings=ws), "model", "flat_line"),
    (lambda ws, df: ewspipe.backtest("flat_line", df, "nope", settings=ws), "partition",
     "partition 'nope'"),
    (lambda ws, df: ewspipe.backtest("flat_line", df, settings="ewspipe.toml"), "settings",
     "ewspipe.load_settings('ewspipe.toml')"),
    (lambda ws, df: ewspipe.forecast("flat_line", df, settings=5), "settings",
     "cannot use a int"),
    (lambda ws, df: ewspipe.load_panel(df, level="xx"), "level", "level 'xx'"),
    (lambda ws, df: ewspipe.load_panel(df, count_columns=["ged_sb", "ged_sb"]),
     "count_columns", "'ged_sb' is listed more than once"),
    (lambda ws, df: ewspipe.load_panel(df, count_columns=[]), "count_columns",
     "the list is empty"),
    (lambda ws, df: ewspipe.load_panel(df, count_columns=[1]), "count_columns",
     "1 is not a name"),
    (lambda ws, df: ewspipe.load_panel(df, count_columns=["ged_xx"]), "count_columns",
     "column 'ged_xx'"),
    (lambda ws, df: ewspipe.load_panel(ewspipe.load_panel(df), count_columns=["nope"]),
     "count_columns", "column 'nope'"),  # a Panel given again is checked again
    (lambda ws, df: ewspipe.load_panel(ewspipe.load_panel(df), missing="bogus"), "missing",
     "'bogus'"),
    (lambda ws, df: ewspipe.load_panel(None), "data", "cannot read a NoneType"),
    (lambda ws, df: ewspipe.load_panel(ewspipe.load_panel(df), level="pgm"), "level",
     "the panel given is cm"),
    (lambda ws, df: ewspipe.load_panel(df.rename(columns={"country_id": "x"})), "data",
     "neither is present"),
    (lambda ws, df: ewspipe.backtest(_spec(algorithm="nope"), df, settings=ws), "model",
     "ModelSpec 'flat_line': invalid model:\n  key 'algorithm': unknown algorithm 'nope'"),
    (lambda ws, df: ewspipe.backtest(_spec(hyperparameters={"w": "twelve"}), df,
                                     settings=ws), "model", "key 'hyperparameters.w'"),
    (lambda ws, df: ewspipe.backtest("/nonexistent/m.toml", df, settings=ws), "model",
     "does not exist"),
    (lambda ws, df: ewspipe.backtest("flat_line", df[df.month_id < 300], settings=ws), "data",
     "the panel covers months"),
    (lambda ws, df: ewspipe.load_settings(5), "path", "cannot use a int as a path"),
    (lambda ws, df: ewspipe.init_workspace(None), "path", "cannot use a NoneType"),
    (lambda ws, df: ewspipe.init_workspace("/tmp/a\0b"), "path", "NUL byte"),
    (lambda ws, df: ewspipe.Workspace.open(5), "path", "cannot use a int"),
    (lambda ws, df: ewspipe.Workspace.open(state_dir=5), "state_dir", "cannot use a int"),
    (lambda ws, df: ewspipe.Forecast(frame=df.iloc[:0], point=[0.0], samples=np.zeros((1, 1)),
                                     unit_column="country_id"), "point", "numpy array"),
    (lambda ws, df: ewspipe.Forecast.concat([]), "parts", "nothing to concatenate"),
])
def test_a_wrong_argument_is_an_input_error_naming_it(workspace: Settings,
                                                      cm_frame: pd.DataFrame, call: Any,
                                                      parameter: str, needle: str) -> None:
    """Not a TypeError or AttributeError from deep inside, and never 'option --x' wording."""
    with pytest.raises(InputError) as caught:
        call(workspace, cm_frame)
    assert caught.value.parameter == parameter and needle in str(caught.value)
    assert "option " not in str(caught.value)


def _spec(**changes: Any) -> ewspipe.ModelSpec:
    raw = {"name": "flat_line", "level": "cm", "target": "ged_sb", "algorithm": "locf",
           "features": [], "status": "shadow", "owner": "tests", "description": "x"}
    return ewspipe.ModelSpec(**{**raw, **changes})


def test_a_model_file_that_is_not_utf8_is_a_spec_error(workspace: Settings,
                                                      cm_frame: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "flat_line.toml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(SpecError, match=r"flat_line.toml: not a UTF-8 text file") as caught:
        ewspipe.backtest(path, cm_frame, settings=workspace)
    assert caught.value.parameter == "model"


def test_a_views_style_parquet_file_loads_like_its_frame(cm_frame: pd.DataFrame,
                                                        tmp_path: Path) -> None:
    """pandas stores the (month_id, country_id) index in the file; it comes back as columns."""
    path = tmp_path / "views.parquet"
    cm_frame.set_index(["month_id", "country_id"]).to_parquet(path)
    by_path = ewspipe.load_panel(path)
    assert by_path.frame.equals(ewspipe.load_panel(cm_frame).frame)
    assert by_path == by_path and by_path != ewspipe.load_panel(cm_frame)  # identity, no raise


def test_workspace_methods_take_one_name_as_a_string(tmp_path: Path,
                                                     cm_frame: pd.DataFrame) -> None:
    from ewspipe.arguments import names_list

    assert names_list("last_value") == ["last_value"]
    assert names_list(("a", "b")) == ["a", "b"] and names_list(None) is None
    with pytest.raises(InputError, match="3 is not a name") as caught:
        names_list(["a", 3], "snapshot_refs")
    assert caught.value.parameter == "snapshot_refs"


def test_load_panel_applies_the_import_plausibility_bound(cm_frame: pd.DataFrame) -> None:
    """load_panel's checks are those of `data import panel`, the deaths bound included."""
    wild = cm_frame.copy()
    wild.loc[wild.index[5], "ged_sb"] = 2**62
    with pytest.raises(PanelError, match=r"column 'ged_sb': 1 rows exceed the plausibility "
                       r"bound of 1,000,000"):
        ewspipe.load_panel(wild)
    assert ewspipe.load_panel(cm_frame, count_columns="ged_sb").spec.count_columns == ("ged_sb",)
