"""Response bodies of the read API (pydantic): what the OpenAPI document promises clients."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AlertItem",
    "DamagedFile",
    "ErrorBody",
    "EvaluationGroup",
    "EvaluationModel",
    "EvaluationRun",
    "ForecastPage",
    "ForecastRow",
    "Health",
    "ModelItem",
    "Page",
    "Pointer",
    "PointerHistory",
    "PublishRequest",
    "ReleaseItem",
    "RunItem",
]

T = TypeVar("T")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """A 401, 403, 404 or 409 answer: one sentence naming the parameter and the fix."""

    detail: str


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items[offset:offset + limit]`` of ``total`` matching items."""

    total: int = Field(description="items matching the filters, over all pages")
    limit: int
    offset: int
    items: list[T]


class DamagedFile(BaseModel):
    file: str = Field(description="the stored file that failed its check")
    problem: str = Field(description="what is wrong with it and how to repair it")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: some stored files are damaged (listed in ``damaged``); the "
        "endpoints reading them answer 503 until they are repaired")
    damaged: list[DamagedFile] = Field(default_factory=list)
    version: str = Field(description="ewspipe package version")
    code: dict[str, Any] = Field(description="git commit, dirty flag and release tag")
    environments: list[str]
    publish_environment: str | None = Field(
        description="environment whose published pointers the forecast endpoints read")
    write_enabled: bool = Field(description="state-changing endpoints are on (token set)")


class ForecastRow(_Open):
    """One unit-month; plus ``q<level>`` per requested quantile (e.g. ``q0.05``) and, with
    ``samples=true``, ``samples`` (the draws)."""

    origin: int
    step: int
    month_id: int
    country_id: int | None = Field(None, description="cm rows; the cell's country in pgm rows")
    priogrid_gid: int | None = Field(None, description="pgm rows")
    name: str | None = Field(None, description="country name (of the cell's country for pgm "
                             "rows); null when the snapshot carries no names")
    isoab: str | None = Field(None, description="ISO-3 code of that country, or null")
    label: str = Field(description="what a person reads, e.g. 'Ukraine (UKR)', "
                       "'cell 202022 (Ukraine)' or 'country 117' without names")
    point: float = Field(description="predicted fatalities (raw count)")


class ForecastPage(BaseModel):
    level: str
    target: str
    model: str
    run: str
    environment: str
    published: bool = Field(description="this run is the published one of level and target")
    unit_column: str
    n_samples: int
    quantiles: list[float]
    stored_quantiles: list[float] = Field(
        default_factory=list, description="quantile levels the forecast stores: asked for "
        "together, they are read as stored instead of computed from the samples")
    total: int
    limit: int
    offset: int
    rows: list[ForecastRow]


class Pointer(_Open):
    """A published pointer: the run and models users see for a level and target."""

    level: str
    target: str
    run: str
    primary: str
    models: list[str]
    published_at: str
    environment: str
    previous_run: str | None = None


class PointerHistory(BaseModel):
    current: Pointer
    history: list[Pointer]


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                     description="prediction-store run to publish, e.g. m520-4ba1bb44b1b7")
    env: str | None = Field(None, description="environment (default: the first publishing "
                            "environment, [run] publish_environments)")
    requested_by: str | None = Field(None, min_length=1, max_length=200,
                                     description="who asks for the move (a name or ticket); "
                                     "recorded on the pointer with the client address")


class ModelItem(_Open):
    name: str
    kind: Literal["model", "ensemble"]
    level: str
    target: str
    status: str
    owner: str | None = None
    description: str | None = None
    algorithm: str | None = None
    members: list[str] | None = None


class RunItem(_Open):
    """A run: ``monthly`` (``ewspipe run``, state database of its environment), ``evaluate``
    or ``forecast`` (run records in the state directory)."""

    run_id: str
    kind: str
    environment: str | None = None
    status: str | None = None
    started_at: str | None = None
    run_type: str | None = None


class EvaluationModel(_Open):
    model: str
    level: str
    kind: str
    status: str
    pooled: dict[str, float | None] = Field(description="metrics over every scored row")


class EvaluationRun(_Open):
    run_id: str
    run_type: str
    window: str | None = Field(None, description="a backtest run's window, e.g. 2005-2008")
    started_at: str | None = None
    models: list[EvaluationModel]


class EvaluationGroup(BaseModel):
    group: int = Field(description="step (1..36), month_id or sequence number")
    metric: str
    value: float | None
    n: int
    reason: str | None = None


class AlertItem(_Open):
    log: str = Field(description="'workspace' (imports, evaluations) or the environment")
    source: str
    severity: str
    message: str
    time: str


class ReleaseItem(_Open):
    """A release-ledger entry: ``pending`` until its last step completed."""

    version: str
    kind: str
    status: str
    commits: list[str] | dict[str, Any]
    created_at: str
    completed_at: str | None = None
