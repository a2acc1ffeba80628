"""The prediction store folder of a real run reads as one dataset: pandas, pyarrow.dataset,
DuckDB (and polars when installed) agree on its rows; partitions of an earlier version
(fixed-size sample lists, ``part-0.parquet.sha256``) still read and verify."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from tests.flows import monthly_workspace

from ewspipe.cli.main import main
from ewspipe.errors import IntegrityError
from ewspipe.models.forecast import Forecast
from ewspipe.store.integrity import file_sha256, sidecar
from ewspipe.store.prediction_store import PART_FILE, PredictionStore
from ewspipe.store.predictions import META_KEY


def _sampled(n_cells: int = 10, n_samples: int = 40) -> Forecast:
    rng = np.random.default_rng(7)
    steps = np.arange(1, 4)
    frame = pd.DataFrame({"origin": 520, "step": np.repeat(steps, n_cells),
                          "month_id": 520 + np.repeat(steps, n_cells),
                          "priogrid_gid": np.tile(np.arange(1, n_cells + 1), len(steps))})
    draws = rng.gamma(0.5, 3.0, size=(len(frame), n_samples))
    return Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                    unit_column="priogrid_gid")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PredictionStore:
    """A development run's store (cm and pgm point models and ensembles) plus a 40-draw pgm
    model: partitions whose sample lists differ in length (about 6 s)."""
    root = tmp_path_factory.mktemp("dataset")
    config = monthly_workspace.write_monthly_workspace(root / "ws")
    state = root / "ws" / "state"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        code = main(["--config", str(config), "--state-dir", str(state), "run", "--env",
                     "development", "--quiet", "--json"])
    assert code == 0, out.getvalue()
    store = PredictionStore(state / "development" / "predictions")
    store.write(_sampled(), level="pgm", run="m520-sampled", model="sampled_grid")
    return store


def _stored_rows(store: PredictionStore) -> int:
    return sum(pq.read_metadata(p.path).num_rows for p in store.partitions())


def test_one_schema_and_readers_agree(store: PredictionStore) -> None:
    parts = store.partitions()
    assert {p.level for p in parts} == {"cm", "pgm"}
    widths = {store.read(p.level, p.run, p.model)[0].n_samples for p in parts}
    assert widths == {1, 40}  # point models and a sample model side by side
    types = {pq.read_schema(p.path).field("samples").type for p in parts}
    assert {(pa.types.is_list(t), t.value_type) for t in types} == {(True, pa.float32())}
    rows = _stored_rows(store)
    frame = pd.read_parquet(store.root)
    assert len(frame) == rows
    assert set(frame["level"].astype(str)) == {"cm", "pgm"}
    assert len(ds.dataset(store.root, partitioning="hive").to_table()) == rows
    glob = f"{store.root.as_posix()}/**/*.parquet"
    with duckdb.connect() as con:
        [(count,)] = con.sql("SELECT count(*) FROM read_parquet(?, hive_partitioning=true, "
                             "union_by_name=true)", params=[glob]).fetchall()
    assert count == rows
    pgm = pd.read_parquet(store.root / "level=pgm")  # one level: its own unit column
    assert "priogrid_gid" in pgm.columns and pgm["priogrid_gid"].notna().all()
    draws = pgm.loc[pgm["model"] == "sampled_grid", "samples"]
    assert {len(d) for d in draws} == {40}


def test_polars_reads_the_folder(store: PredictionStore) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(f"{store.root.as_posix()}/**/*.parquet", hive_partitioning=True,
                            allow_missing_columns=True)
    assert frame.height == _stored_rows(store)


def test_sidecars_are_hidden_from_dataset_readers(store: PredictionStore) -> None:
    part = store.partitions()[0].path
    assert sidecar(part).name == f"_{PART_FILE}.sha256" and sidecar(part).is_file()
    files = ds.dataset(store.root, partitioning="hive").files
    assert files and all(f.endswith(".parquet") for f in files)


def _legacy_partition(store: PredictionStore, forecast: Forecast) -> Path:
    """A partition as the previous version wrote it: fixed-size sample lists, sidecar
    ``part-0.parquet.sha256``."""
    folder = store.partition_path("pgm", "m519-old", "old_grid")
    folder.mkdir(parents=True)
    n, s = forecast.samples.shape
    cols = {c: pa.array(forecast.frame[c].to_numpy(np.int32)) for c in ("origin", "month_id")}
    cols["step"] = pa.array(forecast.frame["step"].to_numpy(np.int16))
    cols["priogrid_gid"] = pa.array(forecast.frame["priogrid_gid"].to_numpy(np.int64))
    cols["point"] = pa.array(forecast.point.astype(np.float32))
    flat = pa.array(forecast.samples.astype(np.float32).ravel())
    cols["samples"] = pa.FixedSizeListArray.from_arrays(flat, s)
    meta = {"level": "pgm", "run": "m519-old", "model": "old_grid",
            "unit_column": "priogrid_gid", "n_samples": s, "rows": n}
    table = pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    path = folder / PART_FILE
    pq.write_table(table, path)
    (folder / f"{PART_FILE}.sha256").write_text(f"{file_sha256(path)}  {PART_FILE}\n")
    return path


def test_partitions_of_the_previous_version_read_and_verify(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path)
    forecast = _sampled(n_samples=5)
    path = _legacy_partition(store, forecast)
    read, _ = store.read("pgm", "m519-old", "old_grid")
    np.testing.assert_allclose(read.samples, forecast.samples.astype(np.float32))
    frame = store.query("pgm", "old_grid", month=521, samples=True)
    assert len(frame) == 10 and np.stack(frame["samples"]).shape == (10, 5)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # the old sidecar still catches damage
    with pytest.raises(IntegrityError, match="does not match"):
        store.read("pgm", "m519-old", "old_grid")
