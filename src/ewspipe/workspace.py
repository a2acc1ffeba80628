"""A workspace: its settings, where its state lives, and its configured environments.

``Workspace.open(path)`` reads the settings the way the CLI does; ``ws.layout`` answers every
"where does X live" (:mod:`ewspipe.layout`), ``ws.env(name)`` is one configured environment
(development, staging, production or whatever ``[run] environments`` names) that runs the
monthly graph. Thin by design: the work is done by :mod:`ewspipe.flows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ewspipe.arguments import as_path, names_list
from ewspipe.catalog import Catalog, load_catalog
from ewspipe.errors import InputError
from ewspipe.flows.ingest import CheckedImport, import_panel_checked
from ewspipe.flows.modelrun import RunResult, evaluate_models, forecast_models
from ewspipe.flows.monthly import MonthlyRun, run_monthly
from ewspipe.layout import EnvironmentLayout, StateLayout
from ewspipe.partitions import RunType
from ewspipe.settings import CONFIG_NAME, Settings, load_settings

__all__ = ["Environment", "Workspace"]


@dataclass(frozen=True)
class Environment:
    """One configured environment of a workspace: its name, its folder and its monthly run."""

    workspace: Workspace
    name: str

    @property
    def layout(self) -> EnvironmentLayout:
        return self.workspace.layout.env(self.name)

    @property
    def publishes(self) -> bool:
        """Whether a monthly run here moves published pointers (``[run]
        publish_environments``)."""
        return self.name in self.workspace.settings.run.publish_environments

    def run_monthly(self, executor: str | None = "local", **options: Any) -> MonthlyRun:
        """This month's run in this environment (:func:`ewspipe.flows.monthly.run_monthly`:
        ``lock_timeout``, ``progress``, ``catalog``, ``allow_engine_change``, ``alerts``);
        ``executor`` ``None`` takes ``[run] executor``."""
        return run_monthly(self.workspace.settings, environment=self.name, executor=executor,
                           **options)


@dataclass(frozen=True)
class Workspace:
    """Settings plus the on-disk layout they imply."""

    settings: Settings

    @classmethod
    def open(cls, path: str | Path | None = None, *, state_dir: str | Path | None = None
             ) -> Workspace:
        """The workspace of ``path``: a settings file, or a folder holding ``ewspipe.toml``;
        without one, what the CLI finds ($EWSPIPE_CONFIG, ./ewspipe.toml, else defaults).
        ``state_dir`` overrides the settings' state directory."""
        config: Path | None = None
        if path is not None:
            config = as_path(path, "path")
            if config.is_dir():
                config = config / CONFIG_NAME
                if not config.is_file():
                    raise InputError(f"{path}: no {CONFIG_NAME} in this folder; pass the "
                                     "settings file or a folder holding one")
        return cls(load_settings(config, state_dir=None if state_dir is None
                                 else as_path(state_dir, "state_dir")))

    @property
    def layout(self) -> StateLayout:
        return self.settings.layout

    @property
    def environments(self) -> tuple[str, ...]:
        """The configured environment names (``[run] environments``)."""
        return tuple(self.settings.run.environments)

    def env(self, name: str | None = None) -> Environment:
        """Environment ``name``; without one the default (``[run] environment``)."""
        name = self.settings.run.environment if name is None else name
        if name not in self.environments:
            raise InputError(f"environment {name!r} is not an environment of this workspace; "
                             f"use one of {', '.join(self.environments)} (ewspipe.toml [run] "
                             "environments)", parameter="environment")
        return Environment(self, name)

    @property
    def production(self) -> Environment:
        """The environment releases serve (the first of ``[run] publish_environments``)."""
        return self.env(self.settings.run.production_environment)

    def import_panel(self, path: str | Path, level: str, *,
                     count_columns: Sequence[str] | None = None,
                     missing: str = "error") -> CheckedImport:
        """Validate a cm/pgm table and store it as an immutable snapshot, drift-checked
        (``ewspipe data import panel``); runs then read the newest snapshot of each level."""
        return import_panel_checked(self.settings, as_path(path, "path"), level,
                                    count_columns=names_list(count_columns, "count_columns"),
                                    missing=missing)

    def catalog(self) -> Catalog:
        return load_catalog(self.settings.models_dir, ensembles_dir=self.settings.ensembles_dir)

    def evaluate(self, run_type: RunType | str = RunType.CALIBRATION, *,
                 names: Sequence[str] | None = None, level: str | None = None,
                 snapshot_refs: Sequence[str] | None = None, catalog: Catalog | None = None,
                 executor: str = "local") -> RunResult:
        """Rolling-origin evaluation (:func:`ewspipe.flows.modelrun.evaluate_models`)."""
        return evaluate_models(self.settings, catalog or self.catalog(), run_type=run_type,
                               names=names_list(names), level=level,
                               snapshot_refs=names_list(snapshot_refs, "snapshot_refs"),
                               executor=executor)

    def forecast(self, *, names: Sequence[str] | None = None, level: str | None = None,
                 snapshot_refs: Sequence[str] | None = None, catalog: Catalog | None = None,
                 executor: str = "local") -> RunResult:
        """The 36-month forecast (:func:`ewspipe.flows.modelrun.forecast_models`); its
        artifacts are the ones the monthly run reuses."""
        return forecast_models(self.settings, catalog or self.catalog(),
                               names=names_list(names), level=level,
                               snapshot_refs=names_list(snapshot_refs, "snapshot_refs"),
                               executor=executor)
