"""Unit ids become names a person reads, from the data itself (never a guessed name)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ewspipe.geography import unit_labels, unit_names
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings, load_settings

MONTHS = range(400, 440)


def _store(settings: Settings, level: str, frame: pd.DataFrame, kind: str = "test") -> str:
    result = import_frame(frame, level, SnapshotStore(settings.snapshot_dir),
                          source={"kind": kind}, source_name=f"{level} test table",
                          limits=InputLimits(min_months=1))
    return result.manifest.id


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(state_dir=tmp_path / "state")


def _cm(names: bool) -> pd.DataFrame:
    rows = []
    for m in MONTHS:
        for cid, name, iso in ((117, "Ukraine" if m > 410 else "Old name", "UKR"),
                               (57, "Colombia", "COL")):
            rows.append({"month_id": m, "country_id": cid, "ged_sb": 1,
                         **({"country_name": name, "isoab": iso} if names else {})})
    return pd.DataFrame(rows)


def test_cm_names_are_the_snapshots_newest(settings: Settings):
    snap = _store(settings, "cm", _cm(names=True))
    names = unit_names(settings, "cm", snapshot=snap)
    assert names.label(117) == "Ukraine (UKR)"  # the last month's name wins
    assert names.record(57) == {"name": "Colombia", "isoab": "COL", "label": "Colombia (COL)"}
    assert names.label(999) == "country 999"
    assert unit_labels(settings, "cm", [57]) == {57: "Colombia (COL)"}  # default: newest


def test_the_demo_world_keeps_ids(settings: Settings):
    """Demo ids are not VIEWS ids: demo country 117 is never called Ukraine."""
    _store(settings, "cm", _cm(names=False), kind="demo")
    assert unit_names(settings, "cm").label(117) == "country 117"
    pgm = pd.DataFrame([{"month_id": m, "priogrid_gid": 149426, "ged_sb": 0} for m in MONTHS])
    _store(settings, "pgm", pgm, kind="demo")
    assert unit_names(settings, "pgm").label(149426) == "cell 149426"


def test_real_data_without_name_columns_takes_the_views_names(settings: Settings):
    """Like the views2020 cm file: VIEWS ids without names are named from the global table's
    country list; cells without country_id take the global cell -> country table."""
    _store(settings, "cm", _cm(names=False))
    assert unit_names(settings, "cm").label(117) == "Ukraine (UKR)"
    kyiv = 202022  # (row 281, column 422): 50.25-50.75 N, 30.5-31 E
    pgm = pd.DataFrame([{"month_id": m, "priogrid_gid": kyiv, "ged_sb": 0} for m in MONTHS])
    _store(settings, "pgm", pgm)
    assert unit_names(settings, "pgm").label(kyiv) == "cell 202022 (Ukraine)"


def test_no_snapshot_is_no_names_not_an_error(settings: Settings):
    assert unit_names(settings, "pgm").label(5) == "cell 5"
    assert unit_names(settings, "cm", snapshot="nope").label(5) == "country 5"


def test_cells_are_labelled_with_their_country(settings: Settings):
    _store(settings, "cm", _cm(names=True))
    pgm = pd.DataFrame([{"month_id": m, "priogrid_gid": g, "country_id": c, "ged_sb": 0}
                        for m in MONTHS for g, c in ((149426, 117), (100, 57))])
    _store(settings, "pgm", pgm)
    names = unit_names(settings, "pgm")
    assert names.label(149426) == "cell 149426 (Ukraine)"
    assert names.record(100) == {"name": "Colombia", "isoab": "COL", "country_id": 57,
                                 "label": "cell 100 (Colombia)"}
    assert names.label(7) == "cell 7"


def test_an_unreadable_snapshot_leaves_ids_not_a_crash(settings: Settings):
    """Names only label rows: a truncated snapshot file was an internal error (exit 70) in
    `forecasts query` and the run summary; the runs themselves refuse the snapshot."""
    ref = _store(settings, "cm", _cm(names=True))
    data = SnapshotStore(settings.snapshot_dir).data_path(ref, verify=False)
    data.write_bytes(data.read_bytes()[:200])
    names = unit_names(settings, "cm", snapshot=ref)  # raised pyarrow's ArrowInvalid
    # the snapshot's own names are unreadable: the VIEWS table's (when the shared data is
    # there) or the ids label the rows
    assert names.label(117) in ("Ukraine (UKR)", "country 117")
