"""A model's prediction split into (origin, step block) parts: the parts cover the forecast
once in order, their chunks are its rows bit for bit, and a split evaluation stores the
unsplit one's forecast file and scores, resumes from its records and heals a lost file.
(On a real multi-process Dask cluster: tests/flows/test_dask_cluster.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from monthly_workspace import MODEL, RIDGE, write_monthly_workspace
from tests.models.test_chunking import N_ORIGINS, ORIGINS, PARTITION, STEPS, _design, _same

from ewspipe.catalog import load_catalog
from ewspipe.flows import executors
from ewspipe.flows.ingest import import_demo_checked
from ewspipe.flows.modelrun import evaluate_models, forecast_models, predict_origins
from ewspipe.flows.predict_parts import pipelined, split_counts
from ewspipe.models.chunking import plan_chunks, planned_rows, predict_chunks, split_parts
from ewspipe.models.forecast import Forecast
from ewspipe.models.stepshifter import Stepshifter
from ewspipe.settings import Settings, load_settings


@given(st.integers(1, 13), st.integers(1, 36), st.integers(1, 600))
def test_parts_cover_every_block_once_in_forecast_order(n_origins: int, n_steps: int,
                                                        parts: int) -> None:
    origins, steps = list(range(500, 500 + n_origins)), list(range(1, n_steps + 1))
    runs = split_parts(origins, steps, parts)
    pairs = [(o, s) for run in runs for o, ss in run for s in ss]
    assert pairs == [(o, s) for o in origins for s in steps]
    assert len(runs) == min(parts, n_origins * n_steps)
    sizes = [sum(len(ss) for _, ss in run) for run in runs]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for run in runs:  # each block: one origin, consecutive steps
        assert len({o for o, _ in run}) == len(run)
        assert all(list(ss) == list(range(ss[0], ss[-1] + 1)) for _, ss in run)


@pytest.mark.parametrize("parts", [2, 3, 7, N_ORIGINS * STEPS])
@pytest.mark.parametrize("budget", [1, 1 << 40], ids=["tiny", "ample"])
def test_the_parts_chunks_are_the_whole_forecast(parts: int, budget: int) -> None:
    design = _design()
    model = Stepshifter(learner="ridge", steps=STEPS, n_samples=30, seed=2)
    model.fit(design, train_last=200)
    whole = predict_origins(model, design, PARTITION)
    pieces: list[Forecast] = []
    for blocks in split_parts(ORIGINS, range(1, STEPS + 1), parts):
        plan = plan_chunks(model, design, PARTITION, budget=budget, blocks=blocks)
        got = list(predict_chunks(model, design, PARTITION, budget=budget, chunks=plan))
        assert sum(len(c) for c in got) == planned_rows(design, plan)
        pieces += got
    joined = Forecast.concat(pieces)
    _same(Forecast(joined.frame.reset_index(drop=True), joined.point, joined.samples,
                   unit_column=joined.unit_column),
          Forecast(whole.frame.reset_index(drop=True), whole.point, whole.samples,
                   unit_column=whole.unit_column))


def test_the_join_pipeline_keeps_the_order_and_raises_what_fails() -> None:
    chunks = [_tiny(i) for i in range(7)]
    written: list[int] = []
    seen = [int(c.frame["origin"].iloc[0]) for c in
            pipelined(iter(chunks), lambda c: written.append(int(c.frame["origin"].iloc[0])))]
    assert seen == written == list(range(7))

    def broken_write(chunk: Forecast) -> None:
        if int(chunk.frame["origin"].iloc[0]) == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        list(pipelined(iter(chunks), broken_write))

    def broken_source() -> Iterator[Forecast]:
        yield chunks[0]
        raise ValueError("unreadable part")

    with pytest.raises(ValueError, match="unreadable part"):
        list(pipelined(broken_source(), lambda c: None))


def _tiny(origin: int) -> Forecast:
    import pandas as pd

    frame = pd.DataFrame({"origin": [origin], "step": [1], "month_id": [origin + 1],
                          "priogrid_gid": [1]})
    return Forecast(frame, np.zeros(1), np.zeros((1, 2)), unit_column="priogrid_gid")


DRAWS = MODEL.format(name="grid_draws", level="pgm", algorithm="stepshifter", status="shadow",
                     features='["ged_sb", "lag(ged_sb, 1)", "splag(ged_sb)"]',
                     hyper=RIDGE + "n_samples = 20\nsampling = \"residual\"\n")


def _settings(root: Path, split: int) -> Settings:
    cfg = write_monthly_workspace(root)
    (root / "models" / "grid_draws.toml").write_text(DRAWS)
    with cfg.open("a") as fh:
        fh.write(f"\n[run]\nsplit_draws = {split}\n")
    settings = load_settings(cfg)
    import_demo_checked(settings)
    return settings


def _evaluate(settings: Settings) -> Any:
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    return evaluate_models(settings, catalog, run_type="calibration", names=["grid_draws"])


def _forecast_run(settings: Settings) -> Any:
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    return forecast_models(settings, catalog, names=["grid_draws"], deliver=False)


def _forecast(result: Any) -> Any:
    (model,) = result.models
    return pq.read_table(Path(result.path) / model.predictions).replace_schema_metadata(None)


def _joined(settings: Settings, result: Any) -> Path:
    """The work file of the run's ``predict:grid_draws`` (the join), named by its key."""
    [key] = [r.key for r in result.tasks if r.task == "predict:grid_draws"]
    return settings.layout.resolve(f"work/forecasts/grid_draws/{key[:16]}.parquet")


