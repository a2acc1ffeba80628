"""MLflow tracking of evaluation and forecast runs: offline, no server, never fatal.

Every run that ``flows.modelrun`` commits is mirrored into MLflow once it is stored:

* **Where.** ``[tracking] uri`` in ewspipe.toml; empty (the default) means a SQLite store in
  the state directory, ``sqlite:///<state_dir>/mlflow.db``, with artifacts in
  ``<state_dir>/mlruns``. No server runs; ``mlflow ui --backend-store-uri sqlite:///...``
  (the full ``mlflow`` package, extra ``ewspipe[mlflow-ui]``) browses it.
* **Shape.** One experiment per run type (``ewspipe-calibration``, ``ewspipe-validation``,
  ``ewspipe-forecasting``). Each ewspipe run is a *parent* MLflow run named after the run id
  (tags: run id, kind, snapshots, code commit, dirty flag, release tag, environment; artifact:
  ``run.json`` and the run's ``report/`` folder, HTML and figures: :func:`track_report`
  logs it when it is written after the run), with one *child* run per model.
* **A model's child run.** Params: algorithm, level, target, features, every hyperparameter
  flattened to a dotted key (``hyperparameters.learner_params.n_estimators``) and the config
  hash. Metrics: for each metric the pooled value (``pooled/msle``), each scheme's mean
  (``step_mean/msle``, ``month_mean/msle``, ``sequence_mean/msle``) and the step-wise values
  as an MLflow step series, ``step/msle`` at steps 1..36; plus row counts and timings (the
  month- and sequence-wise values are in the metrics JSON artifact: as series they would
  double the logging time for little use). Tags: ewspipe run id,
  model, snapshot, code commit, dirty flag, release tag, environment (default
  "development"), model status. Artifacts: ``config.json`` and the metrics JSON of the run.
* **Registry.** A forecasting run registers a version of each model and ensemble under the
  model's name, tagged with what made it: config hash, snapshot, code fingerprint, ewspipe
  version, an ensemble's inputs (:func:`ensemble_inputs`) and ``ewspipe.artifact_uri`` (a
  model's artifact, an ensemble's predictions). Its source is a pyfunc model among the
  child run's artifacts (``pyfunc/<name>``) serving the run's stored forecast
  (:mod:`ewspipe.store.pyfunc`), so ``mlflow.pyfunc.load_model("models:/<name>@production")
  .predict(None)`` is the forecast. A release finds its versions by these tags
  (:mod:`ewspipe.release.aliases`); the monthly run is tracked by
  :mod:`ewspipe.store.tracking_monthly`.
* **Never fatal.** Turned off with ``[tracking] enabled = false``. Without MLflow installed the
  result says "unavailable" with the install hint; any error while logging becomes a
  "failed" result and a logged warning. The run's own outputs are already committed when
  tracking starts, so nothing of the run is lost either way.
* **Once.** A run already logged (same ewspipe run id in the experiment) is not logged twice.
* **Fast start.** Creating a SQLite store runs all of MLflow's schema migrations (1-2 s); the
  first new store of a process is kept as a template and copied for later new stores.

``mlflow`` is imported only inside :func:`track_run`; usage telemetry is switched off
(``MLFLOW_DISABLE_TELEMETRY``, unless set) so tracking stays offline, and so is the artifact
progress bar (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``) that saving a pyfunc model would draw.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ewspipe.atomic import write_bytes
from ewspipe.settings import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "INSTALL_HINT",
    "MANAGED_TAG",
    "UI_EXTRA",
    "TrackedModel",
    "TrackedRun",
    "TrackingResult",
    "artifact_location",
    "display_uri",
    "ensemble_inputs",
    "experiment_name",
    "guarded",
    "inputs_tags",
    "open_client",
    "prefetch_tracking",
    "quiet_mlflow",
    "register_version",
    "require_mlflow",
    "store_exists",
    "track_report",
    "track_run",
    "tracking_uri",
    "ui_command",
    "ui_installed",
]

_log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install mlflow-skinny sqlalchemy alembic (or reinstall ewspipe); or set "
                "[tracking] enabled = false in ewspipe.toml")
Status = Literal["logged", "already_logged", "disabled", "unavailable", "failed"]

_MAX_PARAM = 6000  # MLflow's limit on a param value
_MAX_METRICS = 1000  # per log_batch call
_MAX_PARAMS = 100
_NAME_BAD = re.compile(r"[^\w./\- :]")
_SERIES = ("step",)  # schemes logged as step series; all are in the metrics JSON artifact
_QUIET = ("mlflow", "alembic", "sqlalchemy")
_SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mssql")
_CREDENTIALS = re.compile(r"//[^/@\s]+@")


class TrackedModel(Protocol):
    """What tracking reads of a model's result (``flows.modelrun.ModelResult`` has it)."""

    model: str
    level: str
    status: str
    snapshot: str
    artifact: str
    predictions: str
    reused: bool
    rows: int
    n_samples: int
    timings: dict[str, float]
    metrics: dict[str, Any] | None


