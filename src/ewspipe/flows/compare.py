"""Compare two stored evaluation runs model by model (``ewspipe evaluate compare A B``).

Loads each run's record, predictions and the actuals of the data snapshot each model was
scored on, then hands the rows to :func:`ewspipe.evaluation.compare.compare_forecasts`. Only
evaluation runs of the same run type and the same partitions are comparable; anything else is
refused as bad input (exit 2) before any file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ewspipe.errors import InputError
from ewspipe.evaluation.compare import Comparison, TimeIndex, compare_forecasts
from ewspipe.evaluation.metrics import get_metric
from ewspipe.evaluation.schemes import Scored, join_actuals
from ewspipe.panel.schema import TIME_COLUMN
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.settings import Settings
from ewspipe.store.predictions import read_forecast
from ewspipe.store.runs import RunStore

__all__ = ["ModelComparison", "RunComparison", "compare_runs", "stored_run"]


@dataclass(frozen=True)
class ModelComparison:
    """One model present in both runs: where each side came from, and the comparison."""

    model: str
    level: str
    config_hash_a: str | None
    config_hash_b: str | None
    snapshot_a: str
    snapshot_b: str
    comparison: Comparison

    def to_dict(self, *, groups: bool = True) -> dict[str, Any]:
        return {
            "model": self.model, "level": self.level,
            "config_hash": {"a": self.config_hash_a, "b": self.config_hash_b,
                            "same": self.config_hash_a == self.config_hash_b},
            "snapshot": {"a": self.snapshot_a, "b": self.snapshot_b,
                         "same": self.snapshot_a == self.snapshot_b},
            **self.comparison.to_dict(groups=groups),
        }


@dataclass(frozen=True)
class RunComparison:
    run_a: str
    run_b: str
    run_type: str
    metric: str
    by: TimeIndex
    models: list[ModelComparison]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def to_dict(self, *, groups: bool = True) -> dict[str, Any]:
        return {
            "run_a": self.run_a, "run_b": self.run_b, "run_type": self.run_type,
            "metric": self.metric, "by": self.by,
            "models": [m.to_dict(groups=groups) for m in self.models],
            "models_only_in_a": self.only_a, "models_only_in_b": self.only_b,
        }


def stored_run(runs: RunStore, ref: str, what: str = "run") -> dict[str, Any]:
    """The stored evaluation/forecast run ``ref`` names (an id or a unique part of one); a
    refusal naming ``what`` and the newest stored ids otherwise (no command lists them)."""
    if not ref.strip() or any(c in ref for c in "*?[]/\\"):
        raise InputError(f"{what}: {ref!r} is not a run id; give the run_id printed by "
                         "`ewspipe evaluate --json` or `ewspipe forecast --json` (or a unique "
                         "part of it)")
    try:
        return runs.get(ref)
    except InputError as exc:
        if f"match '{ref}'" not in str(exc):  # not the lookup's refusal: as it is
            raise
        ids = [r.get("run_id", "?") for r in runs.list()][-5:]
        count = str(exc).split(" match", 1)[0]  # "no run" or "2 runs"
        found = f"{count} {'matches' if count == 'no run' else 'match'}"
        raise InputError(
            f"{what}: {found} {ref!r} in {runs.root}; "
            + (f"the newest stored runs are {', '.join(ids)}" if ids else
               "no evaluation or forecast run is stored yet")
            + " (each run prints its run_id; `ewspipe evaluate --json` and `ewspipe forecast"
            " --json` show it); give one of them or a unique part") from None


def _evaluation_record(runs: RunStore, ref: str, side: str) -> dict[str, Any]:
    record = stored_run(runs, ref, f"run {side}")
    if record.get("kind") != "evaluate":
        raise InputError(
            f"run {side} ({record.get('run_id')}) is a {record.get('kind')} run; only evaluation "
            "runs have actuals to compare; pick runs made by `ewspipe evaluate`"
        )
    return record


def _check_comparable(a: dict[str, Any], b: dict[str, Any]) -> None:
    if a["run_type"] != b["run_type"]:
        raise InputError(
            f"runs of different run types cannot be compared: A ({a['run_id']}) is "
            f"{a['run_type']}, B ({b['run_id']}) is {b['run_type']}; compare two calibration "
            "or two validation runs"
        )
    pa, pb = a.get("partition", {}), b.get("partition", {})
    for level in sorted(set(pa) & set(pb)):
        if pa[level] != pb[level]:
            raise InputError(
                f"runs with different {level} partitions cannot be compared: A trains on "
                f"{pa[level]['train']} and tests on {pa[level]['test']} (origins "
                f"{_span(pa[level]['origins'])}), B trains on {pb[level]['train']} and tests "
                f"on {pb[level]['test']} (origins {_span(pb[level]['origins'])}); evaluate both "
                "with the same [partitions] in ewspipe.toml"
            )


def _span(origins: list[int]) -> str:
    return f"{origins[0]}..{origins[-1]}" if origins else "none"


class _Actuals:
    """Actuals per (snapshot, target), each snapshot loaded (hash-verified) once."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}

    def get(self, snapshot: str, target: str) -> pd.DataFrame:
        key = (snapshot, target)
        if key not in self._frames:
            panel = self._store.load(snapshot)
            if target not in panel.frame.columns:
                raise InputError(f"snapshot {snapshot} has no column {target!r} to score on")
            frame = panel.frame
            self._frames[key] = pd.DataFrame({
                TIME_COLUMN: frame[TIME_COLUMN].to_numpy(),
                panel.unit_column: frame[panel.unit_column].to_numpy(),
                "value": frame[target].to_numpy(),
            })
        return self._frames[key]


