"""``/api/v1/evaluations``: metrics of evaluation runs (``ewspipe evaluate``) per model and
scheme, and the latest online evaluation (``ewspipe online-eval``)."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from ewspipe.api.deps import ENV_QUERY, NAME_PATTERN, PageDep, SettingsDep, env_or_default, page
from ewspipe.api.errors import invalid, not_found
from ewspipe.api.records import stored_run, stored_runs
from ewspipe.api.schemas import ErrorBody, EvaluationGroup, EvaluationRun, Page
from ewspipe.errors import StoreError
from ewspipe.flows.online import summary_path
from ewspipe.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])

RUN_ID = Path(..., pattern=NAME_PATTERN, max_length=200, description="Evaluation run id.")


def _model(m: dict[str, Any]) -> dict[str, Any]:
    metrics = m.get("metrics") or {}
    return {"model": m["model"], "level": m["level"], "kind": m.get("kind", "model"),
            "status": m["status"], "snapshot": m.get("snapshot"),
            "n_samples": m.get("n_samples"), "pooled": metrics.get("pooled") or {},
            "means": metrics.get("means") or {}, "n_scored": metrics.get("n_scored")}


def _run(record: dict[str, Any]) -> dict[str, Any]:
    window = {"window": record["window"]} if record.get("window") else {}  # backtest runs
    return {"run_id": record["run_id"], "run_type": record["run_type"], **window,
            "started_at": record.get("started_at"), "snapshots": record.get("snapshots"),
            "code": record.get("code"), "partition": record.get("partition"),
            "models": [_model(m) for m in record.get("models") or []]}


def _evaluation(settings: Settings, run_id: str) -> dict[str, Any]:
    record = stored_run(settings, run_id)
    if record is None or record.get("kind") != "evaluate":
        not_found("path", "run_id", f"no evaluation run {run_id!r}; list them with "
                  "GET /api/v1/evaluations")
    return record


@router.get("", summary="Evaluation runs, newest first", response_model=Page[EvaluationRun])
def get_evaluations(
    settings: SettingsDep, paging: PageDep,
    run_type: Literal["calibration", "validation", "backtest"] | None = Query(
        None, description="backtest: one run per [partitions.backtest] window (its window)"),
    model: str | None = Query(None, pattern=NAME_PATTERN, max_length=200,
                              description="Only runs that evaluated this model."),
) -> dict[str, Any]:
    """Each evaluation run with its models' pooled metrics and per-scheme means."""
    runs = [_run(r) for r in stored_runs(settings, "evaluate")
            if run_type is None or r.get("run_type") == run_type]
    if model is not None:
        runs = [r for r in runs if any(m["model"] == model for m in r["models"])]
    return page(runs, paging)


@router.get("/online", summary="The latest online evaluation",
            responses={404: {"model": ErrorBody}})
def get_online(settings: SettingsDep, env: str | None = ENV_QUERY) -> dict[str, Any]:
    """Scores of deployed forecasts against the actuals that arrived since, written by
    ``ewspipe online-eval``: with ``env`` of that environment's monthly runs
    (``<state_dir>/<env>/online/summary.json``); without it of the forecast runs
    (``<state_dir>/online/summary.json``), else of the default environment's monthly runs."""
    if env is not None:
        env = env_or_default(settings, env)
    path = summary_path(settings, env)
    if not path.is_file():
        raise HTTPException(404, detail="no online evaluation yet: run `ewspipe online-eval`")
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable online evaluation ({exc})") from exc
    return doc


@router.get("/{run_id}", summary="One evaluation run", response_model=EvaluationRun,
            responses={404: {"model": ErrorBody}})
def get_evaluation(settings: SettingsDep, run_id: str = RUN_ID) -> dict[str, Any]:
    """The run's partition, snapshots and each model's pooled and mean metrics."""
    return _run(_evaluation(settings, run_id))


@router.get("/{run_id}/{model}", summary="A model's metrics by step, month or sequence",
            response_model=Page[EvaluationGroup], responses={404: {"model": ErrorBody}})
def get_evaluation_groups(
    settings: SettingsDep, paging: PageDep, run_id: str = RUN_ID,
    model: str = Path(..., pattern=NAME_PATTERN, max_length=200),
    scheme: Literal["step", "month", "sequence"] = Query(
        "step", description="step-wise (1..36), month-wise or sequence-wise."),
    metric: str | None = Query(None, pattern=r"^[a-z_0-9]+$", max_length=40,
                               description="Only this metric, e.g. msle or crps."),
) -> dict[str, Any]:
    """One row per group (step, month_id or sequence) and metric, as the run scored them."""
    record = _evaluation(settings, run_id)
    found = [m for m in record.get("models") or [] if m.get("model") == model]
    if not found:
        names = ", ".join(m.get("model", "?") for m in record.get("models") or [])
        not_found("path", "model", f"run {run_id} did not evaluate {model!r}; it evaluated "
                  f"{names}")
    metrics = found[0].get("metrics") or {}
    rows = (metrics.get("groups") or {}).get(scheme) or []
    if metric is not None:
        known = list(metrics.get("metrics") or sorted({r["metric"] for r in rows}))
        if metric not in known:
            invalid("query", "metric", f"{metric!r} was not computed for {model}; use one of "
                    f"{', '.join(known)}")
        rows = [r for r in rows if r["metric"] == metric]
    return page(rows, paging)
