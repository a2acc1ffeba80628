"""Prediction store (immutable partitions, float32, DuckDB queries), state database and
published pointers."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ewspipe.errors import InputError, IntegrityError
from ewspipe.models.forecast import Forecast
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.published import PublishedPointers


def _forecast(units: int = 3, steps: int = 4, samples: int = 5, shift: float = 0.0) -> Forecast:
    rows = [(520, s, 520 + s, u) for s in range(1, steps + 1) for u in range(1, units + 1)]
    frame = pd.DataFrame(rows, columns=["origin", "step", "month_id", "country_id"])
    rng = np.random.default_rng(1)
    draws = rng.gamma(1.0, 2.0, size=(len(rows), samples)) + shift
    return Forecast(frame=frame, point=draws.mean(axis=1), samples=draws,
                    unit_column="country_id")


def test_write_is_float32_list_and_queryable(tmp_path):
    store = PredictionStore(tmp_path)
    fc = _forecast()
    info, created = store.write(fc, level="cm", run="m520-abc", model="quiet_tree",
                                metadata={"status": "deployed"})
    assert created and info.path.is_file()
    schema = pq.read_schema(info.path)
    assert str(schema.field("point").type) == "float"
    samples = schema.field("samples").type
    assert pa.types.is_list(samples) and samples.value_type == pa.float32()  # any draw count
    assert pq.read_metadata(info.path).num_rows == len(fc)  # one row per prediction
    frame = store.query("cm", "quiet_tree", month=522, samples=True)
    assert set(frame["month_id"]) == {522} and len(frame) == 3
    assert frame["point"].dtype == np.float32
    want = fc.point[fc.frame["month_id"].to_numpy() == 522].astype(np.float32)
    np.testing.assert_array_equal(frame["point"].to_numpy(), want)
    assert np.stack(frame["samples"]).shape == (3, 5)
    assert store.metadata("cm", "m520-abc", "quiet_tree")["status"] == "deployed"


def test_partitions_are_immutable_and_latest_run_wins(tmp_path):
    store = PredictionStore(tmp_path)
    store.write(_forecast(), level="cm", run="m520-aaa", model="m")
    _, created = store.write(_forecast(shift=100), level="cm", run="m520-aaa", model="m")
    assert not created  # kept the first
    assert store.query("cm", "m")["point"].max() < 100
    later = store.partition_path("cm", "m520-aaa", "m") / "part-0.parquet"
    os.utime(later, (1, 1))
    store.write(_forecast(shift=100), level="cm", run="m521-bbb", model="m")
    assert store.runs("cm", "m") == ["m520-aaa", "m521-bbb"]
    assert store.query("cm", "m")["point"].min() >= 100
    assert store.query("cm", "m", run="m520-aaa")["point"].max() < 100


def test_temporary_partitions_are_invisible(tmp_path):
    store = PredictionStore(tmp_path)
    half = tmp_path / "level=cm" / "run=r1" / ".tmp-m-1234"
    half.mkdir(parents=True)
    (half / "part-0.parquet").write_bytes(b"half")
    assert store.partitions() == []
    with pytest.raises(InputError, match="no stored forecasts of model 'm'"):
        store.query("cm", "m")


def test_bad_names_and_unknown_run(tmp_path):
    store = PredictionStore(tmp_path)
    with pytest.raises(InputError, match="not a valid partition name"):
        store.write(_forecast(), level="cm", run="../x", model="m")
    store.write(_forecast(), level="cm", run="r1", model="m")
    with pytest.raises(InputError, match="run 'r9' holds no forecasts"):
        store.query("cm", "m", run="r9")


def test_state_db_runs_and_pointer_history(tmp_path, state_db):
    for db in (state_db,):
        db.record_run({"run_id": "r1", "environment": "production",
                       "started_at": "2026-01-01T00:00:00Z", "status": "running"})
        db.record_run({"run_id": "r1", "environment": "production",
                       "started_at": "2026-01-01T00:00:00Z", "status": "ok", "x": 1})
        db.record_run({"run_id": "r2", "environment": "development",
                       "started_at": "2026-01-02T00:00:00Z", "status": "ok"})
        assert [r["run_id"] for r in db.runs()][:2] == ["r2", "r1"]
        assert db.runs("production")[0]["x"] == 1

        pointers = PublishedPointers(tmp_path / "published", db, environment="production")
        assert pointers.current("cm", "ged_sb") is None
        first = pointers.move({"publish_id": "p1", "level": "cm", "target": "ged_sb",
                               "run": "m520-a", "primary": "e", "models": ["e"],
                               "published_at": "2026-01-01T00:00:00Z"})
        assert first["previous_run"] is None
        pointers.move({"publish_id": "p2", "level": "cm", "target": "ged_sb", "run": "m521-b",
                       "primary": "e", "models": ["e"], "published_at": "2026-02-01T00:00:00Z"})
        # a retried move (same publish id) is recorded once
        pointers.move({"publish_id": "p2", "level": "cm", "target": "ged_sb", "run": "m521-b",
                       "primary": "e", "models": ["e"], "published_at": "2026-02-01T00:00:00Z"})
        assert pointers.current("cm", "ged_sb")["run"] == "m521-b"
        assert [h["run"] for h in pointers.history("cm", "ged_sb")] == ["m520-a", "m521-b"]
        assert not list((tmp_path / "published").rglob("*.tmp"))


def _pointer(publish_id: str, run: str) -> dict:
    return {"publish_id": publish_id, "level": "cm", "target": "ged_sb", "run": run,
            "primary": "e", "models": ["e"], "published_at": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_pointer_file_loses_no_history(tmp_path, state_db, damage):
    """A pointer file deleted or damaged by hand: the next publish writes a new one after the
    history's newest entry; it once dropped every earlier entry as never visible."""
    pointers = PublishedPointers(tmp_path / "published", state_db, environment="production")
    for i, run in enumerate(("m520-a", "m521-b", "m522-c"), 1):
        pointers.move(_pointer(f"p{i}", run))
    path = tmp_path / "published" / "cm" / "ged_sb.json"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(IntegrityError, match=r"ged_sb\.json"):
            pointers.current("cm", "ged_sb")
    moved = pointers.move(_pointer("p4", "m523-d"))
    assert moved["seq"] == 4 and moved["previous_run"] == "m522-c"
    assert [h["run"] for h in pointers.history("cm", "ged_sb")] == [
        "m520-a", "m521-b", "m522-c", "m523-d"]
    assert pointers.current("cm", "ged_sb")["run"] == "m523-d"
