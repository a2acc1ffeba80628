"""Back-test: run every detector on every month of a panel, each against its previous months.

This is the evidence behind the default thresholds (docs/drift_backtest.md): how often each
detector fires on real data, at which severity, and which months it flags. A good default
keeps a typical month quiet and fires on the data's real breaks (units dropping out of the
skeleton, all-zero deliveries, record-breaking months).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ewspipe.alerts.records import Severity
from ewspipe.drift.check import DriftConfig, alarms_from, measure
from ewspipe.drift.detectors import DETECTORS
from ewspipe.drift.windows import build_windows
from ewspipe.errors import InputError
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import Panel

__all__ = ["BacktestResult", "DetectorStats", "backtest", "markdown_table"]

_LEVELS = (Severity.WARNING, Severity.ERROR, Severity.CRITICAL)
_QUANTILES = (0.5, 0.9, 0.99)


def _share(count: int, months: int) -> float:
    """``count`` as a share of ``months`` (0 when no month was tested)."""
    return count / months if months else 0.0


@dataclass
class DetectorStats:
    """One detector over all back-tested months."""

    detector: str
    threshold: float
    months_fired: int = 0
    months_failing: int = 0
    by_level: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in _LEVELS})
    alarms: int = 0
    # per month: the largest value over offenders and features (NaN = not measurable)
    values: list[float] = field(default_factory=list)
    fired: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, months: int) -> dict[str, Any]:
        vals = np.array(self.values, dtype=float)
        finite = vals[np.isfinite(vals)]
        quantiles = {f"p{int(q * 100)}": float(np.quantile(finite, q)) if len(finite) else None
                     for q in _QUANTILES}
        return {
            "detector": self.detector,
            "threshold": self.threshold,
            "months_fired": self.months_fired,
            "share_fired": _share(self.months_fired, months),
            "months_failing": self.months_failing,
            "share_failing": _share(self.months_failing, months),
            "by_level": dict(self.by_level),
            "share_by_level": {k: _share(v, months) for k, v in self.by_level.items()},
            "alarms": self.alarms,
            "value_quantiles": {**quantiles,
                                "max": float(finite.max()) if len(finite) else None},
            "months_measured": len(finite),
            "fired": self.fired,
        }


@dataclass
class BacktestResult:
    level: str
    run_type: str
    snapshot: str | None
    months: list[int]
    fail_level: int
    detectors: dict[str, DetectorStats]
    quiet_months: int
    failing_months: int
    standard_months: int
    test_months: int

    def to_dict(self) -> dict[str, Any]:
        n = len(self.months)
        return {
            "snapshot": self.snapshot,
            "level": self.level,
            "run_type": self.run_type,
            "months": [self.months[0], self.months[-1]] if self.months else [],
            "months_tested": n,
            "test_months": self.test_months,
            "standard_months": self.standard_months,
            "fail_level": self.fail_level,
            "quiet_months": self.quiet_months,
            "share_quiet": _share(self.quiet_months, n),
            "failing_months": self.failing_months,
            "share_failing": _share(self.failing_months, n),
            "detectors": {k: v.to_dict(n) for k, v in self.detectors.items()},
        }


def backtest(
    panel: Panel,
    config: DriftConfig,
    *,
    first: int | None = None,
    last: int | None = None,
    snapshot: str | None = None,
) -> BacktestResult:
    """Check every month from ``first`` to ``last`` against the months before it.

    Args:
        panel: the panel (e.g. the real cm data).
        config: thresholds and windows; months with fewer than ``min_standard_months`` of
            history are skipped.
        first, last: month range to test (default: every month with enough history).
        snapshot: id recorded in the result.

    Returns:
        Per-detector firing counts and shares (by alert level), value quantiles and the list
        of months each detector fired on.

    Raises:
        InputError: when no month in the range has enough history.
    """
    start = panel.first_month + config.min_standard_months + config.test_months - 1
    first = max(start, panel.first_month if first is None else first)
    last = panel.last_month if last is None else min(last, panel.last_month)
    if first > last:
        raise InputError(
            f"no month to back-test: months {panel.first_month}..{panel.last_month} leave "
            f"none after {config.min_standard_months} standard months (from {start}); "
            "pass a wider range or a longer panel"
        )
    stats = {name: DetectorStats(name, float(config.thresholds[name])) for name in DETECTORS}
    months = list(range(first, last + 1))
    quiet = failing = 0
    for end in months:
        windows = build_windows(
            panel, end=end, test_months=config.test_months,
            standard_months=config.standard_months,
            min_standard_months=config.min_standard_months, ignore=config.ignore_columns,
        )
        any_alarm = any_fail = False
        for name, measurements in measure(windows, config).items():
            st = stats[name]
            finite = [v for m in measurements for v in m.values[np.isfinite(m.values)]]
            st.values.append(float(max(finite)) if finite else float("nan"))
            alarms = alarms_from(name, measurements, st.threshold, config, month=end,
                                 unit_column=windows.unit_column)
            if not alarms:
                continue
            any_alarm = True
            worst = alarms[0]
            st.months_fired += 1
            st.alarms += len(alarms)
            st.by_level[max((a.level for a in alarms), key=lambda s: s.rank).value] += 1
            if any(a.severity >= config.fail_level for a in alarms):
                st.months_failing += 1
                any_fail = True
            st.fired.append({
                "month": end, "label": month_label(end), "alarms": len(alarms),
                "severity": max(a.severity for a in alarms), "feature": worst.feature,
                "offender": worst.offender, "value": worst.value,
            })
        quiet += not any_alarm
        failing += any_fail
    return BacktestResult(
        level=config.level, run_type=config.run_type, snapshot=snapshot, months=months,
        fail_level=config.fail_level, detectors=stats, quiet_months=quiet,
        failing_months=failing, standard_months=config.standard_months,
        test_months=config.test_months,
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"


def markdown_table(result: dict[str, Any]) -> str:
    """The back-test as a Markdown table (from :meth:`BacktestResult.to_dict`)."""
    n = result["months_tested"]
    lines = [
        f"{n} months tested ({result['months'][0]}..{result['months'][-1]}), level "
        f"{result['level']}, run type {result['run_type']}, fail level {result['fail_level']}: "
        f"{result['quiet_months']} quiet ({result['share_quiet']:.1%}), "
        f"{result['failing_months']} failing ({result['share_failing']:.1%})",
        "",
        "| detector | threshold | months fired | WARNING | ERROR | CRITICAL | failing "
        "| value p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, d in result["detectors"].items():
        q = d["value_quantiles"]
        lv = d["share_by_level"]
        lines.append(
            f"| {name} | {_fmt(d['threshold'])} | {d['months_fired']} ({d['share_fired']:.1%}) "
            f"| {lv['WARNING']:.1%} | {lv['ERROR']:.1%} | {lv['CRITICAL']:.1%} "
            f"| {d['share_failing']:.1%} | {_fmt(q['p50'])} | {_fmt(q['p90'])} "
            f"| {_fmt(q['p99'])} | {_fmt(q['max'])} |"
        )
    return "\n".join(lines)
