"""Output drift: a forecast run's forecasts vs the same models' previous month's forecasts.

For every model and ensemble of a forecast run, the *previous* forecast is the one of the same
model in the stored forecast run with the latest origin (last observed month) before this
run's (the newest such run if several share that origin). Both are compared on the (target
month, unit) rows they both cover (:func:`ewspipe.evaluation.output_drift.measure_change`), and
alerts (source ``output_drift``, WARNING, carrying the run id) fire beyond the
``[qa.output_drift]`` bounds:

* **total**: total predicted deaths new / old above ``max_total_ratio`` or below its inverse,
  when either total reaches ``min_total_deaths``;
* **unit jump**: a unit whose ``|log1p(new) - log1p(old)|`` exceeds ``max_unit_jump`` in some
  shared month (one alert per unit, largest first, at most ``max_alerts``; the rest fold into
  one alert);
* **non-zero share**: the share of predictions >= ``nonzero_threshold`` moves by more than
  ``max_nonzero_share_change`` (absolute).

Only models and ensembles whose status is in ``statuses`` (default deployed and shadow) raise
alerts; the others (baselines such as LOCF move by design) are measured and reported only.

``ewspipe forecast`` runs this after every forecast run (the alerts go to the sinks with the
run's own alerts); ``ewspipe qa output-drift RUN`` runs it on any stored forecast run. The
report is written to ``<state_dir>/qa/output_drift/<run id>.json``. The monthly run compares
its forecasts with the previous monthly run's of the same environment by the same rules
(:func:`compare_forecasts`; :mod:`ewspipe.flows.monitoring_tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.alerts.records import Alert, Severity
from ewspipe.alerts.router import build_router
from ewspipe.atomic import write_json
from ewspipe.errors import InputError
from ewspipe.evaluation.output_drift import OutputChange, measure_change
from ewspipe.flows.naming import alert_unit
from ewspipe.geography import UnitNames, unit_names
from ewspipe.models.forecast import Forecast
from ewspipe.panel.months import month_label
from ewspipe.settings import OutputDriftSettings, Settings
from ewspipe.store.predictions import read_forecast
from ewspipe.store.runs import RunStore

__all__ = ["SOURCE", "ModelOutputDrift", "OutputDriftReport", "after_forecast_run",
           "check_output_drift", "compare_forecasts", "run_order"]

SOURCE = "output_drift"


@dataclass
class ModelOutputDrift:
    model: str
    level: str
    kind: str
    status: str
    origin: int | None
    previous_run: str | None = None
    previous_origin: int | None = None
    config_changed: bool | None = None
    change: OutputChange | None = None
    alerts: list[Alert] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "level": self.level, "kind": self.kind, "status": self.status,
            "origin": self.origin, "previous_run": self.previous_run,
            "previous_origin": self.previous_origin, "config_changed": self.config_changed,
            "change": self.change.to_dict() if self.change else None,
            "alerts": len(self.alerts), "skipped": self.skipped,
        }


@dataclass
class OutputDriftReport:
    run_id: str
    bounds: dict[str, Any]
    models: list[ModelOutputDrift]
    path: Path | None = None
    delivery: dict[str, Any] | None = None

    @property
    def alerts(self) -> list[Alert]:
        return [a for m in self.models for a in m.alerts]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "bounds": self.bounds,
                "models": [m.to_dict() for m in self.models],
                "alerts": [a.to_dict() for a in self.alerts],
                "path": str(self.path) if self.path else None, "delivery": self.delivery}


def _origin(record: dict[str, Any], level: str) -> int | None:
    origins = ((record.get("partition") or {}).get(level) or {}).get("origins") or []
    return int(origins[0]) if len(origins) == 1 else None


def run_order(runs: RunStore, record: dict[str, Any]) -> tuple[str, int, str]:
    """Sort key of stored runs, oldest first: start time (to the second), then the time the
    run was committed (run.json), then the id."""
    try:
        committed = (runs.path(record["run_id"]) / "run.json").stat().st_mtime_ns
    except OSError:
        committed = 0
    return str(record.get("started_at", "")), committed, str(record["run_id"])


def _previous(
    runs: RunStore, records: list[dict[str, Any]], model: str, level: str, origin: int,
    run_id: str,
) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """(record, model entry, origin) of the model's forecast with the latest earlier origin."""
    best: tuple[tuple[int, tuple[str, int, str]], dict[str, Any], dict[str, Any], int] | None \
        = None
    for record in records:
        if record["run_id"] == run_id:
            continue
        o = _origin(record, level)
        if o is None or o >= origin:
            continue
        entry = next((e for e in record.get("models") or [] if e.get("model") == model
                      and e.get("predictions")), None)
        if entry is None:
            continue
        rank = (o, run_order(runs, record))
        if best is None or rank > best[0]:
            best = (rank, record, entry, o)
    return None if best is None else (best[1], best[2], best[3])


