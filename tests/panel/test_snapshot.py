from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ewspipe import atomic
from ewspipe.errors import InputError, IntegrityError, SnapshotNotFound
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.snapshot import SnapshotStore, content_hash


def _panel(seed: int = 0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        [(m, c) for m in range(121, 181) for c in range(1, 6)], columns=["month_id", "country_id"]
    )
    df["ged_sb"] = rng.poisson(0.5, len(df)) * rng.integers(0, 50, len(df))
    return validate_panel(df, "cm", source="test")


def test_write_is_content_addressed_and_idempotent(tmp_path):
    store = SnapshotStore(tmp_path)
    panel, report = _panel()
    m1, created1 = store.write(panel, report, source={"kind": "test"})
    m2, created2 = store.write(panel, report, source={"kind": "test"})
    assert created1 and not created2
    assert m1.id == m2.id == f"cm-{content_hash(panel)[:16]}"
    other, rep = _panel(seed=1)
    m3, _ = store.write(other, rep, source={"kind": "test"})
    assert m3.id != m1.id
    assert {m.id for m in store.list()} == {m1.id, m3.id}


def test_manifest_contents_and_round_trip(tmp_path):
    store = SnapshotStore(tmp_path)
    panel, report = _panel()
    manifest, _ = store.write(
        panel, report, source={"kind": "test"}, fetched_at="2024-08-01T00:00:00Z"
    )
    assert manifest.rows == len(panel.frame) == 300
    assert (manifest.first_month, manifest.last_month, manifest.months) == (121, 180, 60)
    assert manifest.units == 5 and manifest.units_last_month == 5
    assert manifest.totals == {"ged_sb": int(panel.frame["ged_sb"].sum())}
    assert manifest.fetched_at == "2024-08-01T00:00:00Z"
    assert manifest.validation["passed"] is True
    assert set(manifest.columns) == {"month_id", "country_id", "ged_sb"}
    on_disk = json.loads((tmp_path / manifest.id / "manifest.json").read_text())
    assert on_disk["sha256"] == manifest.sha256
    loaded = store.load(manifest.id[:8])
    pd.testing.assert_frame_equal(loaded.frame, panel.frame)
    assert content_hash(loaded) == manifest.sha256


def test_tampering_is_detected(tmp_path):
    store = SnapshotStore(tmp_path)
    panel, report = _panel()
    manifest, _ = store.write(panel, report, source={"kind": "test"})
    data = tmp_path / manifest.id / "data.parquet"
    other, _ = _panel(seed=5)
    other.frame.to_parquet(data)
    with pytest.raises(IntegrityError, match="no longer matches"):
        store.load(manifest.id)


@pytest.mark.parametrize(("key", "value"), [("last_month", 570), ("first_month", 100)])
def test_an_edited_manifest_span_is_detected(tmp_path, key, value):
    """Runs plan from the manifest's months: an edited span crashed a run (exit 70)."""
    store = SnapshotStore(tmp_path)
    panel, report = _panel()
    manifest, _ = store.write(panel, report, source={"kind": "test"})
    path = tmp_path / manifest.id / "manifest.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, key: value}))
    with pytest.raises(IntegrityError, match=r"manifest.json says months .* but its data "
                       r"holds 121..180: the manifest was edited"):
        store.load(manifest.id)
    assert store.data_path(manifest.id, verify=False).is_file()  # unverified reads still work


def test_crash_during_write_leaves_nothing_visible(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    panel, report = _panel()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "rename", boom)  # the commit (ewspipe.atomic) fails
    with pytest.raises(InputError, match="disk full") as exc:  # exit 2 naming the folder
        store.write(panel, report, source={"kind": "test"})
    assert str(tmp_path) in str(exc.value) and "--state-dir" in str(exc.value)
    assert store.list() == []
    assert list(tmp_path.iterdir()) == []


def test_read_only_state_is_a_clear_refusal(tmp_path, monkeypatch):
    """Root ignores chmod, so the read-only folder is simulated where the first write lands."""
    store = SnapshotStore(tmp_path / "snapshots")
    panel, report = _panel()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic, "make_temp_dir", denied)
    with pytest.raises(InputError, match=r"Permission denied.*writable"):
        store.write(panel, report, source={"kind": "test"})


def test_lookup_errors(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(SnapshotNotFound, match="ewspipe data demo"):
        store.latest("cm")
    with pytest.raises(SnapshotNotFound, match="ewspipe data list"):
        store.get("cm-0000")
    a, ra = _panel(0)
    b, rb = _panel(1)
    store.write(a, ra, source={})
    store.write(b, rb, source={})
    with pytest.raises(SnapshotNotFound, match="ambiguous"):
        store.get("cm-")