def _scored(run_dir: Path, entry: dict[str, Any], actuals: _Actuals) -> tuple[Scored, str | None]:
    forecast, meta = read_forecast(run_dir / entry["predictions"])
    target = meta.get("target")
    if not target:
        raise InputError(f"{run_dir / entry['predictions']}: the forecast does not record its "
                         "target, so it cannot be scored again")
    return join_actuals(forecast, actuals.get(entry["snapshot"], target)), meta.get("config_hash")


def compare_runs(
    settings: Settings,
    run_a: str,
    run_b: str,
    *,
    metric: str = "msle",
    by: TimeIndex = "month",
    max_lag: int | None = None,
    alpha: float = 0.05,
) -> RunComparison:
    """Compare every model that both evaluation runs scored: B relative to A.

    Args:
        run_a, run_b: run ids or unique parts of them (as ``ewspipe evaluate`` prints them).
        metric: metric name (default msle); by / max_lag / alpha: the DM test's options.

    Raises:
        InputError: unknown or ambiguous run id, a forecast run, different run types or
            partitions, no model in common, unknown metric, bad test options.
    """
    runs = RunStore(settings.runs_dir)
    a = _evaluation_record(runs, run_a, "A")
    b = _evaluation_record(runs, run_b, "B")
    _check_comparable(a, b)
    get_metric(metric)  # an unknown name fails before any file is read
    models_a = {m["model"]: m for m in a["models"]}
    models_b = {m["model"]: m for m in b["models"]}
    common = [name for name in models_a if name in models_b]
    only_a = [name for name in models_a if name not in models_b]
    only_b = [name for name in models_b if name not in models_a]
    if not common:
        raise InputError(
            f"runs {a['run_id']} and {b['run_id']} have no model in common (A: "
            f"{', '.join(models_a) or 'none'}; B: {', '.join(models_b) or 'none'})"
        )
    actuals = _Actuals(SnapshotStore(settings.snapshot_dir))
    dir_a, dir_b = runs.path(a["run_id"]), runs.path(b["run_id"])
    results = []
    for name in common:
        ea, eb = models_a[name], models_b[name]
        if ea["level"] != eb["level"]:
            raise InputError(f"model {name!r} is a {ea['level']} model in A but a "
                             f"{eb['level']} model in B; they cannot be compared")
        scored_a, hash_a = _scored(dir_a, ea, actuals)
        scored_b, hash_b = _scored(dir_b, eb, actuals)
        comparison = compare_forecasts(scored_a, scored_b, metric=metric, by=by,
                                       max_lag=max_lag, alpha=alpha)
        results.append(ModelComparison(
            model=name, level=ea["level"], config_hash_a=hash_a, config_hash_b=hash_b,
            snapshot_a=ea["snapshot"], snapshot_b=eb["snapshot"], comparison=comparison,
        ))
    return RunComparison(
        run_a=a["run_id"], run_b=b["run_id"], run_type=a["run_type"],
        metric=results[0].comparison.metric, by=by, models=results, only_a=only_a,
        only_b=only_b,
    )
