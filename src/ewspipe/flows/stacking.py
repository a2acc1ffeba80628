"""``ewspipe models stack``: learn an ensemble's weights on several windows before validation.

The windows are the backtest run type's (``[partitions.backtest]``, by default 2005-2008,
2009-2012, 2013-2016 and 2017-2020 = calibration), each trained on every month before its test
window: the windows the validation partition never sees. On each, every member is fitted and
predicts every origin in process (as
:func:`ewspipe.backtest` does: nothing is stored), and :func:`ewspipe.ensembles.stacking.stack`
learns the weights of the ``logmean`` (or count-space ``mean``) combination and scores them
against equal weights.
With ``apply`` the weights go into the ensemble file
(:func:`ewspipe.catalog.rewrite.write_stacking`).

:func:`stacking_windows` and :func:`member_forecasts` are the only parts that know where the
windows and the members' forecasts come from (a backtest run type can replace them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ewspipe.catalog import Catalog, ModelSpec
from ewspipe.catalog.files import display_path
from ewspipe.catalog.rewrite import write_stacking
from ewspipe.ensembles.aggregate import aggregate
from ewspipe.ensembles.stacking import (
    COMBINATIONS,
    DEFAULT_SHRINKAGE,
    Stacking,
    msle,
    stack,
    window_rows,
)
from ewspipe.errors import InputError
from ewspipe.flows.modelrun import (
    _actuals,
    _check_coverage,
    _snapshots_by_level,
    fit_predict,
)
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import Panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.partitions import Partition, PartitionScheme, Window
from ewspipe.settings import Settings

__all__ = ["DEFAULT_WINDOWS", "StackResult", "member_forecasts", "run_stacking",
           "stacking_windows", "window_label"]

DEFAULT_WINDOWS: int | None = None  # every [partitions.backtest] window


def window_label(test: Window) -> str:
    """``"2017-2020"``: the calendar years of a test window (month 1 = January 1980)."""
    first, last = 1980 + (test.first - 1) // 12, 1980 + (test.last - 1) // 12
    return f"{first}-{last}" if first != last else str(first)


def stacking_windows(scheme: PartitionScheme, count: int | None = DEFAULT_WINDOWS
                     ) -> list[tuple[str, Partition]]:
    """The ``[partitions.backtest]`` windows (all of them, or the ``count`` latest), oldest
    first, labelled by their test years: never validation's test months."""
    windows = scheme.backtest()
    if count is not None:
        if count < 1:
            raise InputError(f"--windows must be >= 1, got {count}")
        if count > len(windows):
            raise InputError(f"--windows {count}: [partitions.backtest] has {len(windows)} "
                             "windows; use fewer --windows or add test_firsts")
        windows = windows[-count:]
    return [(p.window or window_label(p.test), p) for p in windows]


def member_forecasts(
    specs: Sequence[ModelSpec], panel: Panel, manifest: Manifest,
    windows: Sequence[tuple[str, Partition]], *, progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Forecast]]:
    """{window: {member: forecast of every origin}}, each member fitted on the window's
    training months (in process, nothing stored)."""
    out: dict[str, dict[str, Forecast]] = {}
    for label, partition in windows:
        out[label] = {}
        for spec in specs:
            _check_coverage(spec, manifest, partition)
            if progress is not None:
                progress(f"window {label}: fitting {spec.name}")
            out[label][spec.name] = fit_predict(spec, panel, manifest, partition)
    return out


