"""The evaluation report names units from the snapshots its run scored, not the newest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ewspipe.flows.reporting import run_unit_names
from ewspipe.geography import unit_names
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import load_settings


def _cm(name: str) -> pd.DataFrame:
    return pd.DataFrame([{"month_id": m, "country_id": 117, "ged_sb": 1, "country_name": name,
                          "isoab": "UKR"} for m in range(400, 430)])


def test_names_come_from_the_runs_snapshot(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state")
    store = SnapshotStore(settings.snapshot_dir)
    scored = import_frame(_cm("Ukraine"), "cm", store, source={"kind": "test"},
                          source_name="cm test", limits=InputLimits(min_months=1)).manifest.id
    import_frame(_cm("Renamed"), "cm", store, source={"kind": "test"}, source_name="cm later",
                 limits=InputLimits(min_months=1))  # newer: must not rename the old run
    names = run_unit_names(settings, {"snapshots": {"cm": {"id": scored}}}, {"cm", "pgm"})
    assert names["cm"].label(117) == "Ukraine (UKR)"
    assert unit_names(settings, "cm").label(117) == "Renamed (UKR)"  # the newest differs
    assert names["pgm"].label(5) == "cell 5"  # no pgm snapshot: ids stay
