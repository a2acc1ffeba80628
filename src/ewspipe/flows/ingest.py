"""Data intake with input-drift checks: every import is checked, and the check is recorded.

Each import path (``data import panel``, ``data import ged``, ``data pull``, ``data demo``)
runs through the panel layer as before, with a snapshot store that runs the drift detectors
on each validated panel just before it is written and stores the summary in the manifest
(``extra.drift``). The alarms become alerts (source ``drift.<detector>``) routed by
``[alerts]``. A drift alarm never blocks an import: the data is what the source published;
``ewspipe drift check`` is the gate that fails (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.alerts.router import DeliveryReport, build_router
from ewspipe.drift.check import DriftConfig, DriftReport, check_panel
from ewspipe.errors import InputError
from ewspipe.panel.ingest import ImportResult, import_panel_file
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.schema import Level, MissingPolicy, Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.settings import Settings

__all__ = [
    "CheckedImport",
    "DriftCheckingStore",
    "check_snapshot",
    "checked_import",
    "emit_alerts",
    "import_demo_checked",
    "import_panel_checked",
    "input_limits",
]

IMPORT_RUN_TYPE = "forecasting"  # new data is checked as the next forecast will use it


class DriftCheckingStore(SnapshotStore):
    """A :class:`SnapshotStore` that drift-checks every panel it writes.

    The report of each level is kept in :attr:`reports` (or the reason it was skipped in
    :attr:`skipped`) and its summary goes into the manifest's ``extra["drift"]``.
    """

    def __init__(
        self, root: Path, settings: Settings, *, run_type: str = IMPORT_RUN_TYPE
    ) -> None:
        super().__init__(root)
        self.settings = settings
        self.run_type = run_type
        self.reports: dict[str, DriftReport] = {}
        self.skipped: dict[str, str] = {}

    def _annotate(self, panel: Panel) -> dict[str, Any]:
        level = panel.level.value
        config = DriftConfig.from_settings(self.settings.drift, self.run_type, level)
        try:
            drift = check_panel(panel, config)
        except InputError as exc:  # too little history: report, do not block the import
            self.skipped[level] = str(exc)
            return {"drift": {"skipped": str(exc), "run_type": self.run_type}}
        self.reports[level] = drift
        return {"drift": drift.summary()}

    def _annotate_months(self) -> int | None:
        """Drift reads the test and standard windows only: all a streamed import loads."""
        drift = self.settings.drift
        return drift.test_months + drift.standard_months

    def _stored(self, panel: Panel, manifest: Manifest) -> None:
        level = panel.level.value
        if level in self.reports:
            self.reports[level].snapshot = manifest.id


@dataclass
class CheckedImport:
    """Import results by level, with each level's drift report and alert delivery."""

    results: dict[str, ImportResult]
    drift: dict[str, DriftReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    delivery: DeliveryReport | None = None

    def drift_summary(self, level: str) -> dict[str, Any]:
        if level in self.drift:
            return self.drift[level].summary()
        return {"skipped": self.skipped.get(level, "not checked")}

    def to_dict(self, level: str) -> dict[str, Any]:
        """One level's import result (as before) plus ``drift``."""
        return {**self.results[level].to_dict(), "drift": self.drift_summary(level)}


def input_limits(settings: Settings, *, allow_short: bool = False) -> InputLimits:
    """The ``[data]`` limits; the minimum span defaults to ``[partitions] steps + 1`` months,
    the fewest that give the step-``steps`` model one training pair."""
    data = settings.data
    return InputLimits(
        max_columns=data.max_columns,
        max_line_bytes=data.max_line_bytes,
        max_decompressed_bytes=data.max_decompressed_bytes,
        max_deaths_per_row=data.max_deaths_per_row,
        min_months=data.min_months or settings.partitions.steps + 1,
        allow_short=allow_short,
    )


def emit_alerts(settings: Settings, reports: list[DriftReport]) -> DeliveryReport:
    """Route the alarms of ``reports`` as alerts through the ``[alerts]`` sinks."""
    alerts = [a for r in reports for a in r.alerts()]
    with build_router(settings.alerts, settings.state_dir) as router:
        return router.route(alerts)


def _finish(store: DriftCheckingStore, results: dict[str, ImportResult],
            settings: Settings, *, alerts: bool = True) -> CheckedImport:
    """``alerts=False`` (``--no-alerts``): the drift report stays in the manifests, nothing
    is routed (``delivery`` None)."""
    checked = CheckedImport(results=results, drift=dict(store.reports),
                            skipped=dict(store.skipped))
    if alerts:
        checked.delivery = emit_alerts(settings, list(store.reports.values()))
    return checked


def import_panel_checked(
    settings: Settings,
    path: Path,
    level: Level | str,
    *,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
    allow_short: bool = False,
    alerts: bool = True,
) -> CheckedImport:
    """:func:`ewspipe.panel.ingest.import_panel_file` plus the drift check (its alarms routed
    as alerts unless ``alerts`` is False)."""
    store = DriftCheckingStore(settings.snapshot_dir, settings)
    result = import_panel_file(path, level, store, count_columns=count_columns, missing=missing,
                               limits=input_limits(settings, allow_short=allow_short))
    return _finish(store, {result.manifest.level: result}, settings, alerts=alerts)


def checked_import(
    settings: Settings, run: Callable[[SnapshotStore], dict[str, ImportResult]], *,
    alerts: bool = True,
) -> CheckedImport:
    """``run(store)``, an import of :mod:`ewspipe.panel.ingest` (e.g.
    ``import_ged_file(path, store, ...)``, also behind ``data pull``), into a store that
    drift-checks every level it writes; then the alarms are routed as alerts (unless
    ``alerts`` is False)."""
    store = DriftCheckingStore(settings.snapshot_dir, settings)
    return _finish(store, run(store), settings, alerts=alerts)


def import_demo_checked(
    settings: Settings,
    *,
    seed: int | None = None,
    countries: int | None = None,
    pgm_cells: int | str | None = None,
    last_month: int | None = None,
    alerts: bool = True,
) -> CheckedImport:
    """The demo world (:func:`ewspipe.panel.demo.import_demo_world`) plus drift (its alarms
    routed as alerts unless ``alerts`` is False)."""
    from ewspipe.panel.demo import import_demo_world

    store = DriftCheckingStore(settings.snapshot_dir, settings)
    results = import_demo_world(settings.demo, store, seed=seed, countries=countries,
                                pgm_cells=pgm_cells, last_month=last_month,
                                limits=input_limits(settings))
    return _finish(store, results, settings, alerts=alerts)


def check_snapshot(
    settings: Settings,
    ref: str | None,
    *,
    run_type: str = IMPORT_RUN_TYPE,
    level: str | None = None,
    month: int | None = None,
    alerts: bool = True,
) -> tuple[DriftReport, DeliveryReport | None]:
    """Drift of a stored snapshot's last month (or ``month``) against the months before it.

    Args:
        settings: workspace settings (thresholds, alert sinks, state directory).
        ref: snapshot id or unique prefix; default the latest snapshot of ``level`` (cm).
        run_type: whose thresholds apply.
        level: used only to pick the latest snapshot when ``ref`` is None.
        month: last test month (default: the snapshot's last month).
        alerts: route the alarms through ``[alerts]``.

    Raises:
        InputError: unknown snapshot, run type or month, or too little history.
    """
    store = SnapshotStore(settings.snapshot_dir)
    manifest = (store.get(ref) if ref is not None
                else store.latest(Level.parse(level or Level.CM.value)))
    panel = store.load(manifest.id)
    config = DriftConfig.from_settings(settings.drift, run_type, manifest.level)
    report = check_panel(panel, config, end=month, snapshot=manifest.id)
    delivery = emit_alerts(settings, [report]) if alerts else None
    return report, delivery
