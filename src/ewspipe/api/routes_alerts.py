"""``/api/v1/alerts``: the alert logs (workspace and every environment), newest first."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from ewspipe.alerts.log import AlertLog, parse_since
from ewspipe.alerts.records import Severity
from ewspipe.api.deps import ENV_QUERY, PageDep, SettingsDep, env_or_default, page
from ewspipe.api.errors import invalid
from ewspipe.api.schemas import AlertItem, Page
from ewspipe.errors import InputError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["alerts"])

WORKSPACE = "workspace"


@router.get("/alerts", summary="Alerts, newest first", response_model=Page[AlertItem])
def get_alerts(
    settings: SettingsDep, paging: PageDep,
    env: str | None = ENV_QUERY,
    workspace: bool = Query(True, description="Include the workspace log (imports, "
                            "evaluation and forecast runs) unless env is given."),
    since: str | None = Query(None, max_length=40, description="ISO date or date-time "
                              "(UTC when naive), e.g. 2024-07-01."),
    severity: Literal["INFO", "WARNING", "ERROR", "CRITICAL"] | None = Query(
        None, description="Only alerts at or above this severity."),
    source: str | None = Query(None, max_length=100, description="Only sources starting "
                               "with this, e.g. drift or drift.ks_drift."),
) -> dict[str, Any]:
    """Every alert the producers recorded: ``<state_dir>/alerts.jsonl`` (``log`` =
    ``workspace``) and each environment's ``<state_dir>/<env>/alerts.jsonl``."""
    try:
        after = parse_since(since, option="since") if since is not None else None
    except InputError as exc:
        invalid("query", "since", str(exc).removeprefix("option since: "))
    if env is not None:
        logs = [(env_or_default(settings, env), settings.layout.env(env).alerts_log)]
    else:
        logs = [(name, settings.layout.env(name).alerts_log)
                for name in settings.run.environments]
    if workspace and env is None:
        logs.insert(0, (WORKSPACE, settings.layout.alerts_log))
    level = Severity(severity) if severity is not None else None
    items = []
    for name, folder in logs:
        for alert in AlertLog(folder).read(since=after, min_severity=level,
                                                        source=source):
            items.append({"log": name, **alert.to_dict()})
    items.sort(key=lambda a: a["time"], reverse=True)
    return page(items, paging)
