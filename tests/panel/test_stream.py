"""Streamed pgm import: the same snapshot as the in-memory path, in bounded memory, and every
refusal still the in-memory path's message naming the row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ewspipe.panel.ingest as ingest
from ewspipe.errors import PanelError
from ewspipe.flows.ingest import DriftCheckingStore, checked_import, import_panel_checked
from ewspipe.panel.ingest import import_frame, import_panel_file
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.stream import parquet_blocks
from ewspipe.panel.summary import summarise, summarise_snapshot
from ewspipe.panel.synthetic import demo_world
from ewspipe.settings import DemoSettings, load_settings

WORLD = DemoSettings(countries=20, pgm_cells=150, first_month=121, last_month=200)


@pytest.fixture(scope="module")
def pgm() -> pd.DataFrame:
    return demo_world(WORLD).pgm


def _write(frame: pd.DataFrame, path: Path, *, row_group: int = 2_000) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=row_group)
    return path


@pytest.fixture
def no_memory_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the in-memory path was used")
    monkeypatch.setattr(ingest, "read_table", refuse)


def test_streamed_import_stores_the_in_memory_snapshot(pgm: pd.DataFrame, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # narrow integer types and many small blocks: the same panel, the same snapshot
    narrow = pgm.astype({"month_id": "int32", "priogrid_gid": "uint32", "ged_os": "int16"})
    path = _write(narrow, tmp_path / "pgm.parquet")
    memory = import_frame(pgm, "pgm", SnapshotStore(tmp_path / "a"), source={},
                          source_name=str(path))
    monkeypatch.setattr(ingest, "parquet_blocks", lambda p: parquet_blocks(p, batch_size=997))
    monkeypatch.setattr(ingest, "read_table", None)  # never read whole
    store = SnapshotStore(tmp_path / "b")
    streamed = import_panel_file(path, "pgm", store)
    left, right = memory.manifest.to_dict(), streamed.manifest.to_dict()
    for key in ("imported_at", "fetched_at", "file_sha256", "source"):
        left.pop(key), right.pop(key)
    assert left == right and streamed.created
    pd.testing.assert_frame_equal(store.load(streamed.manifest.id).frame,
                                  SnapshotStore(tmp_path / "a").load(memory.manifest.id).frame)
    assert summarise_snapshot(store, streamed.manifest.id) == summarise(
        store.load(streamed.manifest.id))
    again = import_panel_file(path, "pgm", store)
    assert again.manifest.id == streamed.manifest.id and not again.created
    assert [p.name for p in store.root.iterdir()] == [streamed.manifest.id]  # no temp left


def test_drift_of_a_streamed_import_reads_its_window_only(pgm: pd.DataFrame, tmp_path: Path,
                                                          no_memory_path: None) -> None:
    settings = load_settings(state_dir=tmp_path / "s1")
    path = _write(pgm, tmp_path / "pgm.parquet")
    streamed = import_panel_checked(settings, path, "pgm", alerts=False)
    memory = checked_import(load_settings(state_dir=tmp_path / "s2"), lambda store: {
        "pgm": import_frame(pgm, "pgm", store, source={}, source_name="x")}, alerts=False)
    assert _timeless(streamed.drift_summary("pgm")) == _timeless(memory.drift_summary("pgm"))
    assert streamed.drift["pgm"].snapshot == streamed.results["pgm"].manifest.id
    assert isinstance(DriftCheckingStore(tmp_path, settings)._annotate_months(), int)


def _timeless(summary: dict[str, object]) -> dict[str, object]:
    """The summary without each alarm's raise time: the two imports run a moment apart, and a
    second boundary between them made this comparison flaky."""
    top = summary.get("top")
    assert isinstance(top, list)
    return {**summary, "top": [{k: v for k, v in a.items() if k != "time"} for a in top]}


def _shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _with(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    bad = frame.copy()
    if value is None:
        bad[column] = bad[column].astype("Int64")
        bad.loc[row, column] = pd.NA
    else:
        bad.loc[row, column] = value
    return bad


@pytest.mark.parametrize("damage", [
    lambda f: _with(f, 4_321, "ged_sb", -3),
    lambda f: _with(f, 5_000, "ged_ns", None),
    lambda f: _with(f, 6_000, "month_id", 9_999),
    lambda f: _with(f, 7_000, "ged_os", 2_000_000),
    lambda f: pd.concat([f, f.iloc[[10]]], ignore_index=True),
    lambda f: f[~((f["priogrid_gid"] == f["priogrid_gid"].iloc[0]) & (f["month_id"] == 150))],
], ids=["negative", "missing", "future", "implausible", "duplicate", "gap"])
def test_refusals_are_the_in_memory_messages(pgm: pd.DataFrame, tmp_path: Path,
                                             damage: object) -> None:
    bad = damage(pgm)  # type: ignore[operator]
    path = _write(bad.reset_index(drop=True), tmp_path / "bad.parquet")
    with pytest.raises(PanelError) as streamed:
        import_panel_file(path, "pgm", SnapshotStore(tmp_path / "store"))
    with pytest.raises(PanelError) as memory:
        import_frame(pq.read_table(path).to_pandas(), "pgm", SnapshotStore(tmp_path / "m"),
                     source={}, source_name=str(path))
    assert str(streamed.value) == str(memory.value)
    assert not any((tmp_path / "store").iterdir())  # nothing stored, no temp left


def test_unsorted_or_unusual_tables_fall_back_to_the_in_memory_import(
        pgm: pd.DataFrame, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "store")
    sorted_id = import_panel_file(_write(pgm, tmp_path / "a.parquet"), "pgm", store).manifest.id
    shuffled = import_panel_file(_write(_shuffled(pgm), tmp_path / "b.parquet"), "pgm", store)
    assert shuffled.manifest.id == sorted_id and not shuffled.created
    extra = pgm.assign(population=np.arange(len(pgm), dtype=np.float64))
    other = import_panel_file(_write(extra, tmp_path / "c.parquet"), "pgm", store)
    assert other.manifest.columns["population"] == "float64"


def test_a_short_streamed_table_is_refused_like_in_memory(pgm: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    path = _write(pgm, tmp_path / "pgm.parquet")
    limits = InputLimits(min_months=100)
    with pytest.raises(PanelError, match="spans only 80 months") as streamed:
        import_panel_file(path, "pgm", SnapshotStore(tmp_path / "store"), limits=limits)
    with pytest.raises(PanelError) as memory:
        import_frame(pgm, "pgm", SnapshotStore(tmp_path / "m"), source={},
                     source_name=str(path), limits=limits)
    assert str(streamed.value) == str(memory.value)
    assert not any((tmp_path / "store").iterdir())


_KILLED_WRITER = """
import sys, time
from pathlib import Path
import pyarrow.parquet as pq
from ewspipe.panel.ingest import import_stream
from ewspipe.panel.snapshot import SnapshotStore

path, root, flag = sys.argv[1:4]

def blocks():
    for i, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=2_000)):
        if i == 2:  # two blocks written: say so, then hang until killed
            Path(flag).write_text("ready")
            time.sleep(600)
        yield batch

import_stream(blocks, SnapshotStore(Path(root)), source={}, source_name=path)
"""


def test_a_streamed_import_killed_mid_write_stores_nothing_and_heals(
        pgm: pd.DataFrame, tmp_path: Path) -> None:
    """kill -9 while blocks are being written: no snapshot appears, and the next import
    removes the dead writer's temporary folder and stores the panel whole."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _write(pgm, tmp_path / "pgm.parquet")
    root, flag = tmp_path / "store", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), str(root),
                             str(flag)], env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never reached its second block"
            time.sleep(0.05)
        assert list(root.iterdir()), "the writer staged nothing before the kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = SnapshotStore(root)
    assert store.list() == []  # a half-written panel is never a snapshot
    result = import_panel_file(path, "pgm", store)
    assert [m.id for m in store.list()] == [result.manifest.id]
    assert sorted(p.name for p in root.iterdir()) == [result.manifest.id]  # temp removed
    assert len(store.load(result.manifest.id).frame) == len(pgm)