class TrackedRun(Protocol):
    """What tracking reads of a run (``flows.modelrun.RunResult`` has it; store cannot import
    flows, so the shape is stated here)."""

    run_id: str
    kind: str
    run_type: str
    path: str
    record: dict[str, Any]

    @property
    def models(self) -> Sequence[TrackedModel]: ...


@dataclass(frozen=True)
class TrackingResult:
    """What tracking did for one run; ``warning`` is True when it should have and could not."""

    status: Status
    uri: str | None = None
    experiment: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    model_runs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""

    @property
    def warning(self) -> bool:
        return self.status in ("unavailable", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "warning": self.warning}


def tracking_uri(settings: Settings) -> str:
    """``[tracking] uri``, or the SQLite store in the state directory when it is empty."""
    if settings.tracking.uri:
        return settings.tracking.uri
    return f"sqlite:///{settings.layout.mlflow_db.resolve().as_posix()}"


def artifact_location(settings: Settings) -> str | None:
    """Where new experiments keep artifacts: ``<state_dir>/mlruns``; a server decides itself."""
    if tracking_uri(settings).startswith(("http://", "https://", "databricks")):
        return None
    return settings.layout.mlruns.resolve().as_uri()


UI_EXTRA = "pip install 'ewspipe[mlflow-ui]'"


def ui_command(settings: Settings) -> list[str] | None:
    """The ``mlflow ui`` command line that browses this workspace's tracking store (its
    artifacts included), or None when the store is a server, which serves its own UI.
    ``mlflow ui`` needs the full ``mlflow`` package (:func:`ui_installed`, :data:`UI_EXTRA`):
    ewspipe itself installs only mlflow-skinny. Holds the real URI: print it masked
    (:func:`display_uri`)."""
    uri = tracking_uri(settings)
    root = artifact_location(settings)
    if root is None:
        return None
    return ["mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root", root]


