"""Gather a stored evaluation run's files into plain inputs and publish its HTML report.

The report itself (``ewspipe.evaluation.report``) sits below the stores in the layer contract,
so this module does the reading: ``run.json``, ``metrics/<model>.json``, the prediction files
and the actuals of each level's snapshot (hash-verified), then hands plain data over; with
the settings at hand it also names the units (``ewspipe.geography``) from the run's snapshots.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from ewspipe.errors import InputError, SnapshotNotFound, StoreError
from ewspipe.evaluation.report import ModelInput, ReportInputs, publish_report
from ewspipe.geography import UnitNames, unit_names
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.predictions import read_forecast, read_forecast_metadata
from ewspipe.store.runs import RUN_FILE

__all__ = ["load_report_inputs", "run_unit_names", "write_report"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from exc


def _actuals(panel: Panel, target: str) -> pd.DataFrame:
    frame = panel.frame
    if target not in frame.columns:
        raise StoreError(f"snapshot has no column {target!r}, the target the run scored")
    return pd.DataFrame({
        TIME_COLUMN: frame[TIME_COLUMN].to_numpy(),
        panel.unit_column: frame[panel.unit_column].to_numpy(),
        "value": frame[target].to_numpy(),
    })


def _panel(snapshots: SnapshotStore, snapshot_id: str, run_id: str) -> tuple[Panel, dict[
        str, Any]]:
    try:
        manifest = snapshots.get(snapshot_id)
    except SnapshotNotFound:
        raise InputError(
            f"run {run_id} was scored on snapshot {snapshot_id}, which is not in "
            f"{snapshots.root}; the report needs its actuals (re-import the data it came from)"
        ) from None
    return snapshots.load(manifest.id), manifest.to_dict()


def _points(path: Path) -> Forecast:
    """The forecast without its samples: the report needs point values only."""
    return read_forecast(path, samples=False)[0]


def run_unit_names(settings: Settings, record: dict[str, Any], levels: set[str]) -> dict[
        str, UnitNames]:
    """Each level's unit names from the snapshots the run scored (cells take their
    countries' names from the run's cm snapshot)."""
    ids = {lv: str(v["id"]) for lv, v in record.get("snapshots", {}).items() if "id" in v}
    return {lv: unit_names(settings, lv, snapshot=ids.get(lv), cm_snapshot=ids.get("cm"))
            for lv in sorted(levels)}


def load_report_inputs(run_dir: Path, *, snapshots: SnapshotStore,
                       settings: Settings | None = None) -> ReportInputs:
    """The plain inputs of the report of the evaluation run stored in ``run_dir``; with
    ``settings``, units are named (without, the page shows ids).

    Raises:
        InputError: not an evaluation run, or its snapshot is gone (exit 2).
        StoreError: a file of the run is unreadable.
    """
    record = _read_json(run_dir / RUN_FILE)
    run_id = record.get("run_id", run_dir.name)
    if record.get("kind") != "evaluate":
        raise InputError(f"run {run_id} is a {record.get('kind', 'unknown')} run: it has no "
                         "metrics; reports are written for evaluation runs")
    panels: dict[str, Panel] = {}
    manifests: dict[str, dict[str, Any]] = {}
    actuals: dict[tuple[str, str], pd.DataFrame] = {}
    models: list[ModelInput] = []
    for entry in record.get("models", []):
        name, level = entry["model"], entry["level"]
        metrics_path = run_dir / "metrics" / f"{name}.json"
        metrics = _read_json(metrics_path) if metrics_path.is_file() else entry.get("metrics")
        if metrics is None:
            raise StoreError(f"{metrics_path}: missing; the run has no metrics for {name}")
        path = run_dir / entry["predictions"]
        meta = read_forecast_metadata(path)
        target = str(meta.get("target", "ged_sb"))
        snapshot_id = entry.get("snapshot") or record["snapshots"][level]["id"]
        if snapshot_id not in panels:
            panels[snapshot_id], manifests[level] = _panel(snapshots, snapshot_id, run_id)
        key = (snapshot_id, target)
        if key not in actuals:
            actuals[key] = _actuals(panels[snapshot_id], target)
        info = {k: v for k, v in entry.items() if k != "metrics"}
        info.update({k: meta[k] for k in ("target", "config_hash") if k in meta})
        models.append(ModelInput(name=name, level=level, status=entry.get("status", "?"),
                                 metrics=metrics, info=info, forecast=partial(_points, path),
                                 actuals=actuals[key]))
    if not models:
        raise InputError(f"run {run_id} has no models: nothing to report")
    names = run_unit_names(settings, record, {m.level for m in models}) if settings else {}
    return ReportInputs(record=record, models=models, snapshots=manifests, names=names)


def write_report(run_dir: Path, *, snapshots: SnapshotStore,
                 settings: Settings | None = None) -> Path:
    """Write (or re-write) ``<run_dir>/report/`` atomically; returns the HTML page's path
    (``ewspipe.evaluation.report.report_files(path.parent)`` lists every file written).

    The run's own files are only read: a failure here never touches them.
    """
    inputs = load_report_inputs(Path(run_dir), snapshots=snapshots, settings=settings)
    return publish_report(inputs, Path(run_dir))
