"""Backtest evaluations: the rolling-origin evaluation on every ``[partitions.backtest]``
window, so that a model is chosen on several train ends rather than tuned to one window.

Each window is an ordinary evaluation run (its own train end, fits, cache, artifacts and run
folder) of run type ``backtest``; its ``run.json`` names the ``window`` and carries a
``backtest`` block (the id shared by the windows of one invocation, every window's label and
the config hash of each model and ensemble evaluated). :func:`stored_backtest` reads the
latest score of each model on each window back from the run store, for the catalog page.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewspipe.catalog import Catalog
from ewspipe.evaluation.stability import Stability, rank_stability
from ewspipe.flows.ensemble_run import plan_run
from ewspipe.flows.executors import parse_executor
from ewspipe.flows.modelrun import RunResult, evaluate_window
from ewspipe.flows.runner import Progress
from ewspipe.settings import Settings
from ewspipe.store.runs import RunStore

__all__ = ["METRIC", "BacktestRun", "evaluate_backtest", "stored_backtest"]

#: the metric the windows are compared on (pooled, raw counts)
METRIC = "msle"


@dataclass
class BacktestRun:
    """The windows' runs of one backtest (label -> run, oldest window first)."""

    id: str
    windows: dict[str, RunResult] = field(default_factory=dict)

    def scores(self, metric: str = METRIC) -> dict[str, dict[str, float | None]]:
        """Model or ensemble -> window -> its pooled ``metric`` (plan order)."""
        out: dict[str, dict[str, float | None]] = {}
        for label, run in self.windows.items():
            for m in run.models:
                pooled = (m.metrics or {}).get("pooled", {})
                out.setdefault(m.model, {})[label] = pooled.get(metric)
        return out

    def stability(self, metric: str = METRIC) -> dict[str, Stability]:
        return rank_stability(self.scores(metric), list(self.windows))

    def to_dict(self) -> dict[str, Any]:
        windows = {}
        for label, run in self.windows.items():
            part = next(iter(run.record["partition"].values()))
            windows[label] = {"run_id": run.run_id, "path": run.path, "train": part["train"],
                              "test": part["test"],
                              "alerts": len(run.record.get("alerts") or []),
                              "implausible": run.record.get("implausible") or []}
        pooled: dict[str, dict[str, Any]] = {}
        kinds: dict[str, str] = {}
        for label, run in self.windows.items():
            for m in run.models:
                pooled.setdefault(m.model, {})[label] = (m.metrics or {}).get("pooled")
                kinds[m.model] = m.kind
        stability = self.stability()
        return {"kind": "evaluate", "run_type": "backtest", "backtest_id": self.id,
                "metric": METRIC, "windows": windows,
                "models": {name: {"kind": kinds[name], "pooled": by_window,
                                  **stability[name].to_dict()}
                           for name, by_window in pooled.items()}}


def evaluate_backtest(
    settings: Settings,
    catalog: Catalog,
    *,
    names: Sequence[str] | None = None,
    level: str | None = None,
    snapshot_refs: Sequence[str] | None = None,
    executor: str = "local",
    progress: Progress | None = None,
    deliver: bool = True,
) -> BacktestRun:
    """Evaluate the models (as :func:`~ewspipe.flows.modelrun.evaluate_models` does) on
    every backtest window, oldest first: one stored run per window.

    Raises:
        SettingsError: ``[partitions.backtest]`` is invalid for these partitions.
    """
    windows = settings.partition_scheme().backtest()  # bad windows before anything runs
    parse_executor(executor)
    plan = plan_run(catalog, names, level)
    configs = {s.name: s.config_hash for s in [*plan.models, *plan.ensembles]}
    run = BacktestRun(id=uuid.uuid4().hex[:12])
    labels = [str(p.window) for p in windows]
    for label in labels:
        run.windows[label] = evaluate_window(
            settings, catalog, window=label, names=names, level=level,
            snapshot_refs=snapshot_refs, executor=executor, progress=progress,
            deliver=deliver,
            extra={"backtest": {"id": run.id, "windows": labels, "configs": configs}})
    return run


def stored_backtest(runs_dir: Path, windows: Sequence[str],
                    configs: Mapping[str, str] | None = None, *,
                    metric: str = METRIC) -> dict[str, dict[str, float | None]]:
    """Model -> window -> the latest stored backtest score on each of ``windows``; with
    ``configs`` (name -> config hash), only scores of those definitions (an edited model's
    old scores are not its scores). Runs stored before the backtest run type have none."""
    found: dict[str, dict[str, float | None]] = {}
    for record in RunStore(runs_dir).list():  # oldest first: the latest score wins
        window = record.get("window")
        if record.get("run_type") != "backtest" or window not in windows:
            continue
        hashes = (record.get("backtest") or {}).get("configs") or {}
        for entry in record.get("models") or []:
            name = entry.get("model")
            if configs is not None and (name not in configs or hashes.get(name) != configs[name]):
                continue
            pooled = (entry.get("metrics") or {}).get("pooled") or {}
            found.setdefault(name, {})[window] = pooled.get(metric)
    return found
