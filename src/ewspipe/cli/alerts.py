"""`ewspipe alerts ...`: read an alert log: the workspace's (<state_dir>/alerts.jsonl) or, with
``--env``, an environment's (<state_dir>/<env>/alerts.jsonl: its monthly runs' alerts)."""

from __future__ import annotations

import typer

from ewspipe.alerts.log import AlertLog, parse_severity, parse_since
from ewspipe.cli.choices import ENVIRONMENTS, SeverityName
from ewspipe.cli.output import JSON_OPTION, emit
from ewspipe.settings import Settings
from ewspipe.workspace import Workspace

__all__ = ["app"]

app = typer.Typer(help="Read the alerts every producer (drift, checks, runs) recorded.",
                  no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Only alerts at or after this ISO date or date-time (UTC)."
    ),
    severity: SeverityName | None = typer.Option(
        None, "--severity", case_sensitive=False,
        help="Only alerts at or above INFO, WARNING, ERROR or CRITICAL (any case).",
    ),
    source: str | None = typer.Option(
        None, "--source", help="Only sources starting with this, e.g. drift or drift.ks_drift."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the most recent N matching alerts."
    ),
    env: str | None = typer.Option(
        None, "--env", help="Read this environment's log, where its monthly runs (ewspipe run) "
        f"record their alerts, instead of the workspace log: {ENVIRONMENTS}."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List recorded alerts, oldest first: the workspace log (imports, drift checks, evaluate
    and forecast runs), or with --env an environment's log (its monthly runs)."""
    settings: Settings = ctx.obj
    # Workspace.env refuses a name that is not in [run] environments (exit 2, naming --env)
    folder = settings.layout if env is None else Workspace(settings).env(env).layout
    after = parse_since(since) if since is not None else None
    level = parse_severity(severity) if severity is not None else None
    log = AlertLog(folder.alerts_log)
    alerts = log.read(since=after, min_severity=level, source=source)
    if limit is not None:
        alerts = alerts[-limit:]
    data = {"file": str(log.path), "count": len(alerts),
            "alerts": [a.to_dict() for a in alerts]}

    def human() -> str:
        if not alerts:
            return f"no alerts in {log.path}" + (" matching the filters" if
                                                  since or severity or source else "")
        return "\n".join(
            f"{a.time}  {a.severity.value:<8} {a.source:<24} {a.offender or '':<22} {a.message}"
            for a in alerts
        )

    emit(data, as_json, human)