def _statuses(result: Any) -> dict[str, str]:
    return {r.task: r.status for r in result.tasks}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An unsplit calibration evaluation, and one split in 3 on an in-process executor that
    says it has 3 workers (the lanes run the parts one after another)."""
    plain = _settings(tmp_path_factory.mktemp("plain"), split=0)
    split = _settings(tmp_path_factory.mktemp("split"), split=1)
    with pytest.MonkeyPatch.context() as mp:
        out = {"plain": (plain, _evaluate(plain)), "plain_forecast": _forecast_run(plain)}
        mp.setattr(executors.LaneExecutor, "workers", 3)
        out["split"] = (split, _evaluate(split))
        out["again"] = _evaluate(split)
        out["split_forecast"] = _forecast_run(split)
        yield {**out, "rerun": lambda: _evaluate(split)}


def test_a_split_evaluation_stores_the_unsplit_forecast_and_scores(runs) -> None:
    (_, plain), (settings, split) = runs["plain"], runs["split"]
    assert "predict:grid_draws[1/3]" not in _statuses(plain)
    assert {t: s for t, s in _statuses(split).items() if t.startswith("predict:")} == {
        "predict:grid_draws[1/3]": "ran", "predict:grid_draws[2/3]": "ran",
        "predict:grid_draws[3/3]": "ran", "predict:grid_draws": "ran"}
    a, b = _forecast(plain), _forecast(split)
    assert a.equals(b)
    draws = [np.stack(t.column("samples").to_numpy(zero_copy_only=False)) for t in (a, b)]
    assert draws[0].tobytes() == draws[1].tobytes() and np.ptp(draws[0], axis=1).any()
    (m1,), (m2,) = plain.models, split.models
    assert m1.metrics == m2.metrics and "crps" in str(m1.metrics)
    assert (m1.rows, m1.n_samples, m1.plausibility) == (m2.rows, m2.n_samples,
                                                        m2.plausibility)
    assert m2.timings["parts"] == 3
    # the draws are stored once: the part files are gone once joined
    folder = settings.layout.resolve("work/forecasts/grid_draws")
    assert _joined(settings, split).is_file()
    assert (folder / "parts").is_dir() and not any((folder / "parts").iterdir())


def test_a_split_forecast_is_the_unsplit_one(runs) -> None:
    """One origin: the parts are runs of steps (step blocks)."""
    plain, split = runs["plain_forecast"], runs["split_forecast"]
    assert "predict:grid_draws[3/3]" in _statuses(split)
    assert _forecast(plain).equals(_forecast(split))
    assert split.models[0].metrics is None and split.models[0].rows == plain.models[0].rows


def test_a_finished_split_run_is_reused_whole(runs) -> None:
    again = runs["again"]
    assert set(_statuses(again).values()) == {"reused"}
    assert _forecast(again).equals(_forecast(runs["split"][1]))


def test_a_lost_joined_file_is_rebuilt_from_the_artifact(runs) -> None:
    """The join's file deleted: the join runs again and predicts its parts itself (their
    files went with the first join), the same rows and scores."""
    settings, split = runs["split"]
    _joined(settings, split).unlink()
    healed = runs["rerun"]()
    statuses = _statuses(healed)
    assert statuses["predict:grid_draws"] == "ran"
    assert statuses["predict:grid_draws[1/3]"] == statuses["fit:grid_draws"] == "reused"
    assert _forecast(healed).equals(_forecast(split))
    assert healed.models[0].metrics == split.models[0].metrics


def test_a_join_that_fails_midway_keeps_its_parts_and_resumes(runs, tmp_path: Path) -> None:
    """A join killed mid-way (here: an error after its first chunk) leaves no joined file and
    every part file; the next run reuses the parts and joins them (a damaged part file is
    predicted again): the unsplit forecast."""
    from ewspipe.flows import modelrun

    settings = _settings(tmp_path, split=1)
    calls = {"n": 0}
    real = modelrun.check_forecast

    def dies(chunk: Forecast, ceiling: float) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed mid-join")
        return real(chunk, ceiling)

    folder = settings.layout.resolve("work/forecasts/grid_draws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executors.LaneExecutor, "workers", 3)
        mp.setattr(modelrun, "check_forecast", dies)
        with pytest.raises(RuntimeError, match="killed mid-join"):
            _evaluate(settings)
        assert not list(folder.glob("*.parquet"))  # nothing half-joined is visible
        parts = sorted((folder / "parts").glob("*.parquet"))
        assert len(parts) == 3
        # and one part file truncated meanwhile: predicted again, never a run that always fails
        parts[1].write_bytes(parts[1].read_bytes()[:1000])
        mp.setattr(modelrun, "check_forecast", real)
        resumed = _evaluate(settings)
    statuses = _statuses(resumed)
    assert statuses["predict:grid_draws"] == "ran"
    assert statuses["predict:grid_draws[2/3]"] == "reused"
    assert _forecast(resumed).equals(_forecast(runs["plain"][1]))
    assert resumed.models[0].metrics == runs["plain"][1].models[0].metrics
    assert not any((folder / "parts").iterdir())
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_only_big_predictions_on_several_workers_are_split(runs) -> None:
    from ewspipe.flows.modelrun import load_snapshot, partition_for
    from ewspipe.panel.snapshot import SnapshotStore
    from ewspipe.partitions import RunType

    settings, _ = runs["split"]
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    specs = [catalog.models["grid_draws"], catalog.models["small_ridge"]]
    panels, partitions = {}, {}
    for level in ("cm", "pgm"):
        manifest = SnapshotStore(settings.snapshot_dir).latest(level)
        panels[level] = load_snapshot(str(settings.snapshot_dir), manifest.id)[1]
        partitions[level] = partition_for(settings, RunType.CALIBRATION,
                                          last_month=manifest.last_month)
    rows = 13 * 36 * panels["pgm"].frame["priogrid_gid"].nunique()
    assert split_counts(specs, panels, partitions, workers=4, min_draws=rows * 20) == {
        "grid_draws": 4}
    assert split_counts(specs, panels, partitions, workers=4, min_draws=rows * 20 + 1) == {}
    assert split_counts(specs, panels, partitions, workers=1, min_draws=1) == {}
    assert split_counts(specs, panels, partitions, workers=2, min_draws=0) == {}
    assert split_counts(specs, panels, partitions, workers=2, min_draws=1) == {
        "grid_draws": 2, "small_ridge": 2}


@pytest.mark.parametrize("value", ["-1", '"many"', "1.5"])
def test_a_bad_split_draws_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    from ewspipe.errors import SettingsError

    cfg = tmp_path / "ewspipe.toml"
    cfg.write_text(f"[run]\nsplit_draws = {value}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert "split_draws" in str(info.value) and info.value.exit_code == 2
