"""Where everything lives under the state directory: the one module that knows the layout.

Every other module asks a :class:`StateLayout` (``settings.layout``) or one environment's
:class:`EnvironmentLayout` (``settings.layout.env(name)``) for a location instead of joining
strings onto the state directory, so moving a folder is a change here only
(``tests/test_layout_only.py`` enforces it).

The state directory holds what is shared by every environment (snapshots, downloads, the
content-addressed artifact cache, the ``ewspipe evaluate``/``forecast`` run records, MLflow's
default store, sweeps, staging) and one folder per environment (``<state>/<env>/``: its lock,
task cache, prediction store, published pointers, state database, reports and alert log).
Trained models are cached once, in ``<state>/artifacts``: the artifact key names model, run
type, config hash, snapshot, cut-off and code fingerprint, so ``ewspipe forecast`` and every
environment's monthly run reuse each other's fitted models.
"""

from __future__ import annotations

from pathlib import Path

from ewspipe.errors import InputError

__all__ = ["EnvironmentLayout", "StateFolder", "StateLayout"]


class StateFolder:
    """What the workspace state folder and an environment's folder both hold: an alert log,
    alert log files, online evaluations, output-drift reports, a state database and files
    that records name by their path relative to the folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.root))

    @property
    def alerts_log(self) -> Path:
        """Every alert routed here, one JSON per line (``alerts.jsonl``)."""
        return self.root / "alerts.jsonl"

    @property
    def logs(self) -> Path:
        """Per-severity alert log files (``logs/``)."""
        return self.root / "logs"

    @property
    def online(self) -> Path:
        """Online evaluations (``online/``)."""
        return self.root / "online"

    @property
    def online_summary(self) -> Path:
        """The latest online evaluation's summary (``online/summary.json``)."""
        return self.online / "summary.json"

    @property
    def output_drift_reports(self) -> Path:
        """Output-drift reports, one JSON per run (``qa/output_drift/``)."""
        return self.root / "qa" / "output_drift"

    @property
    def state_db(self) -> Path:
        """The SQLite state database when ``[run] state_url`` is empty (``state.db``)."""
        return self.root / "state.db"

    @property
    def lock(self) -> Path:
        """The lock of one writer at a time (``run.lock``): an environment's monthly run, or
        the state folder's evaluate/forecast runs."""
        return self.root / "run.lock"

    @property
    def tasks(self) -> Path:
        """The runner's task cache (``tasks/``): the monthly run's in an environment's folder,
        evaluate/forecast's in the state folder."""
        return self.root / "tasks"

    @property
    def work(self) -> Path:
        """Intermediate outputs of tasks (``work/``), named by task key."""
        return self.root / "work"

    def resolve(self, relative: str | Path) -> Path:
        """The file a record names by its path relative to this folder."""
        return self.root / relative

    def relative(self, path: Path) -> str:
        """``path`` as records store it: relative to this folder, POSIX separators."""
        return Path(path).relative_to(self.root).as_posix()


class StateLayout(StateFolder):
    """The whole state directory (``[workspace] state_dir``)."""

    @property
    def snapshots(self) -> Path:
        """Imported, immutable panel snapshots, shared by every environment."""
        return self.root / "snapshots"

    @property
    def downloads(self) -> Path:
        """Downloaded source files (``ewspipe data pull ucdp``)."""
        return self.root / "downloads"

    @property
    def artifacts(self) -> Path:
        """THE artifact cache: trained models of evaluate, forecast and every monthly run."""
        return self.root / "artifacts"

    @property
    def runs(self) -> Path:
        """Records of ``ewspipe evaluate``/``forecast`` runs (``runs/<run id>/``)."""
        return self.root / "runs"

    @property
    def mlflow_db(self) -> Path:
        """MLflow's default tracking database (``[tracking] uri`` empty)."""
        return self.root / "mlflow.db"

    @property
    def mlruns(self) -> Path:
        """MLflow's default artifact root."""
        return self.root / "mlruns"

    @property
    def mlflow_models(self) -> Path:
        """Pyfunc models of registry versions made without an MLflow run (a release
        registering staging evidence); the others are among their run's artifacts."""
        return self.mlruns / "registered"

    @property
    def sweeps(self) -> Path:
        """Hyperparameter sweep studies (``sweeps/<model>.db``)."""
        return self.root / "sweeps"

    @property
    def sweep_tasks(self) -> Path:
        """The runner's task cache of sweep trials (``sweeps/tasks``)."""
        return self.sweeps / "tasks"

    def sweep_db(self, model: str) -> Path:
        """The SQLite file holding every study of ``model``."""
        return self.sweeps / f"{model}.db"

    @property
    def staging(self) -> Path:
        """Staging reports of release candidates (``staging/<candidate>_<snapshots>/``)."""
        return self.root / "staging"

    @property
    def staging_sides(self) -> Path:
        """The state directories of staged sides (each a :class:`StateLayout` itself)."""
        return self.staging / "sides"

    @property
    def staging_artifacts(self) -> Path:
        """The artifact cache every staged side shares (linked as each side's artifacts)."""
        return self.staging / "artifacts"

    def staging_report(self, name: str) -> Path:
        """The folder of one staging report."""
        return self.staging / name

    @property
    def cache(self) -> Path:
        """Cached command results (``cache/<name>.json``; used in staged sides' states)."""
        return self.root / "cache"

    def cached(self, name: str) -> Path:
        return self.cache / f"{name}.json"

    def env(self, name: str) -> EnvironmentLayout:
        """The folder of environment ``name`` (any name; :class:`ewspipe.workspace.Workspace`
        checks it against the configured environments)."""
        return EnvironmentLayout(self, name)


class EnvironmentLayout(StateFolder):
    """One environment's folder ``<state>/<name>/``: what its monthly runs read and write."""

    def __init__(self, state: StateLayout, name: str) -> None:
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise InputError(f"environment {name!r}: not a folder name; name environments "
                             "with letters, digits, - and _ (ewspipe.toml [run] environments)")
        super().__init__(state.root / name)
        self.name = name
        self.state = state

    def __repr__(self) -> str:
        return f"EnvironmentLayout({self.name!r}, {str(self.root)!r})"

    @property
    def artifacts(self) -> Path:
        """The shared artifact cache (``<state>/artifacts``, not per environment)."""
        return self.state.artifacts

    @property
    def predictions(self) -> Path:
        """The Hive-partitioned prediction store (``predictions/``)."""
        return self.root / "predictions"

    @property
    def ensemble_work(self) -> Path:
        """Ensemble forecasts before they are stored (``work/ensembles/``)."""
        return self.work / "ensembles"

    @property
    def reports(self) -> Path:
        """Monthly run reports (``reports/``)."""
        return self.root / "reports"

    @property
    def published(self) -> Path:
        """The published pointer per level and target (``published/<level>/<target>.json``)."""
        return self.root / "published"

    @property
    def legacy_artifacts(self) -> Path:
        """Where monthly runs kept artifacts before the shared cache (``<env>/artifacts``);
        code older than the shared cache still writes there (staged production sides)."""
        return self.root / "artifacts"
