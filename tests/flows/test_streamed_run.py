"""The monthly run and an evaluation stream a forecast chunk by chunk (predict, work file,
QA, store, scoring) with the same result as in one piece."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ewspipe.catalog import load_catalog
from ewspipe.flows.modelrun import RunResult, evaluate_models
from ewspipe.flows.monthly import run_monthly
from ewspipe.models import chunking
from ewspipe.settings import load_settings
from ewspipe.store.predictions import STORED_QUANTILES, quantile_column, read_forecast

MODEL = """name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "{algorithm}"
status = "deployed"
owner = "tests"
description = "A quick test model."
features = []
{hyper}
"""


def _workspace(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "ensembles").mkdir()
    (root / "models" / "grid_draws.toml").write_text(MODEL.format(
        name="grid_draws", level="pgm", algorithm="conflictology",
        hyper="[hyperparameters]\nw = 6\nn_samples = 30\nseed = 5\n"))
    (root / "models" / "last_value.toml").write_text(MODEL.format(
        name="last_value", level="cm", algorithm="locf", hyper=""))
    cfg = root / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n\n'
                   "[demo]\ncountries = 20\npgm_cells = 60\nlast_month = 520\n\n"
                   '[run]\nmemory_budget = "8GiB"\n\n[qa]\nexpected_last_month = 520\n')
    return cfg


Stored = dict[str, Path]


def _stored(cfg: Path) -> tuple[Stored, RunResult]:
    """The monthly run's stored partitions, then a calibration evaluation of the sample
    model (13 origins, scored from the file when it was written in chunks)."""
    settings = load_settings(cfg)
    result = run_monthly(settings)
    doc = result.to_dict()
    assert result.status == "ok" and doc["qa"]["passed"]
    state = settings.state_dir / "development"
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    evaluation = evaluate_models(settings, catalog, run_type="calibration",
                                 names=["grid_draws"])
    return {p["model"]: state / p["path"] for p in doc["outputs"]["partitions"]}, evaluation


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[tuple[Stored, RunResult], tuple[Stored, RunResult]]:
    """The same workspace run whole and in one-step chunks (a budget no step fits)."""
    whole = _stored(_workspace(tmp_path_factory.mktemp("whole")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunking, "WORKING_COPIES", 10**9)
        chunked = _stored(_workspace(tmp_path_factory.mktemp("chunked")))
    return whole, chunked


@pytest.mark.parametrize("model", ["grid_draws", "last_value"])
def test_chunked_run_stores_the_same_forecast(runs, model: str) -> None:
    (whole, _), (chunked, _) = runs
    a, b = pq.read_table(whole[model]), pq.read_table(chunked[model])
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), name
    assert pq.ParquetFile(whole[model]).num_row_groups == 1
    assert pq.ParquetFile(chunked[model]).num_row_groups == 36  # a chunk per step


def test_sample_partition_carries_stored_quantiles(runs) -> None:
    (whole, _), _ = runs
    table = pq.read_table(whole["grid_draws"])
    levels = np.stack([table.column(quantile_column(q)).to_numpy() for q in STORED_QUANTILES])
    draws = np.stack(table.column("samples").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(levels, np.quantile(draws, list(STORED_QUANTILES), axis=1)
                                  .astype(np.float32))
    assert quantile_column(0.5) not in pq.read_schema(whole["last_value"]).names


def test_chunked_evaluation_scores_the_same(runs) -> None:
    (_, whole), (_, chunked) = runs
    [a], [b] = whole.models, chunked.models
    assert a.metrics is not None and "crps" in a.metrics["metrics"]
    assert a.metrics == b.metrics and (a.rows, a.n_samples) == (b.rows, b.n_samples)
    fa, _ = read_forecast(Path(whole.path) / a.predictions)
    fb, _ = read_forecast(Path(chunked.path) / b.predictions)
    assert fa.frame.equals(fb.frame) and np.array_equal(fa.samples, fb.samples)
    assert pq.ParquetFile(Path(chunked.path) / b.predictions).num_row_groups == 13 * 36
