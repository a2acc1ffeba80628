"""`ewspipe mlflow-ui`: the one command line that opens the MLflow UI on this workspace."""

from __future__ import annotations

import shlex

import typer

from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.settings import Settings
from ewspipe.store.tracking import (
    UI_EXTRA,
    display_uri,
    store_exists,
    tracking_uri,
    ui_command,
    ui_installed,
)

__all__ = ["mlflow_ui"]


def mlflow_ui(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the `mlflow ui` command that browses this workspace's MLflow store.

    Runs, their report artifacts and the model registry (with each deployed model's
    `production` alias) are in the store the pipeline tracks to (`[tracking] uri`; default
    SQLite in the state directory). The UI needs the full mlflow package, which ewspipe does
    not install (it uses mlflow-skinny): `pip install 'ewspipe[mlflow-ui]'` once, then run the
    printed command and open http://127.0.0.1:5000. Credentials in the URI are masked.
    """
    settings: Settings = ctx.obj
    uri = tracking_uri(settings)
    command = ui_command(settings)
    shown = [display_uri(a) for a in command] if command is not None else None
    doc = {
        "tracking_uri": display_uri(uri),
        "tracking_enabled": settings.tracking.enabled,
        "store_exists": store_exists(uri),
        "command": shown,
        "command_line": shlex.join(shown) if shown is not None else None,
        "ui_installed": ui_installed(),
        "install": UI_EXTRA,
    }

    def human() -> str:
        if shown is None:
            return (f"The tracking server {doc['tracking_uri']} serves the MLflow UI itself: "
                    "open it in a browser.")
        lines = [f"MLflow UI on this workspace's tracking store ({doc['tracking_uri']}):",
                 f"  {doc['command_line']}", "then open http://127.0.0.1:5000"]
        if not doc["ui_installed"]:
            lines.append(f"The UI needs the full mlflow package, not installed here: {UI_EXTRA}")
        if not doc["tracking_enabled"]:
            lines.append("note: tracking is off ([tracking] enabled = false): nothing new is "
                         "logged there")
        elif not doc["store_exists"]:
            lines.append("note: no run is tracked yet (the store is created by the first "
                         "evaluate, forecast or run)")
        return "\n".join(lines)

    emit(doc, as_json, human)