def ui_installed() -> bool:
    """Whether ``mlflow ui`` can serve its pages here: the full package's web app (its built
    pages and Flask); mlflow-skinny has the command but not the UI."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None or importlib.util.find_spec("flask") is None:
        return False
    return (Path(spec.origin).parent / "server" / "js" / "build" / "index.html").is_file()


def display_uri(text: str) -> str:
    """``text`` with any ``user:password@`` of a URI masked (what ewspipe prints)."""
    return _display_uri(text)


def _display_uri(text: str) -> str:
    """``text`` with any ``user:password@`` of a URI masked: results and warnings are printed."""
    return _CREDENTIALS.sub("//***@", text)


def experiment_name(run_type: str) -> str:
    return f"ewspipe-{run_type}"


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


_prefetch: threading.Thread | None = None


def prefetch_tracking(settings: Settings) -> None:
    """Import MLflow and open an existing store in a background thread, so the ~1.5 s this
    takes overlaps the run's model fitting instead of adding to it. :func:`track_run` waits
    for it; a failure here is ignored (track_run meets and reports it)."""
    global _prefetch
    if not settings.tracking.enabled or _prefetch is not None:
        return
    uri = tracking_uri(settings)

    def warm() -> None:
        try:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            # no _quiet_loggers here: logger levels and warning filters are process-wide
            # and the main thread is using them
            from mlflow.tracking import MlflowClient

            if uri.startswith(_SQL_SCHEMES):
                import alembic  # noqa: F401 - the SQL store imports both on first use
                import sqlalchemy  # noqa: F401
            store = _sqlite_file(uri)
            if store is not None and store.is_file():  # never create one from here
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception:  # track_run meets and reports whatever is wrong
            return

    _prefetch = threading.Thread(target=warm, name="ewspipe-mlflow-prefetch", daemon=True)
    _prefetch.start()


def track_run(
    settings: Settings,
    run_result: TrackedRun,
    *,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    environment: str | None = None,
) -> TrackingResult:
    """Log a committed run to MLflow: a parent run plus one child run per model.

    Args:
        settings: ``[tracking]`` (enabled, uri) and the state directory.
        run_result: the stored run, as ``evaluate_models`` / ``forecast_models`` return it.
        configs: per model name, its configuration (``ModelSpec.semantic_dict()`` plus
            ``config_hash``); logged as params. A model without one gets only its level and
            sample count as params (its status and snapshot are tags either way).
        environment: tag value; default ``run_result.record["environment"]`` or
            ``[run] environment``.

    Returns:
        A ``TrackingResult``; it never raises for tracking problems (status "failed" or
        "unavailable", with a warning logged), so a run's outputs are never lost to tracking.
    """
    if _prefetch is not None and settings.tracking.enabled:
        _prefetch.join()
    return guarded(settings, f"run {run_result.run_id}",
                   f"the run's outputs are stored in {run_result.path}",
                   lambda client: _log_run(client, settings, run_result, configs or {},
                                           environment or run_result.record.get("environment")
                                           or settings.run.environment))


def track_report(settings: Settings, run_id: str, run_type: str, report: Path
                 ) -> TrackingResult:
    """Log a stored run's report folder (``report``: the page or its folder; the HTML and
    every figure in it) to the run's MLflow run as artifacts under ``report/``.

    A report is written after its run was tracked (``evaluate --report``, ``evaluate report
    RUN``), so it is logged on its own; written again, it is logged again (same names
    replaced). Never raises: a run that is not in the tracking store is a "failed" result."""
    folder = report if report.is_dir() else report.parent
    stored = f"the report is stored in {folder}"
    if settings.tracking.enabled and not store_exists(tracking_uri(settings)):
        message = (f"the report of run {run_id} is not logged to MLflow: there is no tracking "
                   f"store yet; {stored}")
        _log.warning(message)
        return TrackingResult("failed", uri=_display_uri(tracking_uri(settings)),
                              message=message)
    return guarded(settings, f"the report of run {run_id}", stored,
                   lambda client: _log_report(client, run_id, run_type, folder))


def _log_report(client: MlflowClient, run_id: str, run_type: str, folder: Path
                ) -> TrackingResult:
    name = experiment_name(run_type)
    experiment = client.get_experiment_by_name(name)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`ewspipe.run_id` = '{run_id}' and tags.`ewspipe.role` = 'run'",
        max_results=1) if experiment is not None else []
    if not found:
        raise LookupError(f"run {run_id} is not in MLflow experiment {name} (was tracking "
                          "off when it ran?)")
    parent = found[0].info.run_id
    client.log_artifacts(parent, str(folder), "report")
    return TrackingResult("logged", experiment=name, experiment_id=found[0].info.experiment_id,
                          parent_run_id=parent,
                          message=f"report logged to MLflow run {parent} (artifacts report/)")


def guarded(settings: Settings, what: str, stored: str,
            log: Callable[[MlflowClient], TrackingResult]) -> TrackingResult:
    """The frame every tracking call shares: off when ``[tracking] enabled`` is false,
    "unavailable" without MLflow, "failed" (a logged warning) on any error of ``log``; never
    raises, since the thing tracked (``what``; ``stored`` says where it is) is already kept.
    Adds the store's display URI and the seconds taken to ``log``'s result."""
    if not settings.tracking.enabled:
        return TrackingResult("disabled", message="tracking is off ([tracking] enabled = false)")
    uri = tracking_uri(settings)
    shown = _display_uri(uri)
    started = time.perf_counter()
    try:
        require_mlflow(uri)
    except ImportError as exc:
        message = (f"MLflow tracking unavailable ({_short(exc, 120)}); {what} is stored but "
                   f"not tracked. Install it: {INSTALL_HINT}")
        _log.warning(message)
        return TrackingResult("unavailable", uri=shown, message=message)
    try:
        with _quiet_loggers():
            result = log(open_client(uri))
    except Exception as exc:  # tracking must never take the tracked work down with it
        message = (f"MLflow tracking of {what} failed ({_display_uri(_short(exc))}); {stored}. "
                   f"Tracking store: {shown}")
        _log.warning(message)
        return TrackingResult("failed", uri=shown,
                              seconds=round(time.perf_counter() - started, 3), message=message)
    return TrackingResult(**{**asdict(result), "uri": shown,
                             "seconds": round(time.perf_counter() - started, 3)})


def require_mlflow(uri: str) -> None:
    """Import MLflow (telemetry off: tracking stays offline) and check the SQL store's
    modules are there; ImportError names what is missing."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # saving a pyfunc model copies its files with a progress bar on stderr: not ours to show
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow.tracking  # noqa: F401

    if uri.startswith(_SQL_SCHEMES):
        for module in ("sqlalchemy", "alembic"):  # mlflow-skinny's SQL store needs both
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"No module named '{module}'")