@dataclass(frozen=True)
class StackResult:
    """What ``ewspipe models stack`` reports (``to_dict`` is its --json document)."""

    ensemble: str
    file: str
    snapshot: str
    aggregation: str
    stacking: Stacking
    current: Mapping[str, float]
    unscored: Mapping[str, int]
    applied: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        s = self.stacking
        return {
            "ensemble": self.ensemble, "file": self.file, "snapshot": self.snapshot,
            "shrinkage": s.shrinkage, "combine": s.combine, "members": list(s.members),
            "fitted_weights": dict(s.fitted), "weights": dict(s.weights),
            "windows": [
                {"window": w.window, "rows": w.rows, "unscored": self.unscored[w.window],
                 "stacked_msle": w.stacked,
                 "equal_msle": w.equal, "current_msle": self.current[w.window],
                 "gain_vs_equal": w.gain}
                for w in s.scores
            ],
            "pooled": {"stacked_msle": s.pooled_stacked, "equal_msle": s.pooled_equal},
            "current_aggregation": self.aggregation,
            "applied": dict(self.applied) if self.applied is not None else None,
        }


def run_stacking(
    settings: Settings,
    catalog: Catalog,
    name: str,
    *,
    windows: int | None = DEFAULT_WINDOWS,
    shrinkage: float | None = None,
    combine: str | None = None,
    snapshot_ref: str | Sequence[str] | None = None,
    apply: bool = False,
    progress: Callable[[str], None] | None = None,
) -> StackResult:
    """Fit the members of ensemble ``name`` on the stacking windows, learn the weights and
    (``apply``) write them into its file.

    ``shrinkage`` defaults to the file's ``[stacking] shrinkage`` (else 0.5), ``combine`` to
    its ``[stacking] combine`` (else ``logmean``). The scores of
    the ensemble as currently written (its aggregation and weights) are reported per window
    beside the stacked and equal weights, so a user sees what ``--apply`` changes.
    """
    spec = catalog.get_ensemble(name)
    if shrinkage is None:
        shrinkage = spec.stacking.shrinkage if spec.stacking is not None else DEFAULT_SHRINKAGE
    if combine is None:
        combine = spec.stacking.combine if spec.stacking is not None else "logmean"
    if combine not in COMBINATIONS:
        raise InputError(f"--combine {combine!r}: use one of {', '.join(COMBINATIONS)}")
    parts = stacking_windows(settings.partition_scheme(), windows)
    members = [catalog.get(m) for m in spec.members]
    snapshots = SnapshotStore(settings.snapshot_dir)
    refs = [snapshot_ref] if isinstance(snapshot_ref, str) else list(snapshot_ref or [])
    other = [m for m in map(snapshots.get, refs) if m.level != spec.level.value]
    if other:  # it would be ignored: the weights would not come from the data chosen
        raise InputError(f"snapshot {other[0].id} is a {other[0].level} snapshot, but "
                         f"ensemble {name!r} is {spec.level.value}; give a "
                         f"{spec.level.value} snapshot or leave it out")
    manifest = _snapshots_by_level(snapshots, members, refs or None)[spec.level.value]
    panel = snapshots.load(manifest.id)
    if spec.target not in panel.frame.columns:
        raise InputError(f"ensemble {name!r} forecasts {spec.target!r}, which snapshot "
                         f"{manifest.id} lacks")
    forecasts = member_forecasts(members, panel, manifest, parts, progress=progress)
    actuals = _actuals(panel, spec.target)
    rows = {label: window_rows(label, fcs, actuals) for label, fcs in forecasts.items()}
    result = stack(rows, shrinkage=shrinkage, combine=combine)  # type: ignore[arg-type]
    current = {}
    for label, fcs in forecasts.items():
        combined = aggregate(fcs, method=spec.aggregation,
                             weights=dict(spec.weights) if spec.weights is not None else None)
        scored = window_rows(label, {"ensemble": combined}, actuals)  # the same rows
        current[label] = msle(scored.points["ensemble"], scored.actual)
    path = catalog.ensemble_files[name]
    applied = None
    if apply:
        config_hash = write_stacking(path, result, fitted=dt.date.today().isoformat(),
                                     expected_config_hash=spec.config_hash)
        applied = {"file": display_path(path), "config_hash": config_hash}
    return StackResult(name, display_path(path), manifest.id, spec.aggregation, result,
                       current, {label: w.unscored for label, w in rows.items()}, applied)
