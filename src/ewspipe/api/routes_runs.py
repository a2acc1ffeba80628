"""``/api/v1/runs``: monthly runs of every environment plus evaluation and forecast runs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query

from ewspipe.api.deps import ENV_QUERY, NAME_PATTERN, PageDep, SettingsDep, env_or_default, page
from ewspipe.api.errors import not_found
from ewspipe.api.records import monthly_json, monthly_runs, stored_run, stored_runs
from ewspipe.api.schemas import ErrorBody, Page, RunItem
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["runs"])

_SUMMARY = ("run_id", "kind", "environment", "status", "started_at", "finished_at", "seconds",
            "run_type", "executor", "code", "snapshots")


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """An evaluation or forecast run's list item."""
    item = {k: record[k] for k in _SUMMARY if k in record}
    item["models"] = [m.get("model") for m in record.get("models") or []]
    return item


def _monthly_summary(record: MonthlyRunRecord) -> dict[str, Any]:
    """A monthly run's list item."""
    doc = monthly_json(record)
    item = {k: doc[k] for k in _SUMMARY if k in doc}
    outputs = record.outputs
    item["store_runs"] = outputs.runs
    item["qa_passed"] = record.qa_passed
    item["published"] = [f"{p['level']}/{p['target']}" for p in outputs.published or []]
    item["not_published"] = outputs.not_published
    item["release"] = record.release_tag  # old records store the tag as a string
    return item


@router.get("/runs", summary="Runs, newest first", response_model=Page[RunItem])
def get_runs(
    settings: SettingsDep, paging: PageDep,
    kind: Literal["monthly", "evaluate", "forecast"] | None = Query(
        None, description="monthly (`ewspipe run`), evaluate or forecast."),
    env: str | None = ENV_QUERY,
    status: str | None = Query(None, max_length=40,
                               description="e.g. ok, qa_failed, not_published, failed."),
) -> dict[str, Any]:
    """Monthly runs (with ``?env=`` only that environment's) and evaluation and forecast runs
    (workspace-wide, so left out when ``env`` is given), newest first."""
    name = env_or_default(settings, env) if env is not None else None
    items: list[dict[str, Any]] = []
    if kind in (None, "monthly"):
        items += [_monthly_summary(r) for r in monthly_runs(settings, name)
                  if status is None or r.status == status]
    if kind != "monthly" and name is None:
        items += [_summary(r) for r in stored_runs(settings, kind)
                  if status is None or r.get("status") == status]
    items.sort(key=lambda r: (r.get("started_at") or "", r["run_id"]), reverse=True)
    return page(items, paging)


@router.get("/runs/{run_id}", summary="One run's full record", response_model=RunItem,
            responses={404: {"model": ErrorBody}})
def get_run(settings: SettingsDep,
            run_id: str = Path(..., pattern=NAME_PATTERN, max_length=200)) -> dict[str, Any]:
    """The whole record of a monthly, evaluation or forecast run (exact id)."""
    record = stored_run(settings, run_id)
    if record is not None:
        return record
    for monthly in monthly_runs(settings):
        if monthly.run_id == run_id:
            return monthly_json(monthly)
    not_found("path", "run_id", f"no run {run_id!r}; list runs with GET /api/v1/runs")
