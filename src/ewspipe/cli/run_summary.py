"""The plain-language end of `ewspipe run`: what was forecast, the top countries, the
detectors' verdict, the alerts in words and what to do next.

A first run is read by a person, not parsed: counts and verdicts are spelt out (a failed
self-test says FAILED, alarms are not "ok"), and the ``--json`` document stays the machine
interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ewspipe.errors import EwspipeError
from ewspipe.geography import unit_names
from ewspipe.layout import StateFolder
from ewspipe.settings import Settings
from ewspipe.store.predictions import read_forecast
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["alerts_words", "drift_words", "run_summary", "top_units"]

# the two import commands of README "Using real data", then the run
REAL_DATA = (
    "ewspipe data import panel ../shared/data/views_ged_cm/views_fat002_ged_sb_cm.parquet "
    "--level cm",
    "ewspipe data import panel ../shared/data/pgm_semisynthetic/pgm_ged_sb.parquet --level pgm",
)


def _severity_name(severity: int, settings: Settings | None) -> str:
    if settings is None:
        return f"severity {severity}"
    if severity >= settings.drift.critical_level:
        return "CRITICAL"
    return "ERROR" if severity >= settings.drift.error_level else "WARNING"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def drift_words(drift: dict[str, Any], settings: Settings | None = None) -> str:
    """One level's drift check and detector self-test, in words."""
    if not drift:
        return "drift: not checked"
    if drift.get("skipped"):
        return f"drift check skipped ({drift['skipped']})"
    n = int(drift.get("alarms") or 0)
    if n == 0:
        words = "drift: no alarms"
    else:
        worst = _severity_name(int(drift.get("max_severity") or 0), settings)
        words = (f"drift{' check FAILED' if drift.get('failed') else ''}: "
                 f"{n} alarm{'s' if n != 1 else ''} "
                 f"({worst}; {_counts(drift.get('by_detector') or {})})")
    selftest = drift.get("selftest") or {}
    if selftest.get("passed") is False:
        failures = [str(f).replace(": did not fire on its perturbation", " did not fire on")
                    for f in selftest.get("failures") or []]
        return words + "; drift self-test: FAILED (" + "; ".join(failures) + ")"
    if selftest.get("passed"):
        return words + "; drift self-test: passed"
    return words


def _source_words(source: str) -> tuple[str, str | None]:
    """(kind in words, detail) of an alert source."""
    if source == "drift.selftest":
        return "drift self-test failure", None
    if source.startswith("drift."):
        return "input drift", source.split(".", 1)[1]
    return {"qa": ("QA failure", None), "publish": ("refused publication", None)}.get(
        source, (source.replace("_", " ").replace(".", ": "), None))


def alerts_words(alerts: dict[str, Any] | None) -> str:
    """The run's alerts by kind and severity, in words (not a dict)."""
    alerts = alerts or {}
    count = int(alerts.get("count") or 0)
    if count == 0:
        return "none"
    kinds: dict[str, dict[str | None, int]] = {}
    for source, n in (alerts.get("by_source") or {}).items():
        kind, detail = _source_words(str(source))
        kinds.setdefault(kind, {})
        kinds[kind][detail] = kinds[kind].get(detail, 0) + int(n)
    parts = []
    for kind, details in sorted(kinds.items(), key=lambda kv: -sum(kv[1].values())):
        named = {d: n for d, n in details.items() if d is not None}
        parts.append(f"{sum(details.values())} {kind}" + (f" ({_counts(named)})" if named
                                                           else ""))
    order = ("CRITICAL", "ERROR", "WARNING", "INFO")
    severities = alerts.get("by_severity") or {}
    worst = ", ".join(f"{severities[s]} {s}" for s in order if severities.get(s))
    return f"{count} alert{'s' if count != 1 else ''}" + (f" ({worst})" if worst else "") \
        + ": " + ", ".join(parts)


def top_units(rec: MonthlyRunRecord, settings: Settings, k: int = 5
              ) -> tuple[str, int, list[tuple[str, float]], bool] | None:
    """(model, first forecast month, [(unit label, forecast)], named) of the deployed cm
    ensemble (else the first deployed cm model) for its first forecast month."""
    parts = [p for p in rec.outputs.partitions or []
             if p.get("level") == "cm" and p.get("status") == "deployed"]
    parts.sort(key=lambda p: (p.get("kind") != "ensemble", str(p.get("model"))))
    if not parts or not rec.state or not rec.snapshots or "cm" not in rec.snapshots:
        return None
    chosen = parts[0]
    forecast, _ = read_forecast(StateFolder(Path(rec.state)).resolve(str(chosen["path"])),
                                 samples=False)
    frame = forecast.frame.assign(point=forecast.point)
    month = int(frame["month_id"].min())
    first = frame[frame["month_id"] == month].nlargest(k, "point")
    snapshot = rec.snapshots["cm"].id
    names = unit_names(settings, "cm", snapshot=snapshot)
    unit = forecast.unit_column
    rows = [(names.label(int(u)), float(v))
            for u, v in zip(first[unit], first["point"], strict=True)]
    return str(chosen["model"]), month, rows, bool(names.name)


def run_summary(rec: MonthlyRunRecord, settings: Settings) -> list[str]:
    """The closing lines of `ewspipe run`: plain words and the next commands."""
    levels = sorted(rec.snapshots or {})
    kinds: dict[str, set[str]] = {"model": set(), "ensemble": set()}
    months: set[int] = set()
    for p in rec.outputs.partitions or []:
        kinds.setdefault(str(p.get("kind")), set()).add(str(p.get("model")))
    for lvl in levels:
        snap = (rec.snapshots or {})[lvl]
        if snap.last_month is not None:
            months.add(int(snap.last_month))
    horizon = settings.partitions.steps
    lines = ["", "Summary",
             f"  Forecast {', '.join(levels) or 'nothing'} with {len(kinds['model'])} models "
             f"and {len(kinds['ensemble'])} ensembles"
             + (f", for the {horizon} months after month {max(months)}" if months else "")
             + "."]
    try:
        top = top_units(rec, settings)
    except (EwspipeError, OSError) as exc:  # the summary never fails a finished run
        top = None
        lines.append(f"  (top countries unavailable: {exc})")
    if top is not None:
        model, month, rows, named = top
        lines.append(f"  Top {len(rows)} countries by {model} for month {month}"
                     + ("" if named else " (this snapshot has no country names; ids shown)")
                     + ":")
        lines += [f"    {i}. {label:<28} {value:10.1f} fatalities"
                  for i, (label, value) in enumerate(rows, 1)]
    selftest = {lvl: (d.get("selftest") or {}) for lvl, d in rec.drift.items()}
    failed = [lvl for lvl, s in selftest.items() if s.get("passed") is False]
    tested = [lvl for lvl, s in selftest.items() if s.get("passed") is not None]
    lines.append("  Drift self-test: " + (
        f"FAILED on {', '.join(failed)}: the drift check of that level cannot be trusted"
        if failed else f"passed ({', '.join(sorted(tested))})" if tested else "not run"))
    lines.append(f"  Alerts: {alerts_words(rec.alerts)}")
    lines += ["", "Next:",
              "  open the dashboard:  ewspipe serve",
              f"  run on real data:    {REAL_DATA[0]}",
              f"                       {REAL_DATA[1]}",
              "                       ewspipe run",
              f"  see the report:      {rec.outputs.report}"]
    return lines