def store_exists(uri: str) -> bool:
    """False only for a SQLite store whose file is not there yet (a server always counts)."""
    store = _sqlite_file(uri)
    return store is None or store.is_file()


def open_client(uri: str) -> MlflowClient:
    """The client of the store at ``uri``; a new SQLite store is created from the process's
    template (call inside :func:`quiet_mlflow`, after :func:`require_mlflow`)."""
    from mlflow.tracking import MlflowClient

    store = _sqlite_file(uri)
    fresh = _prepare_sqlite(store) if store is not None else False
    client = MlflowClient(tracking_uri=uri)
    if store is not None and fresh:
        client.search_experiments(max_results=1)  # the store initialises its tables
        _keep_template(store)
    return client


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """MLflow and alembic announce table creation at INFO on stderr; keep only warnings, and
    drop the deprecation notices MLflow's own SQLAlchemy use raises (nothing ewspipe can fix)."""
    loggers = [logging.getLogger(name) for name in _QUIET]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module=r"sqlalchemy\.")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


quiet_mlflow = _quiet_loggers  # the public name, for store.tracking_monthly and release


_template: bytes | None = None  # a newly initialised, empty SQLite store of this process


def _sqlite_file(uri: str) -> Path | None:
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def _prepare_sqlite(path: Path) -> bool:
    """Create the store from the template if there is none yet, then open it once with the
    standard library, which fails at once where MLflow would retry for about 100 seconds
    (unwritable or non-file path). True if the store still needs MLflow to initialise it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    if fresh and _template is not None:
        try:  # never replaces a store another process just created
            write_bytes(path, _template, exclusive=True)
            fresh = False
        except OSError:
            fresh = not path.exists()
    connection = sqlite3.connect(path, timeout=5)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    finally:
        connection.close()
    return fresh


def _keep_template(path: Path) -> None:
    """Remember a just-initialised store as the template, if it holds no run yet."""
    global _template
    if _template is not None:
        return
    data = path.read_bytes()
    copy = sqlite3.connect(":memory:")
    try:  # check the very bytes kept, not the file another process may be writing to
        copy.deserialize(data)
        runs = copy.execute("SELECT count(*) FROM runs").fetchone()[0]
        experiments = copy.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return
    finally:
        copy.close()
    if runs == 0 and experiments <= 1:  # only MLflow's own "Default" experiment
        _template = data


# --------------------------------------------------------------------------- logging


def _log_run(
    client: MlflowClient,
    settings: Settings,
    run: TrackedRun,
    configs: Mapping[str, Mapping[str, Any]],
    environment: str,
) -> TrackingResult:
    name = experiment_name(run.run_type)
    experiment_id = _experiment(client, name, artifact_location(settings), run.run_type)
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`ewspipe.run_id` = '{run.run_id}' and tags.`ewspipe.role` = 'run'",
        max_results=1,
    )
    if existing:
        parent = existing[0].info.run_id
        return TrackingResult("already_logged", experiment=name, experiment_id=experiment_id,
                              parent_run_id=parent,
                              message=f"run {run.run_id} was already logged as {parent}")

    code = run.record.get("code", {})
    common = {
        "ewspipe.run_id": run.run_id,
        "ewspipe.kind": run.kind,
        "ewspipe.run_type": run.run_type,
        "ewspipe.code_commit": str(code.get("commit", "unknown")),
        "ewspipe.code_dirty": str(bool(code.get("dirty", False))).lower(),
        "ewspipe.release_tag": str(code.get("tag") or "none"),
        "ewspipe.environment": environment,
        "mlflow.source.name": "ewspipe",
        "mlflow.source.git.commit": str(code.get("commit", "unknown")),
    }
    snapshots = run.record.get("snapshots", {})
    parent = client.create_run(experiment_id, run_name=run.run_id, tags={
        **common, "ewspipe.role": "run",
        "ewspipe.snapshots": ",".join(f"{lvl}:{s['id']}" for lvl, s in sorted(snapshots.items())),
        "ewspipe.models": ",".join(m.model for m in run.models),
    }).info.run_id
    children: dict[str, str] = {}
    current = parent
    try:
        run_dir = Path(run.path)
        if (run_dir / "run.json").is_file():
            client.log_artifact(parent, str(run_dir / "run.json"))
        if (run_dir / "report").is_dir():
            client.log_artifacts(parent, str(run_dir / "report"), "report")
        for model in run.models:
            current = client.create_run(experiment_id, run_name=model.model, tags={
                **common, **_model_tags(model, configs.get(model.model)),
                "mlflow.parentRunId": parent,
            }).info.run_id
            children[model.model] = current
            _log_model(client, current, model, configs.get(model.model), run_dir,
                       step_metrics=frozenset(settings.tracking.step_metrics))
            if run.kind == "forecast":
                _register(client, settings, run, model, current,
                          configs.get(model.model), configs)
            client.set_terminated(current, "FINISHED")
        client.set_terminated(parent, "FINISHED")
    except Exception:
        for run_id in {parent, current}:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
        raise
    return TrackingResult("logged", experiment=name, experiment_id=experiment_id,
                          parent_run_id=parent, model_runs=children,
                          message=f"logged to MLflow experiment {name} as run {parent}")


def _experiment(client: MlflowClient, name: str, location: str | None, run_type: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=location,
                                            tags={"ewspipe.run_type": run_type})
        except Exception:  # created meanwhile by another process: use theirs
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _ensemble(model: TrackedModel) -> Mapping[str, Any] | None:
    """An ensemble's definition, if the result is one (``flows.ensemble_run`` adds it)."""
    found = getattr(model, "ensemble", None)
    return found if isinstance(found, Mapping) else None


