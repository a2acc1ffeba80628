"""MLflow model-registry aliases for the models and ensembles a release deploys.

A model's registered name is its ewspipe name. Every tracked forecasting run
(``ewspipe forecast``; :mod:`ewspipe.store.tracking`) registers a new version of each model
(source: its hash-verified artifact) and ensemble (source: its predictions); the newest version
gets the alias ``production`` and the tag ``ewspipe.release = <tag>``. A model that was never
forecast with tracking on has no version and is skipped with a note.
Never fatal: a release is not undone because the tracking store is unreachable.
"""

from __future__ import annotations

import os
from pathlib import Path

from ewspipe.settings import Settings
from ewspipe.store.tracking import tracking_uri

__all__ = ["ALIAS", "set_aliases"]

ALIAS = "production"


def set_aliases(settings: Settings, models: list[str], tag: str) -> list[str]:
    """Point the ``production`` alias of each registered model at its newest version; one
    note per model (or one for the whole call when tracking is off or unavailable)."""
    if not settings.tracking.enabled:
        return ["MLflow aliases skipped: tracking is off ([tracking] enabled = false)"]
    if not models:
        return ["MLflow aliases skipped: the release deploys no model"]
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return [f"MLflow aliases skipped: no tracking store yet ({Path(uri).name})"]
    try:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        return [f"MLflow aliases skipped: mlflow is not installed ({exc})"]
    notes = []
    try:
        client = MlflowClient(tracking_uri=uri)
        for name in models:
            try:
                versions = client.search_model_versions(f"name = '{name}'")
            except MlflowException:
                versions = []
            if not versions:
                notes.append(f"{name}: no registered model version, alias not set")
                continue
            newest = max(versions, key=lambda v: int(v.version))
            client.set_registered_model_alias(name, ALIAS, newest.version)
            client.set_model_version_tag(name, newest.version, "ewspipe.release", tag)
            notes.append(f"{name}: alias {ALIAS} -> version {newest.version}")
    except Exception as exc:  # the release stands; the note says what to redo by hand
        notes.append(f"MLflow aliases not set ({type(exc).__name__}: {exc}); set them with "
                     "the MLflow client once the tracking store is reachable")
    return notes
