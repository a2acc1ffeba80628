"""Self-test: every detector must stay quiet on clean data and fire on its own perturbation.

The test window of a clean snapshot is perturbed once per detector, each time the way the
detector is meant to catch (a tenth of the values lost, an all-zero delivery, a typo adding
a zero, a unit change, a partial delivery, ...); a detector that does not fire, or any
detector that fires on the unperturbed data, fails the self-test by name. Perturbations
work on the dense windows (:class:`~ewspipe.drift.windows.Windows`), never on stored data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ewspipe.drift.check import Alarm, DriftConfig, run_detectors
from ewspipe.drift.detectors import DETECTORS
from ewspipe.drift.windows import Windows, build_windows
from ewspipe.errors import CheckFailed
from ewspipe.panel.schema import Panel

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "SelftestCase",
    "SelftestResult",
    "require_pass",
    "run_selftest",
]

Rng = np.random.Generator


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    apply: Callable[[Windows, Rng], Windows]


def _split(w: Windows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = w.values.copy()
    return values, values[: w.n_standard], values[w.n_standard:]


def _nan_tenth(w: Windows, rng: Rng) -> Windows:
    values, _, test = _split(w)
    observed = np.flatnonzero(~np.isnan(test))
    k = max(1, int(np.ceil(0.1 * len(observed))))
    test.reshape(-1)[rng.choice(observed, size=k, replace=False)] = np.nan
    return w.with_values(values)


def _zero_out(w: Windows, rng: Rng) -> Windows:
    values, _, test = _split(w)
    test[~np.isnan(test)] = 0.0
    return w.with_values(values)


def _silence_active_units(w: Windows, rng: Rng) -> Windows:
    values, std, test = _split(w)
    activity = np.nansum(std > 0, axis=(0, 2))
    units = np.argsort(-activity, kind="stable")[:5]
    block = std[:, units, :]
    block[(block == 0)] = 1.0  # active in every standard month ...
    std[:, units, :] = block
    silenced = test[:, units, :]
    silenced[~np.isnan(silenced)] = 0.0  # ... and silent in the test window
    test[:, units, :] = silenced
    return w.with_values(values)


def _fill_zeros(w: Windows, rng: Rng) -> Windows:
    values, _, test = _split(w)
    zeros = np.flatnonzero(test == 0)
    if len(zeros):
        test.reshape(-1)[rng.choice(zeros, size=max(1, len(zeros) // 2), replace=False)] = 1.0
    return w.with_values(values)


def _inject_extreme(w: Windows, rng: Rng) -> Windows:
    values, std, test = _split(w)
    flat = test.reshape(-1, len(w.features))
    for i in range(len(w.features)):
        observed = np.flatnonzero(~np.isnan(flat[:, i]))
        s = std[..., i][~np.isnan(std[..., i])]
        if not len(observed) or not len(s):
            continue
        top = float(s.max())
        flat[rng.choice(observed), i] = 10.0 * top if top > 0 else s.mean() + 1000 * s.std() + 1
    return w.with_values(values)


def _scale_positives(w: Windows, rng: Rng) -> Windows:
    values, _, test = _split(w)
    test[test > 0] *= 10.0
    return w.with_values(values)


def _drop_nonzero(w: Windows, rng: Rng) -> Windows:
    values, _, test = _split(w)
    positive = np.flatnonzero(test > 0)
    if len(positive):
        k = max(1, int(np.ceil(0.9 * len(positive))))
        test.reshape(-1)[rng.choice(positive, size=k, replace=False)] = 0.0
    return w.with_values(values)


_NAN = Perturbation("nan_tenth", "a tenth of the test-window values set to missing",
                    _nan_tenth)
_ZERO = Perturbation("zero_out", "every test-window value set to 0 (an all-zero delivery)",
                     _zero_out)

PERTURBATIONS: dict[str, Perturbation] = {
    "global_missingness": _NAN,
    "month_missingness": _NAN,
    "unit_missingness": _NAN,
    "feature_missingness": _NAN,
    "global_zeros": _ZERO,
    "month_zeros": _ZERO,
    "unit_zeros": Perturbation(
        "silence_active_units",
        "the five most active units, non-zero in every standard month, report 0 in the test "
        "window", _silence_active_units),
    "feature_zeros": _ZERO,
    "delta_completeness": _NAN,
    "delta_zeroes": Perturbation(
        "fill_zeros", "half of the test-window zeros become 1 (zero-filling gone wrong)",
        _fill_zeros),
    "extreme_values": Perturbation(
        "inject_extreme", "one test value per feature set to 10x the standard window's maximum "
        "(a typo adding a zero)", _inject_extreme),
    "ks_drift": Perturbation(
        "scale_positives", "positive test values multiplied by 10 (a unit change)",
        _scale_positives),
    "nonzero_shift": Perturbation(
        "drop_nonzero", "90% of the non-zero test values set to 0 (a partial delivery)",
        _drop_nonzero),
    "positive_shift": Perturbation(
        "scale_positives", "positive test values multiplied by 10 (a unit change)",
        _scale_positives),
}


# Detectors that compare distributions of positive values: they cannot judge a window with
# fewer than ``min_positives`` positives, so on such data their test is not applicable.
_NEEDS_POSITIVES = frozenset({"ks_drift", "positive_shift"})


@dataclass(frozen=True)
class SelftestCase:
    detector: str
    perturbation: str
    description: str
    fired: bool
    alarms: int
    max_severity: int
    top: dict[str, Any] | None
    applicable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class SelftestResult:
    level: str
    run_type: str
    month: int
    snapshot: str | None
    clean_alarms: list[Alarm]
    cases: list[SelftestCase] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # detectors without a perturbation

    @property
    def passed(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        out = [f"{d}: no perturbation is defined for it in ewspipe.drift.selftest"
               for d in self.missing]
        by_detector: dict[str, list[Alarm]] = {}
        for a in self.clean_alarms:
            by_detector.setdefault(a.detector, []).append(a)
        for name, alarms in by_detector.items():
            out.append(f"{name}: fired on the clean data ({len(alarms)} alarms, e.g. "
                       f"{alarms[0].message})")
        out += [f"{c.detector}: did not fire on its perturbation '{c.perturbation}' "
                f"({c.description})" for c in self.cases if c.applicable and not c.fired]
        return out

    def insensitive(self) -> list[str]:
        """Detectors that stayed quiet on their own perturbation (or have none): broken.

        Unlike :meth:`failures` this ignores alarms on the unperturbed data, which in a live
        run are real drift of the newest month (the drift check reports them), not a fault.
        """
        out = [f"{d}: no perturbation is defined for it" for d in self.missing]
        return out + [f"{c.detector}: did not fire on its perturbation '{c.perturbation}'"
                      for c in self.cases if c.applicable and not c.fired]

    def not_applicable(self) -> list[str]:
        """Detectors the data is too small to test (e.g. too few positive values)."""
        return [c.detector for c in self.cases if not c.applicable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "level": self.level,
            "run_type": self.run_type,
            "month": self.month,
            "passed": self.passed,
            "failures": self.failures(),
            "not_applicable": self.not_applicable(),
            "clean_alarms": [a.to_dict() for a in self.clean_alarms],
            "cases": [c.to_dict() for c in self.cases],
        }


def run_selftest(
    panel: Panel,
    config: DriftConfig,
    *,
    end: int | None = None,
    snapshot: str | None = None,
    seed: int = 0,
    detectors: Sequence[str] | None = None,
) -> SelftestResult:
    """Run every detector on the clean test window ending at ``end``, then on one
    perturbation per detector.

    Args:
        panel: clean data (e.g. a snapshot whose last month is ordinary).
        config: the thresholds under test.
        end: last test month (default: the panel's last month).
        snapshot: id recorded in the result.
        seed: seed of the random choices inside the perturbations.
        detectors: names to test (default: all registered).

    Returns:
        The :class:`SelftestResult`; use :func:`require_pass` to turn failures into an error.
    """
    windows = build_windows(
        panel, end=end, test_months=config.test_months,
        standard_months=config.standard_months,
        min_standard_months=config.min_standard_months, ignore=config.ignore_columns,
    )
    chosen = list(DETECTORS) if detectors is None else list(detectors)
    clean = run_detectors(windows, config, detectors=chosen, snapshot=snapshot)
    result = SelftestResult(
        level=config.level, run_type=config.run_type, month=int(windows.months[-1]),
        snapshot=snapshot, clean_alarms=clean.alarms,
    )
    for name in chosen:
        perturbation = PERTURBATIONS.get(name)
        if perturbation is None:
            result.missing.append(name)
            continue
        perturbed = perturbation.apply(windows, np.random.default_rng(seed))
        report = run_detectors(perturbed, config, detectors=[name], snapshot=snapshot)
        applicable = name not in _NEEDS_POSITIVES or _enough_positives(
            perturbed, config.min_positives)
        result.cases.append(SelftestCase(
            detector=name, perturbation=perturbation.name,
            description=perturbation.description, fired=bool(report.alarms),
            alarms=len(report.alarms), max_severity=report.max_severity,
            top=report.alarms[0].to_dict() if report.alarms else None,
            applicable=applicable,
        ))
    return result


def _enough_positives(w: Windows, min_positives: int) -> bool:
    """Whether some feature has ``min_positives`` positive values in both windows."""
    for i in range(len(w.features)):
        test = w.values[-w.n_test:, :, i]
        std = w.values[:-w.n_test, :, i]
        if min(int(np.sum(test > 0)), int(np.sum(std > 0))) >= min_positives:
            return True
    return False


def require_pass(result: SelftestResult) -> SelftestResult:
    """Return the result if it passed.

    Raises:
        CheckFailed: naming every detector that stayed quiet on its perturbation or fired
            on the clean data.
    """
    failures = result.failures()
    if failures:
        where = f"snapshot {result.snapshot}, " if result.snapshot else ""
        raise CheckFailed(
            f"drift self-test failed ({where}{result.level}, test month {result.month}, "
            f"run type {result.run_type}):\n  " + "\n  ".join(failures)
            + "\nFix the detector, or the thresholds in [drift] if they no longer catch these "
            "breaks; a detector firing on clean data means the thresholds are too tight for "
            "this data or the month is not clean (pick another with --month)."
        )
    return result
