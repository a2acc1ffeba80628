"""Run the detectors on a panel, turn values into alarms, alarms into alerts.

An alarm fires when ``value / threshold > 1``; its severity is ``int(1 + value / threshold)``
(2 = just over the threshold, 3 = more than twice it, ...), capped at 100: beyond that the
number carries no information (``delta_completeness`` divides by 1e-20 when the standard
window had no missing value, so one lost unit would otherwise score ~1e17). Severities map
to alert levels
with ``[drift] error_level`` and ``critical_level`` (below error_level: WARNING), and a
check *fails* when any alarm reaches ``[drift] fail_level``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ewspipe.alerts.records import Alert, Severity
from ewspipe.drift.detectors import ALL_FEATURES, DETECTORS, Measurement, get_detector
from ewspipe.drift.windows import Windows, build_windows
from ewspipe.errors import InputError
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import Panel
from ewspipe.settings import DriftSettings

__all__ = [
    "RUN_TYPES",
    "SEVERITY_CAP",
    "Alarm",
    "DriftConfig",
    "DriftReport",
    "alarms_from",
    "check_panel",
    "measure",
    "run_detectors",
    "severity_of",
]

RUN_TYPES = ("calibration", "validation", "forecasting")
LEVELS = ("cm", "pgm")
SEVERITY_CAP = 100


@dataclass(frozen=True)
class DriftConfig:
    """Resolved drift settings for one run type and level (validated once, then trusted)."""

    run_type: str
    level: str
    thresholds: Mapping[str, float]
    fail_level: int = 3
    error_level: int = 3
    critical_level: int = 10
    test_months: int = 1
    standard_months: int = 30
    min_standard_months: int = 12
    min_positives: int = 5
    max_alerts: int = 10
    ignore_columns: tuple[str, ...] = ("gwcode",)

    @classmethod
    def from_settings(cls, settings: DriftSettings, run_type: str, level: str) -> DriftConfig:
        """Thresholds for ``run_type`` and ``level``: [drift.thresholds] < [drift.<level>] <
        [drift.<run_type>].

        Raises:
            InputError: for an unknown run type or level.
        """
        if run_type not in RUN_TYPES:
            raise InputError(
                f"unknown run type {run_type!r}; use one of {', '.join(RUN_TYPES)}",
                parameter="run_type",
            )
        if level not in LEVELS:
            raise InputError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        thresholds, fail_level = settings.resolve(run_type, level)
        return cls(
            run_type=run_type, level=level, thresholds=thresholds, fail_level=fail_level,
            error_level=settings.error_level, critical_level=settings.critical_level,
            test_months=settings.test_months, standard_months=settings.standard_months,
            min_standard_months=settings.min_standard_months,
            min_positives=settings.min_positives, max_alerts=settings.max_alerts,
            ignore_columns=tuple(settings.ignore_columns),
        )

    def alert_level(self, severity: int) -> Severity:
        if severity >= self.critical_level:
            return Severity.CRITICAL
        if severity >= self.error_level:
            return Severity.ERROR
        return Severity.WARNING


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Alarm:
    """One detector firing on one offender (a unit, a month or ``global``)."""

    detector: str
    feature: str
    offender: str
    value: float
    threshold: float
    severity: int
    level: Severity
    month: int  # last month of the test window
    time: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level"] = self.level.value
        return data

    @property
    def message(self) -> str:
        feature = "all features" if self.feature == ALL_FEATURES else self.feature
        return (
            f"{self.detector} on {feature} at {self.offender}: value {self.value:.4g} > "
            f"threshold {self.threshold:.4g}, severity {self.severity}, test month "
            f"{month_label(self.month)} ({self.month})"
        )


def severity_of(value: float, threshold: float) -> int:
    """``int(1 + value / threshold)``, capped at :data:`SEVERITY_CAP`."""
    return int(1 + min(value / threshold, SEVERITY_CAP - 1))


def _offender(m: Measurement, key: int, unit_column: str) -> str:
    if m.kind == "global":
        return "global"
    if m.kind == "month":
        return f"month_id={key}"
    return f"{unit_column}={key}"


def alarms_from(
    detector: str,
    measurements: Iterable[Measurement],
    threshold: float,
    config: DriftConfig,
    *,
    month: int,
    unit_column: str,
) -> list[Alarm]:
    """Alarms where ``value / threshold > 1``, most severe first."""
    alarms = []
    now = _now()
    for m in measurements:
        ratio = m.values / threshold
        fired = np.flatnonzero(ratio > 1)  # NaN compares False: not measurable never fires
        for j in fired:
            severity = severity_of(float(m.values[j]), threshold)
            key = int(m.keys[j]) if m.kind != "global" else 0
            alarms.append(Alarm(
                detector=detector, feature=m.feature,
                offender=_offender(m, key, unit_column), value=float(m.values[j]),
                threshold=float(threshold), severity=severity,
                level=config.alert_level(severity), month=month, time=now,
            ))
    alarms.sort(key=lambda a: -a.value / a.threshold)
    return alarms


def measure(
    windows: Windows, config: DriftConfig, detectors: Sequence[str] | None = None
) -> dict[str, list[Measurement]]:
    """Raw detector values (no thresholds), by detector name."""
    chosen = list(DETECTORS) if detectors is None else [get_detector(d).name for d in detectors]
    return {name: DETECTORS[name].measure(windows, config.min_positives) for name in chosen}


@dataclass
class DriftReport:
    """The outcome of one drift check: windows, thresholds, alarms and the verdict."""

    level: str
    run_type: str
    windows: dict[str, Any]
    thresholds: dict[str, float]
    fail_level: int
    alarms: list[Alarm]
    not_measured: dict[str, list[str]] = field(default_factory=dict)
    units: dict[str, Any] = field(default_factory=dict)
    snapshot: str | None = None
    max_alerts: int = 10

    @property
    def failed(self) -> bool:
        return any(a.severity >= self.fail_level for a in self.alarms)

    @property
    def max_severity(self) -> int:
        return max((a.severity for a in self.alarms), default=0)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.alarms:
            out[a.detector] = out.get(a.detector, 0) + 1
        return out

    def summary(self, top: int = 10) -> dict[str, Any]:
        """Compact form stored in snapshot manifests and printed after imports."""
        return {
            "snapshot": self.snapshot,
            "level": self.level,
            "run_type": self.run_type,
            "test": self.windows.get("test"),
            "standard": self.windows.get("standard"),
            "test_label": self.windows.get("test_label"),
            "standard_label": self.windows.get("standard_label"),
            "alarms": len(self.alarms),
            "max_severity": self.max_severity,
            "fail_level": self.fail_level,
            "failed": self.failed,
            "by_detector": self.counts(),
            "top": [a.to_dict() for a in self.alarms[:top]],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(top=0),
            "windows": self.windows,
            "thresholds": self.thresholds,
            "not_measured": self.not_measured,
            "units": self.units,
            "alarms": [a.to_dict() for a in self.alarms],
        }

    def alerts(self, *, run_id: str | None = None, environment: str | None = None,
               ) -> list[Alert]:
        """Alert records (source ``drift.<detector>``); at most ``max_alerts`` per detector and
        feature, the rest folded into one summary alert so a broken grid is not 13,000 mails.
        """
        groups: dict[tuple[str, str], list[Alarm]] = {}
        for a in self.alarms:
            groups.setdefault((a.detector, a.feature), []).append(a)
        out = []
        context = {"level": self.level, "run_type": self.run_type, "snapshot": self.snapshot,
                   "test": self.windows.get("test"), "standard": self.windows.get("standard")}
        for (detector, feature), alarms in groups.items():
            alarms = sorted(alarms, key=lambda a: -a.severity)
            for a in alarms[: self.max_alerts]:
                out.append(Alert(
                    source=f"drift.{detector}", severity=a.level, message=a.message,
                    offender=a.offender, value=a.value, threshold=a.threshold, run_id=run_id,
                    environment=environment, time=a.time,
                    details={**context, "detector": detector, "feature": feature,
                             "severity": a.severity, "month": a.month,
                             "alarms_in_group": len(alarms)},
                ))
            rest = alarms[self.max_alerts:]
            if rest:
                worst = rest[0]
                out.append(Alert(
                    source=f"drift.{detector}", severity=worst.level,
                    message=f"{detector} on {feature}: {len(rest)} more offenders "
                    f"(worst {worst.offender}, severity {worst.severity})",
                    offender=f"{len(rest)} more", value=worst.value, threshold=worst.threshold,
                    run_id=run_id, environment=environment, time=worst.time,
                    details={**context, "detector": detector, "feature": feature,
                             "severity": worst.severity, "month": worst.month,
                             "offenders": [a.offender for a in rest[:100]],
                             "alarms_in_group": len(alarms)},
                ))
        return out


def _unit_changes(w: Windows) -> dict[str, Any]:
    before = w.present[w.n_standard - 1]
    during = w.present[w.n_standard:].any(axis=0)
    dropped = w.units[w.expected_test.any(axis=0) & ~w.present[-1]]
    added = w.units[during & ~before]
    return {
        "column": w.unit_column,
        "test_last_month": int(w.present[-1].sum()),
        "standard_last_month": int(before.sum()),
        "added": [int(u) for u in added[:50]],
        "added_count": len(added),
        "dropped": [int(u) for u in dropped[:50]],
        "dropped_count": len(dropped),
    }


def run_detectors(
    windows: Windows,
    config: DriftConfig,
    *,
    detectors: Sequence[str] | None = None,
    snapshot: str | None = None,
) -> DriftReport:
    """Measure, apply thresholds, and report.

    Args:
        windows: the test and standard windows (:func:`~ewspipe.drift.windows.build_windows`).
        config: resolved thresholds and levels.
        detectors: names to run (default: every registered detector).
        snapshot: snapshot id, recorded in the report and the alerts.

    Returns:
        The :class:`DriftReport`; ``report.failed`` says whether the check fails.
    """
    values = measure(windows, config, detectors)
    month = int(windows.months[-1])
    alarms: list[Alarm] = []
    not_measured: dict[str, list[str]] = {}
    for name, measurements in values.items():
        alarms += alarms_from(name, measurements, config.thresholds[name], config,
                              month=month, unit_column=windows.unit_column)
        blank = [m.feature for m in measurements if np.isnan(m.values).all()]
        if blank:
            not_measured[name] = blank
    return DriftReport(
        level=config.level,
        run_type=config.run_type,
        windows=windows.describe(),
        thresholds={k: float(config.thresholds[k]) for k in values},
        fail_level=config.fail_level,
        alarms=alarms,
        not_measured=not_measured,
        units=_unit_changes(windows),
        snapshot=snapshot,
        max_alerts=config.max_alerts,
    )


def check_panel(
    panel: Panel,
    config: DriftConfig,
    *,
    end: int | None = None,
    snapshot: str | None = None,
) -> DriftReport:
    """Drift of the test window ending at ``end`` (default: the last month) against the
    ``standard_months`` before it.

    Raises:
        InputError: when the month is outside the panel or the history is too short.
    """
    windows = build_windows(
        panel, end=end, test_months=config.test_months,
        standard_months=config.standard_months,
        min_standard_months=config.min_standard_months, ignore=config.ignore_columns,
    )
    return run_detectors(windows, config, snapshot=snapshot)