def _fmt(v: float) -> str:
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _alerts(d: ModelOutputDrift, run_id: str, bounds: OutputDriftSettings,
            names: UnitNames | None = None) -> list[Alert]:
    c = d.change
    if c is None or c.rows == 0:
        return []
    span = (f"{month_label(c.months[0])}..{month_label(c.months[-1])}" if c.months else "")
    against = (f"vs the forecast of {d.previous_run} (origin {d.previous_origin}) on {c.rows:,} "
               f"shared unit-months {span}")
    base = {"model": d.model, "level": d.level, "kind": d.kind, "run_id": run_id,
            "previous_run": d.previous_run, "origin": d.origin,
            "previous_origin": d.previous_origin, "config_changed": d.config_changed}
    alerts = []
    ratio = c.total_ratio
    big = max(c.total_new, c.total_old) >= bounds.min_total_deaths
    if ratio is not None and big and (ratio > bounds.max_total_ratio
                                      or ratio < 1 / bounds.max_total_ratio):
        how = "infinitely" if ratio == float("inf") else f"x{ratio:.3g}"
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING, offender=d.model, run_id=run_id,
            value=ratio if ratio != float("inf") else None, threshold=bounds.max_total_ratio,
            message=(f"{d.model} ({d.level}): total predicted deaths changed {how} "
                     f"({_fmt(c.total_old)} -> {_fmt(c.total_new)}) {against}; bound x"
                     f"{bounds.max_total_ratio:g} either way ([qa.output_drift] "
                     "max_total_ratio)"),
            details={**base, "rule": "total", "total_new": c.total_new,
                     "total_old": c.total_old},
        ))
    share = c.nonzero_share_change
    if share is not None and abs(share) > bounds.max_nonzero_share_change:
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING, offender=d.model, run_id=run_id,
            value=share, threshold=bounds.max_nonzero_share_change,
            message=(f"{d.model} ({d.level}): share of predictions >= "
                     f"{bounds.nonzero_threshold:g} moved {c.nonzero_share_old:.1%} -> "
                     f"{c.nonzero_share_new:.1%} {against}; bound "
                     f"{bounds.max_nonzero_share_change:g} ([qa.output_drift] "
                     "max_nonzero_share_change)"),
            details={**base, "rule": "nonzero_share", "old": c.nonzero_share_old,
                     "new": c.nonzero_share_new},
        ))
    jumping = [j for j in c.jumps if j.jump > bounds.max_unit_jump]
    for j in jumping[: bounds.max_alerts]:
        named = alert_unit(names, j.unit)
        who = named or f"{c.unit_column}={j.unit}"
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING,
            offender=f"{d.model} {c.unit_column}={j.unit}", run_id=run_id, value=j.jump,
            threshold=bounds.max_unit_jump,
            message=(f"{d.model} ({d.level}): {who} jumped from "
                     f"{_fmt(j.old)} to {_fmt(j.new)} predicted deaths in "
                     f"{month_label(j.month_id)} (|log1p change| {j.jump:.3g} > "
                     f"{bounds.max_unit_jump:g}, [qa.output_drift] max_unit_jump) {against}"),
            details={**base, "rule": "unit_jump", **j.to_dict(),
                     **({"label": named} if named else {})},
        ))
    rest = jumping[bounds.max_alerts:]
    if rest:
        alerts.append(Alert(
            source=SOURCE, severity=Severity.WARNING, offender=d.model, run_id=run_id,
            value=float(len(rest)), threshold=bounds.max_unit_jump,
            message=(f"{d.model} ({d.level}): {len(rest):,} more units jumped beyond "
                     f"{bounds.max_unit_jump:g} (|log1p change|) {against}"),
            details={**base, "rule": "unit_jump", "units": [j.unit for j in rest]},
        ))
    return alerts


