"""``ewspipe forecasts query --top N --out FILE --format csv|parquet|json`` on a real
development run (tests/flows/monthly_workspace.py, about 6 s once per module)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.flows import monthly_workspace

from ewspipe.cli.main import main
from ewspipe.models.forecast import Forecast
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import load_settings
from ewspipe.store.prediction_store import PredictionStore

Cli = Callable[..., tuple[int, str]]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    root = tmp_path_factory.mktemp("query")
    config = monthly_workspace.write_monthly_workspace(root / "ws")
    state = root / "ws" / "state"

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
            mp.delenv("EWSPIPE_CONFIG", raising=False)
            mp.delenv("EWSPIPE_STATE_DIR", raising=False)
            code = main(["--config", str(config), "--state-dir", str(state), *map(str, args)])
        return code, out.getvalue()

    code, out = run("run", "--env", "development", "--quiet", "--json")
    assert code == 0, out
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"origin": 520, "step": np.repeat([1, 2], 5),
                          "month_id": 520 + np.repeat([1, 2], 5),
                          "priogrid_gid": np.tile(np.arange(1, 6), 2)})
    draws = rng.gamma(0.5, 3.0, size=(10, 8))
    PredictionStore(state / "development" / "predictions").write(
        Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                 unit_column="priogrid_gid"), level="pgm", run="m520-drawn", model="drawn")
    return run


def _query(cli: Cli, *args: str) -> dict:
    code, out = cli("forecasts", "query", "--env", "development", "--json", *args)
    assert code == 0, out
    return json.loads(out)


def test_top_is_the_highest_units_of_each_step(cli: Cli) -> None:
    full = pd.DataFrame(_query(cli, "--level", "cm", "--model", "small_ridge")["predictions"])
    top = _query(cli, "--level", "cm", "--model", "small_ridge", "--top", "3")
    rows = pd.DataFrame(top["predictions"])
    assert top["rows"] == 3 * full.groupby(["origin", "step"]).ngroups
    for (origin, step), got in rows.groupby(["origin", "step"], sort=False):
        pool = full[(full["origin"] == origin) & (full["step"] == step)]
        want = pool.nlargest(3, "point")["point"].to_list()
        assert got["point"].to_list() == pytest.approx(want)  # highest first


def test_out_formats_agree(cli: Cli, tmp_path: Path) -> None:
    args = ("--level", "pgm", "--model", "drawn", "--samples", "--top", "2")
    printed = _query(cli, *args)["predictions"]
    for fmt in ("csv", "parquet", "json"):
        path = tmp_path / f"rows.{fmt}"
        doc = _query(cli, *args, "--out", str(path))
        assert doc["out"] == str(path) and doc["format"] == fmt and doc["rows"] == 4
        if fmt == "csv":
            frame = pd.read_csv(path)
            assert [f"sample_{i}" for i in range(8)] == list(frame.columns[-8:])
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
            assert [len(s) for s in frame["samples"]] == [8] * 4
        else:
            frame = pd.DataFrame(json.loads(path.read_text())["predictions"])
        assert frame["priogrid_gid"].to_list() == [r["priogrid_gid"] for r in printed]
        assert frame["point"].to_list() == pytest.approx([r["point"] for r in printed])


def test_force_replaces_an_existing_out(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "rows.data"
    path.write_text("old\n")
    code, out = cli("forecasts", "query", "--env", "development", "--level", "cm",
                    "--model", "small_ridge", "--month", "522", "--out", str(path),
                    "--format", "csv")
    assert code == 2 and path.read_text() == "old\n", out
    doc = _query(cli, "--level", "cm", "--model", "small_ridge", "--month", "522",
                 "--out", str(path), "--format", "csv", "--force")
    assert len(pd.read_csv(path)) == doc["rows"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.data"]  # no temporary left


def _named_state(root: Path) -> Cli:
    """A state with a named cm snapshot, a pgm snapshot and one stored forecast per level
    made on them (no monthly run: the names are what is tested)."""
    settings = load_settings(state_dir=root / "state")
    store = SnapshotStore(settings.snapshot_dir)
    months = range(400, 440)
    cm = pd.DataFrame([{"month_id": m, "country_id": c, "ged_sb": 1, "country_name": n,
                        "isoab": i} for m in months
                       for c, n, i in ((117, "Ukraine", "UKR"), (57, "Colombia", "COL"))])
    pgm = pd.DataFrame([{"month_id": m, "priogrid_gid": g, "country_id": 117, "ged_sb": 0}
                        for m in months for g in (149426, 149427)])
    snaps = {lvl: import_frame(frame, lvl, store, source={"kind": "test"},
                               source_name=f"{lvl} test", limits=InputLimits(min_months=1)
                               ).manifest.id for lvl, frame in (("cm", cm), ("pgm", pgm))}
    predictions = PredictionStore(settings.layout.env(settings.run.environment).predictions)
    for lvl, unit, units in (("cm", "country_id", [117, 57, 9]),
                             ("pgm", "priogrid_gid", [149426, 149427, 5])):
        frame = pd.DataFrame({"origin": 439, "step": 1, "month_id": 440, unit: units})
        point = np.array([30.0, 20.0, 10.0])
        predictions.write(Forecast(frame=frame, point=point, samples=point[:, None],
                                   unit_column=unit), level=lvl, run="m439-named",
                          model="named_model", metadata={"snapshot": snaps[lvl]})

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
            mp.delenv("EWSPIPE_CONFIG", raising=False)
            mp.delenv("EWSPIPE_STATE_DIR", raising=False)
            code = main(["--state-dir", str(root / "state"), *map(str, args)])
        return code, out.getvalue()

    return run


def test_rows_carry_the_units_names_in_every_format(tmp_path: Path) -> None:
    run = _named_state(tmp_path)
    code, out = run("forecasts", "query", "--level", "cm", "--model", "named_model", "--json")
    assert code == 0, out
    rows = json.loads(out)["predictions"]
    assert [(r["country_id"], r["name"], r["isoab"], r["label"]) for r in rows] == [
        (9, None, None, "country 9"), (57, "Colombia", "COL", "Colombia (COL)"),
        (117, "Ukraine", "UKR", "Ukraine (UKR)")]
    code, out = run("forecasts", "query", "--level", "cm", "--model", "named_model")
    assert code == 0 and "Ukraine (UKR)" in out
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"rows.{fmt}"
        code, out = run("forecasts", "query", "--level", "cm", "--model", "named_model",
                        "--top", "1", "--out", str(path))
        assert code == 0, out
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        cols = list(frame.columns)
        assert cols[cols.index("country_id"):][:4] == ["country_id", "name", "isoab", "label"]
        assert frame["label"].to_list() == ["Ukraine (UKR)"]
    code, out = run("forecasts", "query", "--level", "pgm", "--model", "named_model", "--json")
    assert code == 0, out
    rows = json.loads(out)["predictions"]
    assert [(r["priogrid_gid"], r["country_id"], r["name"], r["label"]) for r in rows] == [
        (5, None, None, "cell 5"), (149426, 117, "Ukraine", "cell 149426 (Ukraine)"),
        (149427, 117, "Ukraine", "cell 149427 (Ukraine)")]
    path = tmp_path / "cells.parquet"
    assert run("forecasts", "query", "--level", "pgm", "--model", "named_model",
               "--out", str(path))[0] == 0
    assert pd.read_parquet(path)["country_id"].to_list()[1:] == [117, 117]