def _model_tags(model: TrackedModel, config: Mapping[str, Any] | None) -> dict[str, str]:
    config = config if config is not None else _ensemble(model)
    return {
        "ewspipe.role": "model",
        "ewspipe.model_kind": str(getattr(model, "kind", "model")),
        "ewspipe.model": model.model,
        "ewspipe.level": model.level,
        "ewspipe.model_status": model.status,
        "ewspipe.snapshot": model.snapshot,
        "ewspipe.artifact": model.artifact,
        "ewspipe.reused": str(model.reused).lower(),
        "ewspipe.config_hash": str((config or {}).get("config_hash", "unknown")),
    }


def _log_model(
    client: MlflowClient,
    run_id: str,
    model: TrackedModel,
    config: Mapping[str, Any] | None,
    run_dir: Path,
    *,
    step_metrics: frozenset[str],
) -> None:
    from mlflow.entities import Metric, Param

    params = _params(model, config)
    items = list(params.items())
    for lo in range(0, len(items), _MAX_PARAMS):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[lo:lo + _MAX_PARAMS]])
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, s) for k, v, s in _metrics(model, step_metrics)]
    for lo in range(0, len(metrics), _MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[lo:lo + _MAX_METRICS])
    if config is not None:
        client.log_text(run_id, json.dumps(dict(config), indent=2, default=str) + "\n",
                        "config.json")
    metrics_file = run_dir / "metrics" / f"{model.model}.json"
    if metrics_file.is_file():
        client.log_artifact(run_id, str(metrics_file), "metrics")