def compare_forecasts(
    d: ModelOutputDrift, new: tuple[Forecast, dict[str, Any]],
    old: tuple[Forecast, dict[str, Any]], *, run_id: str, bounds: OutputDriftSettings,
    names: UnitNames | None = None,
) -> None:
    """Measure ``d``'s new forecast against its previous one (each ``(forecast, metadata)``;
    ``d.previous_run`` and ``d.previous_origin`` already set) and fill in the change, a
    changed config hash and, for statuses in ``bounds.statuses``, the alerts (units named
    with ``names``, when given). Shared by ``ewspipe forecast`` runs and the monthly run's
    output-drift task."""
    d.config_changed = new[1].get("config_hash") != old[1].get("config_hash")
    d.change = measure_change(new[0], old[0], nonzero_threshold=bounds.nonzero_threshold)
    if d.change.rows == 0:
        d.skipped = (f"no shared target month (previous origin {d.previous_origin}, now "
                     f"{d.origin})")
        return
    if d.status in bounds.statuses:
        d.alerts = _alerts(d, run_id, bounds, names)


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)


def check_output_drift(
    settings: Settings, run_id: str, *, deliver: bool = False, store: bool = True
) -> OutputDriftReport:
    """Compare every model and ensemble of forecast run ``run_id`` (an id or unique part) with
    its previous forecast; alerts beyond ``[qa.output_drift]`` (module docstring).

    Args:
        deliver: also send the alerts to the ``[alerts]`` sinks.
        store: write the report to ``<state_dir>/qa/output_drift/<run id>.json``.

    Raises:
        InputError: no such run, or it is not a forecast run.
    """
    runs = RunStore(settings.runs_dir)
    record = runs.get(run_id)
    run_id = record["run_id"]
    if record.get("kind") != "forecast":
        raise InputError(f"run {run_id} is a {record.get('kind')} run; output drift compares "
                         "forecast runs (made by `ewspipe forecast`)")
    bounds = settings.qa.output_drift
    records = [r for r in runs.list() if r.get("kind") == "forecast"]
    models = []
    for entry in record.get("models") or []:
        level = entry["level"]
        d = ModelOutputDrift(entry["model"], level, entry.get("kind", "model"),
                             str(entry.get("status", "")), _origin(record, level))
        models.append(d)
        if d.origin is None or not entry.get("predictions"):
            d.skipped = "the run record has no single origin or no predictions for it"
            continue
        prev = _previous(runs, records, d.model, level, d.origin, run_id)
        if prev is None:
            d.skipped = "no earlier forecast of this model is stored"
            continue
        prev_record, prev_entry, d.previous_origin = prev
        d.previous_run = prev_record["run_id"]
        new = read_forecast(runs.path(run_id) / entry["predictions"], samples=False)
        old = read_forecast(runs.path(d.previous_run) / prev_entry["predictions"],
                            samples=False)
        snapshot = entry.get("snapshot") or (record.get("snapshots") or {}).get(
            level, {}).get("id")
        compare_forecasts(d, new, old, run_id=run_id, bounds=bounds,
                          names=unit_names(settings, level, snapshot=snapshot))
    report = OutputDriftReport(run_id, bounds.model_dump(), models)
    if deliver and report.alerts:
        with build_router(settings.alerts, settings.state_dir) as router:
            report.delivery = router.route(report.alerts).to_dict()
    if store:
        report.path = settings.layout.output_drift_reports / f"{run_id}.json"
        _write(report.path, report.to_dict())
    return report


def after_forecast_run(settings: Settings, run_id: str) -> tuple[list[Alert], dict[str, Any]]:
    """Output drift at the end of a forecast run: (alerts to deliver, summary for the run's
    result). Never raises: the run is already stored, so a failure is reported, not thrown."""
    try:
        report = check_output_drift(settings, run_id)
    except Exception as exc:  # a QA bug must not turn a stored forecast into a failed command
        return [], {"error": f"{type(exc).__name__}: {exc}"}
    return report.alerts, {
        "alerts": len(report.alerts), "path": str(report.path),
        "models": {m.model: (m.skipped or f"vs {m.previous_run}") for m in report.models},
    }
