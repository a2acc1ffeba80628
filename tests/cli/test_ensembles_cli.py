"""Ensembles in `ewspipe evaluate` / `forecast` end to end: members reused, aggregation,
reconciliation with alerts in the run summary, on the demo world and on real cm data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.store.predictions import read_forecast

SMALL_TREE = """
name = "small_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A quick LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
seed = 7
{extra}
[hyperparameters.learner_params]
n_estimators = 10
"""

BASELINE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A baseline-like member."
features = []
{hyper}
"""

ENSEMBLE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
members = {members}
aggregation = "{aggregation}"
status = "{status}"
owner = "tests"
description = "A test ensemble."
{extra}
"""


def _models(models: Path) -> None:
    models.mkdir()
    (models / "small_tree.toml").write_text(SMALL_TREE.format(extra=""))
    (models / "small_cloud.toml").write_text(
        SMALL_TREE.format(extra="n_samples = 20\n").replace("small_tree", "small_cloud")
        .replace('status = "deployed"', 'status = "shadow"'))
    for name, level, algorithm, status, hyper in (
        ("calm_mean", "cm", "log_average", "deployed", ""),
        ("few_draws", "cm", "conflictology", "shadow", "[hyperparameters]\nn_samples = 20"),
        ("zero_line", "cm", "zero", "baseline", ""),
        ("grid_mean", "pgm", "log_average", "deployed", ""),
        ("last_grid", "pgm", "locf", "shadow", ""),
    ):
        (models / f"{name}.toml").write_text(BASELINE.format(
            name=name, level=level, algorithm=algorithm, status=status, hyper=hyper))


def _ensembles(ensembles: Path) -> None:
    ensembles.mkdir()
    specs = (
        ("steady_chorus", "cm", '["small_tree", "calm_mean"]', "mean", "deployed", ""),
        ("quiet_chorus", "cm", '["small_tree", "calm_mean", "small_cloud"]', "median",
         "shadow", ""),
        ("cloudy_chorus", "cm", '["small_cloud", "few_draws"]', "mean", "shadow",
         'samples = "pool"\n[weights]\nsmall_cloud = 3\nfew_draws = 1'),
        ("grid_chorus", "pgm", '["grid_mean", "last_grid"]', "mean", "shadow",
         'reconcile_with = "steady_chorus"'),
        ("old_chorus", "cm", '["small_tree"]', "mean", "deprecated", ""),
    )
    for name, level, members, aggregation, status, extra in specs:
        (ensembles / f"{name}.toml").write_text(ENSEMBLE.format(
            name=name, level=level, members=members, aggregation=aggregation, status=status,
            extra=extra))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    _models(tmp_path / "models")
    _ensembles(tmp_path / "ensembles")
    (tmp_path / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    return tmp_path


@pytest.fixture
def run(workspace: Path, cli):
    def go(*args: str):
        return cli("--config", str(workspace / "ewspipe.toml"), *args)

    assert go("data", "demo", "--countries", "30", "--pgm-cells", "100",
              "--last-month", "520").code == 0
    return go


def _cell_sums(grid: pd.DataFrame, owner: pd.DataFrame) -> pd.DataFrame:
    """Sum of reconciled cell points per (origin, step, country), owner taken at the origin."""
    merged = grid.merge(owner, left_on=["origin", "priogrid_gid"],
                        right_on=["month_id", "priogrid_gid"], suffixes=("", "_owner"))
    assert len(merged) == len(grid)
    return merged.groupby(["origin", "step", "country_id"], as_index=False)["point"].sum()


def _frame(path: Path) -> pd.DataFrame:
    fc, _ = read_forecast(path)
    return fc.frame.assign(point=fc.point)


def _check_reconciled(run_dir: Path, panel_frame: pd.DataFrame, grid: str, cm: str,
                      models: dict) -> int:
    """Cells sum to the cm ensemble (1e-6 relative) wherever the grid had mass; returns the
    number of country-months checked."""
    owner = panel_frame[["month_id", "priogrid_gid", "country_id"]]
    sums = _cell_sums(_frame(run_dir / models[grid]["predictions"]), owner)
    country = _frame(run_dir / models[cm]["predictions"])
    table = pd.read_parquet(run_dir / f"reconciliation/{grid}.parquet")
    both = sums.merge(country, on=["origin", "step", "country_id"], suffixes=("_cells", "_cm"))
    both = both.merge(table[["origin", "step", "country_id", "grid_sum"]],
                      on=["origin", "step", "country_id"])
    assert len(both) == len(table) == len(sums)
    placed = both["grid_sum"].to_numpy() > 0
    np.testing.assert_allclose(both["point_cells"][placed], both["point_cm"][placed],
                               rtol=1e-6)
    assert (both["point_cells"][~placed] == 0).all()
    return int(placed.sum())


def test_models_check_and_list_show_ensembles(run):
    res = run("models", "check", "--json")
    assert res.code == 0, res.out
    doc = res.json()
    assert doc["ensemble_files_checked"] == 5 and doc["ensemble_files_invalid"] == 0
    listed = run("models", "list", "--level", "pgm", "--json").json()
    assert [e["name"] for e in listed["ensembles"]] == ["grid_chorus"]
    assert listed["ensembles"][0]["kind"] == "ensemble"
    assert listed["ensembles"][0]["reconcile_with"] == "steady_chorus"
    text = run("models", "list").out
    assert "ensemble: median of 3" in text
    shown = run("models", "show", "cloudy_chorus").out
    assert "samples         pool (seed 0)" in shown and "small_cloud          0.750" in shown


def test_evaluate_an_ensemble_reuses_members_and_reconciles(run, workspace):
    res = run("evaluate", "--run-type", "calibration", "--model", "grid_chorus", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    models = {m["model"]: m for m in doc["models"]}
    # the pgm ensemble brings its members and the cm ensemble (with its members) it needs
    assert list(models) == ["small_tree", "calm_mean", "grid_mean", "last_grid",
                            "steady_chorus", "grid_chorus"]
    assert [m["kind"] for m in doc["models"]] == ["model"] * 4 + ["ensemble"] * 2
    assert not any(m["reused"] for m in doc["models"])
    grid = models["grid_chorus"]
    assert grid["metrics"]["pooled"]["msle"] is not None
    assert grid["ensemble"]["members"] == ["grid_mean", "last_grid"]
    rec = grid["ensemble"]["reconciliation"]
    assert rec["country_model"] == "steady_chorus" and rec["countries"] >= 1
    assert rec["countries_outside_grid"]["countries"] > 0  # demo: most countries own no cell
    run_dir = Path(doc["path"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["alerts"] == doc["alerts"]
    assert all(a["run_id"] == doc["run_id"] for a in doc["alerts"])
    n_rec = sum(1 for a in doc["alerts"] if a["source"] == "reconciliation")
    assert n_rec == rec["factor_alerts"] + rec["zero_sum_alerts"]
    # the same alerts reach the always-on JSONL sink, stamped with the run id
    logged = [json.loads(line) for line in
              (workspace / "state" / "alerts.jsonl").read_text().splitlines()]
    mine = [a for a in logged if a["run_id"] == doc["run_id"]]
    assert len(mine) == len(doc["alerts"]) and n_rec > 0
    _, meta = read_forecast(run_dir / grid["predictions"])
    assert meta["kind"] == "ensemble" and meta["reconcile_with"] == "steady_chorus"
    assert set(meta["members"]) == {"grid_mean", "last_grid"}
    assert (run_dir / "metrics" / "grid_chorus.json").is_file()

    snapshots = SnapshotStore(workspace / "state" / "snapshots")
    pgm = snapshots.load(snapshots.latest("pgm").id).frame
    assert _check_reconciled(run_dir, pgm, "grid_chorus", "steady_chorus", models) > 0

    again = run("evaluate", "--run-type", "calibration", "--model", "grid_chorus", "--json")
    second = {m["model"]: m for m in again.json()["models"]}
    for name in ("small_tree", "calm_mean", "grid_mean", "last_grid"):
        assert second[name]["reused"], f"{name} was retrained"
        assert second[name]["artifact"] == models[name]["artifact"]
    assert second["grid_chorus"]["reused"]
    fc1, _ = read_forecast(run_dir / grid["predictions"])
    fc2, _ = read_forecast(Path(again.json()["path"]) / second["grid_chorus"]["predictions"])
    np.testing.assert_array_equal(fc1.point, fc2.point)


def test_reconciliation_alerts_in_the_run_summary(run, workspace):
    config = workspace / "ewspipe.toml"
    config.write_text(config.read_text() + "\n[reconciliation]\nmax_factor = 1.05\n"
                      "min_factor = 0.95\n")
    res = run("forecast", "--model", "grid_chorus")
    assert res.code == 0, res.err
    out = res.out
    assert "grid_chorus          pgm  shadow    ensemble" in out
    assert "reconciled with steady_chorus:" in out and "factor outside [0.95, 1.05]" in out
    assert "  alerts: " in out and "reconciliation); all in run.json" in out
    assert "WARNING reconciliation: reconciliation of grid_chorus with steady_chorus: country" \
        in out


def test_forecast_by_default_includes_ensembles_and_pools_samples(run):
    res = run("forecast", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    models = {m["model"]: m for m in doc["models"]}
    assert {"steady_chorus", "quiet_chorus", "cloudy_chorus", "grid_chorus"} <= set(models)
    assert "old_chorus" not in models  # deprecated
    cloudy = models["cloudy_chorus"]
    assert cloudy["n_samples"] == 20 and cloudy["ensemble"]["samples"] == "pool"
    fc, _ = read_forecast(Path(doc["path"]) / cloudy["predictions"])
    assert (fc.frame["origin"] == 520).all() and fc.samples.shape[1] == 20
    assert (fc.samples >= 0).all()


def test_ensemble_errors_exit_2(run, workspace):
    res = run("evaluate", "--run-type", "calibration", "--model", "old_chorus")
    assert res.code == 2 and "ensemble 'old_chorus' is deprecated and refuses to run" in res.err
    res = run("forecast", "--model", "steady_chorsu")
    assert res.code == 2
    assert "no model or ensemble named 'steady_chorsu'" in res.err
    assert "Did you mean 'steady_chorus'?" in res.err
    config = workspace / "ewspipe.toml"
    config.write_text(config.read_text() + '\n[reconciliation]\nmapping_file = "absent.csv"\n')
    res = run("forecast", "--model", "grid_chorus")
    assert res.code == 2 and "reconciliation mapping file" in res.err and "absent.csv" in res.err
    assert not any((workspace / "state" / "runs").glob("2*forecast*")), "no run recorded"


def test_mapping_file_from_settings(run, workspace):
    snapshots = SnapshotStore(workspace / "state" / "snapshots")
    pgm = snapshots.load(snapshots.latest("pgm").id).frame
    last = pgm[pgm["month_id"] == pgm["month_id"].max()]
    last[["priogrid_gid", "country_id"]].rename(columns={"priogrid_gid": "priogrid_id"}).to_csv(
        workspace / "cells.csv", index=False)
    config = workspace / "ewspipe.toml"
    config.write_text(config.read_text() + '\n[reconciliation]\nmapping_file = "cells.csv"\n')
    res = run("forecast", "--model", "grid_chorus", "--json")
    assert res.code == 0, res.err
    rec = {m["model"]: m for m in res.json()["models"]}["grid_chorus"]["ensemble"]
    assert rec["reconciliation"]["ownership"].endswith("cells.csv")
    assert rec["reconciliation"]["ownership_per_month"] is False


def test_pgm_without_country_column_needs_a_mapping(run, workspace, tmp_path):
    snapshots = SnapshotStore(workspace / "state" / "snapshots")
    pgm = snapshots.load(snapshots.latest("pgm").id).frame.drop(columns="country_id")
    path = tmp_path / "bare_pgm.parquet"
    pgm.to_parquet(path)
    imported = run("data", "import", "panel", str(path), "--level", "pgm", "--json")
    assert imported.code == 0, imported.err
    res = run("forecast", "--model", "grid_chorus", "--snapshot", imported.json()["snapshot"])
    assert res.code == 2
    assert "has no country_id column and no [reconciliation] mapping_file" in res.err


@pytest.mark.shared_data
def test_real_cm_and_semisynthetic_pgm_reconcile_exactly(cli, shared_data, tmp_path):
    """Real cm data + the small semi-synthetic pgm subset (5 countries, per-month country_id):
    every country-month's cells sum to the cm ensemble forecast, alerts reach the summary."""
    _models(tmp_path / "models")
    _ensembles(tmp_path / "ensembles")
    (tmp_path / "ewspipe.toml").write_text(
        '[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    go = lambda *a: cli("--config", str(tmp_path / "ewspipe.toml"), *a)  # noqa: E731
    cm = shared_data / "views_ged_cm" / "views_fat002_ged_sb_cm.parquet"
    pgm = shared_data / "pgm_semisynthetic" / "pgm_ged_sb_small.parquet"
    assert go("data", "import", "panel", str(cm), "--level", "cm").code == 0
    assert go("data", "import", "panel", str(pgm), "--level", "pgm").code == 0
    res = go("evaluate", "--run-type", "calibration", "--model", "grid_chorus", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    models = {m["model"]: m for m in doc["models"]}
    rec = models["grid_chorus"]["ensemble"]["reconciliation"]
    assert rec["countries"] == 5 and rec["ownership_per_month"]
    assert rec["country_months"] == 5 * 13 * 36
    panel = pd.read_parquet(pgm)
    checked = _check_reconciled(Path(doc["path"]), panel, "grid_chorus", "steady_chorus",
                                models)
    assert 0 < checked <= rec["country_months"]
    zero_sum = [a for a in doc["alerts"] if a["details"].get("kind") == "zero_grid_sum"]
    assert len(zero_sum) == rec["zero_sum_alerts"]
    assert rec["factor_alerts"] + rec["zero_sum_alerts"] > 0
    text = go("evaluate", "--run-type", "calibration", "--model", "grid_chorus")
    assert text.code == 0
    assert "reconciled with steady_chorus: 2,340 country-months of 5 countries" in text.out
    assert "WARNING reconciliation:" in text.out
    second = {m["model"]: m for m in json.loads(
        go("evaluate", "--run-type", "calibration", "--model", "grid_chorus", "--json").out
    )["models"]}
    assert all(second[m]["reused"] for m in ("small_tree", "calm_mean", "grid_mean",
                                              "last_grid"))