def _register(
    client: MlflowClient,
    settings: Settings,
    run: TrackedRun,
    model: TrackedModel,
    child_run_id: str,
    config: Mapping[str, Any] | None,
    configs: Mapping[str, Mapping[str, Any]],
) -> None:
    """A forecasting run's model (its hash-verified artifact) or ensemble (its predictions)
    becomes a new version of the registered model of the same name, tagged with what
    determines it (config hash, snapshot, code fingerprint; for an ensemble also the config
    hashes of everything it combines), so a release can find exactly the version it
    validated (ewspipe.release.aliases)."""
    from ewspipe import __version__
    from ewspipe.provenance import code_fingerprint

    config = config if config is not None else _ensemble(model)
    source = (settings.artifact_dir / model.artifact if model.artifact
              else Path(run.path) / model.predictions)
    tags = {
        "ewspipe.run_id": run.run_id,
        "ewspipe.model_kind": str(getattr(model, "kind", "model")),
        "ewspipe.level": model.level,
        "ewspipe.snapshot": model.snapshot,
        "ewspipe.status": model.status,
        "ewspipe.config_hash": str((config or {}).get("config_hash", "unknown")),
        "ewspipe.code_fingerprint": code_fingerprint(),
        "ewspipe.ewspipe_version": __version__,
        "ewspipe.source": "forecast",
    }
    if _ensemble(model) is not None:
        definitions = {**configs, model.model: config or {}}
        tags.update(inputs_tags(ensemble_inputs(model.model, definitions)))
    predictions = Path(run.path) / model.predictions
    register_version(client, model.model, source=source.resolve().as_uri(), tags=tags,
                     run_id=child_run_id, level=model.level,
                     forecast=predictions if predictions.is_file() else None)


def ensemble_inputs(name: str, definitions: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, str]:
    """Config hash of every model and ensemble the ensemble ``name`` combines, directly
    (``members``) or through the ensemble it is reconciled with (``reconcile_with``).

    An ensemble's own config hash covers only its definition; two runs of it with a member's
    hyperparameters changed differ here. ``definitions``: name -> a mapping with
    ``config_hash`` and, for an ensemble, ``members`` and ``reconcile_with``; a name without
    one maps to "unknown" (which matches nothing)."""
    found: dict[str, str] = {}
    todo = [name]
    while todo:
        entry = definitions.get(todo.pop()) or {}
        links = [*(entry.get("members") or ()), *([entry["reconcile_with"]]
                                                 if entry.get("reconcile_with") else [])]
        for dep in map(str, links):
            if dep not in found and dep != name:
                found[dep] = str((definitions.get(dep) or {}).get("config_hash", "unknown"))
                todo.append(dep)
    return dict(sorted(found.items()))


def inputs_tags(inputs: Mapping[str, str]) -> dict[str, str]:
    """The version tags naming an ensemble's inputs: their names, and one digest of their
    names and config hashes (matched by a release)."""
    canonical = json.dumps(sorted(inputs.items()), separators=(",", ":"))
    return {"ewspipe.inputs": _value(",".join(sorted(inputs))),
            "ewspipe.inputs_hash": hashlib.sha256(canonical.encode()).hexdigest()}


