"""MLflow record of the monthly run (``ewspipe run``): what each environment ran, and for a
publishing environment (production) which model versions made its forecasts.

* **Every monthly run** (any environment, tracking on) becomes one MLflow run in the
  experiment ``ewspipe-monthly``, named after the run id. Tags: run id, environment, status,
  release tag (of the published pointers, or the record's ``release``; "none" otherwise),
  code fingerprint, ewspipe version, snapshots, QA result, published levels. Metrics: seconds,
  tasks run and reused, failed QA checks, alerts. Artifacts: ``run.json`` (the run's
  summary) and the run's report.
* **A publishing environment's run** (``[run] publish_environments``, production by default)
  also registers one model version per *deployed* model and ensemble it forecast: source a
  pyfunc model serving the forecast the environment stored (among the run's artifacts,
  ``pyfunc/<name>``), ``ewspipe.artifact_uri`` the environment's own artifact (an ensemble:
  its stored predictions), tags as a forecast run's
  versions (config hash, snapshot, code fingerprint, ensemble inputs) plus
  ``ewspipe.source = monthly``, the environment, the monthly run id and the release tag.
  These versions record what production *ran* (retrained on each month's data); the
  ``production`` alias stays on the version the release validated
  (:mod:`ewspipe.release.aliases`), so it keeps meaning "what was staged and promoted".
  Development and staging runs register nothing: they are not what users receive.
* **Once, never fatal:** a run id already in the experiment is not logged again; any
  failure is a "failed" result with a logged warning, the run itself is already stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ewspipe import __version__
from ewspipe.layout import StateFolder
from ewspipe.provenance import code_fingerprint
from ewspipe.settings import Settings
from ewspipe.store.prediction_store import PredictionStore
from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.store.tracking import (
    TrackingResult,
    _experiment,
    artifact_location,
    ensemble_inputs,
    guarded,
    inputs_tags,
    register_version,
)

__all__ = ["MONTHLY_EXPERIMENT", "release_tag_of", "track_monthly_run"]

_log = logging.getLogger(__name__)

MONTHLY_EXPERIMENT = "ewspipe-monthly"


def release_tag_of(doc: Mapping[str, Any] | MonthlyRunRecord) -> str | None:
    """The release a monthly run ran under (:attr:`MonthlyRunRecord.release_tag`)."""
    return _record(doc).release_tag


def _record(doc: Mapping[str, Any] | MonthlyRunRecord) -> MonthlyRunRecord:
    return doc if isinstance(doc, MonthlyRunRecord) else MonthlyRunRecord.from_dict(dict(doc))


def track_monthly_run(settings: Settings,
                      doc: Mapping[str, Any] | MonthlyRunRecord) -> TrackingResult:
    """Log a stored monthly run (its record, or the record's dict) to MLflow; see the
    module doc.

    Never raises for tracking problems: the result says "disabled", "unavailable",
    "already_logged", "logged" or "failed" (with a logged warning)."""
    record = _record(doc)
    return guarded(settings, f"monthly run {record.run_id}",
                   f"the run is stored in {record.state}",
                   lambda client: _log(client, settings, record))


def _log(client: Any, settings: Settings, rec: MonthlyRunRecord) -> TrackingResult:
    run_id = rec.run_id
    experiment_id = _experiment(client, MONTHLY_EXPERIMENT, artifact_location(settings),
                                "monthly")
    existing = client.search_runs([experiment_id],
                                  filter_string=f"tags.`ewspipe.run_id` = '{run_id}'",
                                  max_results=1)
    if existing:
        found = existing[0].info.run_id
        return TrackingResult("already_logged", experiment=MONTHLY_EXPERIMENT,
                              experiment_id=experiment_id, parent_run_id=found,
                              message=f"monthly run {run_id} was already logged as {found}")
    environment = rec.environment or settings.run.environment
    tag = rec.release_tag
    published = rec.outputs.published or []
    code = rec.code or {}
    tags = {
        "ewspipe.run_id": run_id, "ewspipe.kind": "monthly", "ewspipe.role": "run",
        "ewspipe.environment": environment, "ewspipe.status": str(rec.status),
        "ewspipe.release_tag": tag or "none",
        "ewspipe.code_fingerprint": code_fingerprint(), "ewspipe.ewspipe_version": __version__,
        "ewspipe.code_commit": str(code.get("commit", "unknown")),
        "ewspipe.snapshots": ",".join(f"{lvl}:{sid}" for lvl, sid in
                                      sorted(rec.snapshot_ids.items())),
        "ewspipe.qa_passed": str(rec.qa_passed).lower(),
        "ewspipe.published": ",".join(sorted(str(p.get("level")) for p in published)) or "none",
        "mlflow.source.name": "ewspipe",
    }
    mlflow_run = client.create_run(experiment_id, run_name=run_id, tags=tags).info.run_id
    try:
        _metrics(client, mlflow_run, rec)
        client.log_text(mlflow_run, json.dumps(rec.to_dict(), indent=2, default=str) + "\n",
                        "run.json")
        report = rec.outputs.report
        if report and Path(report).is_file():
            client.log_artifact(mlflow_run, str(report), "report")
        versions: dict[str, str] = {}
        if environment in settings.run.publish_environments:
            versions = _register_deployed(client, settings, rec, mlflow_run, tag)
        client.set_terminated(mlflow_run, "FINISHED")
    except Exception:
        client.set_terminated(mlflow_run, "FAILED")
        raise
    registered = (f"; registered {', '.join(f'{n} v{v}' for n, v in versions.items())}"
                  if versions else "")
    return TrackingResult("logged", experiment=MONTHLY_EXPERIMENT, experiment_id=experiment_id,
                          parent_run_id=mlflow_run, model_runs={},
                          message=f"logged to MLflow experiment {MONTHLY_EXPERIMENT} as run "
                                  f"{mlflow_run}{registered}")


def _metrics(client: Any, mlflow_run: str, rec: MonthlyRunRecord) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    alerts = rec.alerts or {}
    values = {"seconds": float(rec.seconds or 0.0),
              "tasks_ran": float(len(rec.ran)),
              "tasks_reused": float(len(rec.reused)),
              "qa_failed": float(len(rec.qa.failed) if rec.qa is not None else 0),
              "alerts": float(alerts.get("count", 0))}
    client.log_batch(mlflow_run, metrics=[Metric(k, v, now, 0) for k, v in values.items()])


def _register_deployed(client: Any, settings: Settings, rec: MonthlyRunRecord, mlflow_run: str,
                       tag: str | None) -> dict[str, str]:
    """A version per deployed model and ensemble this run stored: its metadata (written by
    the forecast and ensemble tasks) names the artifact, config hash and snapshot."""
    state = StateFolder(Path(str(rec.state)))  # the environment's folder of the run
    store = PredictionStore(state.resolve("predictions"))
    parts = rec.outputs.partitions or []
    meta = {p["model"]: (p, store.metadata(p["level"], p["run"], p["model"])) for p in parts}
    definitions = {name: {"config_hash": m.get("config_hash"),
                          "members": list(m.get("members") or {}),
                          "reconcile_with": m.get("reconcile_with")}
                   for name, (_, m) in meta.items()}
    versions: dict[str, str] = {}
    for name, (part, m) in sorted(meta.items()):
        if part.get("status") != "deployed":
            continue
        kind = str(part.get("kind", "model"))
        source = (settings.layout.artifacts / str(m["artifact"]) if kind == "model" and
                  m.get("artifact") else state.resolve(str(part["path"])))
        tags = {
            "ewspipe.run_id": rec.run_id, "ewspipe.monthly_run": rec.run_id,
            "ewspipe.source": "monthly", "ewspipe.environment": str(rec.environment),
            "ewspipe.model_kind": kind,
            "ewspipe.level": str(part["level"]), "ewspipe.snapshot": str(m.get("snapshot")),
            "ewspipe.status": "deployed", "ewspipe.config_hash": str(m.get("config_hash")),
            "ewspipe.code_fingerprint": code_fingerprint(),
            "ewspipe.ewspipe_version": __version__, "ewspipe.release": tag or "none",
        }
        if kind == "ensemble":
            tags.update(inputs_tags(ensemble_inputs(name, definitions)))
        versions[name] = register_version(client, name, source=source.resolve().as_uri(),
                                          tags=tags, run_id=mlflow_run, level=str(part["level"]),
                                          forecast=state.resolve(str(part["path"])))
    return versions