MANAGED_TAG = "ewspipe.managed"


def register_version(client: MlflowClient, name: str, *, source: str, tags: Mapping[str, str],
                     run_id: str | None = None, level: str | None = None,
                     forecast: Path | None = None, spare: Path | None = None) -> str:
    """A new version of the registered model ``name`` (created, marked as ewspipe's, when
    it does not exist); returns the version number.

    With ``forecast`` (the stored forecast file of what is registered) the version gets a
    pyfunc flavour (:mod:`ewspipe.store.pyfunc`): its source is a pyfunc model serving that
    forecast, logged among the artifacts of ``run_id`` (without a run: saved under
    ``spare``), and ``source`` (ewspipe's own artifact) becomes the tag
    ``ewspipe.artifact_uri``. Without it the version's source is ``source`` itself."""
    from mlflow.exceptions import MlflowException

    tags = {**tags, "ewspipe.artifact_uri": source}
    if forecast is not None:
        from ewspipe.store.pyfunc import log_forecast_model

        metadata = {k: _value(str(v)) for k, v in tags.items()}
        source = log_forecast_model(client, run_id, forecast, spare=spare, name=name,
                                    metadata=metadata)

    try:
        client.create_registered_model(
            name, tags={MANAGED_TAG: "true"},
            description=f"ewspipe model or ensemble {name}"
                        + (f" (level {level})" if level else ""))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=source, run_id=run_id,
                                          tags={k: _value(v) for k, v in tags.items()})
    return str(version.version)


def _key(text: str) -> str:
    return _NAME_BAD.sub("_", text)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}", v)
    else:
        yield prefix, value


def _params(model: TrackedModel, config: Mapping[str, Any] | None) -> dict[str, str]:
    params: dict[str, Any] = {"level": model.level, "n_samples": model.n_samples}
    if config is not None:
        features: Sequence[str] = list(config.get("features", ()))
        params.update({
            "algorithm": config.get("algorithm"),
            "target": config.get("target"),
            "level": config.get("level", model.level),
            "features": "; ".join(features) if features else "none",
            "n_features": len(features),
            "config_hash": config.get("config_hash"),
        })
        params.update(_flatten("hyperparameters", config.get("hyperparameters") or {}))
    elif (ensemble := _ensemble(model)) is not None:
        members: Sequence[str] = list(ensemble.get("members", ()))
        params.update({
            "algorithm": "ensemble",
            "members": "; ".join(members),
            "n_members": len(members),
            "aggregation": ensemble.get("aggregation"),
            "samples": ensemble.get("samples"),
            "reconcile_with": ensemble.get("reconcile_with"),
            "config_hash": ensemble.get("config_hash"),
        })
        params.update(_flatten("weights", ensemble.get("weights") or {}))
    return {_key(k): _value(v) for k, v in params.items() if v is not None}


def _metrics(model: TrackedModel, step_metrics: frozenset[str]) -> Iterator[tuple[str, float, int]]:
    """(name, value, step) triples; undefined values (None) are left out; series over steps
    only for ``step_metrics`` ([tracking] step_metrics)."""
    yield "rows", float(model.rows), 0
    for phase, seconds in model.timings.items():
        yield f"seconds/{_key(phase)}", float(seconds), 0
    ev = model.metrics
    if not ev:
        return
    yield "n_scored", float(ev["n_scored"]), 0
    yield "n_unscored", float(ev["n_unscored"]), 0
    for label, value in ev["pooled"].items():
        if value is not None:
            yield f"pooled/{_key(label)}", float(value), 0
    for scheme, means in ev["means"].items():
        for label, value in means.items():
            if value is not None:
                yield f"{scheme}_mean/{_key(label)}", float(value), 0
    for scheme, rows in ev["groups"].items():
        if scheme not in _SERIES:
            continue
        for row in rows:
            if row["value"] is not None and row["metric"] in step_metrics:
                yield f"{scheme}/{_key(row['metric'])}", float(row["value"]), int(row["group"])
