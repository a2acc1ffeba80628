"""Workspace settings: ``ewspipe.toml`` parsed once into a frozen, typed object.

Lookup order for the file: an explicit path, ``$EWSPIPE_CONFIG``, ``./ewspipe.toml``,
else built-in defaults (the DOMAIN.md conventions). ``$EWSPIPE_STATE_DIR`` overrides the
state directory so tests and teams can point at another place without editing the file.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ewspipe.arguments import as_path
from ewspipe.errors import InputError, SettingsError
from ewspipe.executor_spec import parse_executor, parse_memory_limit, parse_memory_size
from ewspipe.layout import StateLayout
from ewspipe.partitions import BACKTEST_TEST_FIRSTS, PartitionScheme, Window

__all__ = ["AlertSettings", "DemoSettings", "DriftSettings", "GeographySettings",
           "QaSettings", "ReconciliationSettings", "RunSettings", "Settings", "load_settings",
           "parse_memory_size"]

CONFIG_ENV = "EWSPIPE_CONFIG"
STATE_DIR_ENV = "EWSPIPE_STATE_DIR"
CONFIG_NAME = "ewspipe.toml"

#: The environment ``ewspipe release stage`` runs the candidate and production sides in (it is
#: added to a staged side's ``[run] environments``); the only environment name the code knows.
STAGING_ENVIRONMENT = "staging"
#: The MLflow registry alias of the released models (``ewspipe release`` moves it).
PRODUCTION_ALIAS = "production"

MonthPair = Annotated[tuple[int, int], Field(description="[first, last] month_id, inclusive")]


def _scalar_types(annotation: Any) -> set[type]:
    """The scalar types (bool, int, float) a field annotation admits, unions unpacked."""
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_scalar_types(a) for a in get_args(annotation)))
    return {annotation} & {bool, int, float}


def _wrong_scalar(annotation: Any, value: Any) -> str | None:
    """Why ``value`` is not of the scalar type of ``annotation`` without coercion, or None.

    pydantic's lax mode turns ``"36"`` into 36 and ``true`` into 1; a settings file that says
    ``steps = "36"`` or ``steps = true`` is a mistake, so the file's types must match."""
    if get_origin(annotation) is tuple:  # [first, last] pairs: check the elements
        elems = get_args(annotation)
        if isinstance(value, list | tuple) and elems and elems[-1] is not Ellipsis:
            for elem, item in zip(elems, value, strict=False):
                why = _wrong_scalar(elem, item)
                if why:
                    return why
        return None
    allowed = _scalar_types(annotation)
    if not allowed or value is None:
        return None
    if bool in allowed:
        return None if isinstance(value, bool) else "must be true or false (without quotes)"
    kind = "an integer" if allowed == {int} else "a number"
    if isinstance(value, bool):
        return f"must be {kind}, not true/false"
    if isinstance(value, str):
        return f"must be {kind}, written without quotes"
    if allowed == {int} and isinstance(value, float):
        return "must be a whole number (no decimal point)"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _exact_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        why = _wrong_scalar(field.annotation, value) if field is not None else None
        if why:
            raise ValueError(why)
        return value


class WorkspaceSettings(_Strict):
    state_dir: Path = Path(".ewspipe")
    models_dir: Path = Path("models")
    ensembles_dir: Path = Path("ensembles")


class ModelsSettings(_Strict):
    """``[models]``: ``allow_pickle`` lets fitted models of an older format load their pickled
    learners (sha256-checked). Loading a pickle runs any code in it: keep it off unless every
    writer of the state folder is trusted."""

    allow_pickle: StrictBool = False


def _check_window(pair: tuple[int, int]) -> tuple[int, int]:
    first, last = pair
    if first < 1:
        raise ValueError(f"month ids start at 1 (January 1980), got {first}; "
                         "use a month_id >= 1")
    if first > last:
        raise ValueError(f"[{first}, {last}] is inverted: the first month must not come after "
                         f"the last; write [{last}, {first}]")
    return pair


Window_ = Annotated[MonthPair, AfterValidator(_check_window)]


class _TrainTest(_Strict):
    train: Window_
    test: Window_

    @model_validator(mode="after")
    def _contiguous(self) -> _TrainTest:
        if self.train[1] != self.test[0] - 1:
            raise ValueError(
                f"train must end the month before test starts: train ends {self.train[1]}, "
                f"test starts {self.test[0]}; set train = [{self.train[0]}, {self.test[0] - 1}]"
            )
        return self


class _Forecasting(_Strict):
    train_first: int = Field(121, ge=1)


class _Backtest(_Strict):
    """The backtest windows: the rolling-origin protocol at several train ends before the
    validation period (checked by ``PartitionScheme.check_backtest``)."""

    test_firsts: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: list(BACKTEST_TEST_FIRSTS),
        description="first test month of each window, oldest first")


class PartitionSettings(_Strict):
    steps: int = Field(36, ge=1, le=120)
    sequences: int = Field(13, ge=1, le=120)
    calibration: _TrainTest = _TrainTest(train=(121, 444), test=(445, 492))
    validation: _TrainTest = _TrainTest(train=(121, 492), test=(493, 540))
    forecasting: _Forecasting = _Forecasting()
    backtest: _Backtest = _Backtest()

    @model_validator(mode="after")
    def _ordered(self) -> PartitionSettings:
        cal, val = self.calibration.test, self.validation.test
        if val[0] <= cal[1]:
            raise ValueError(
                f"[partitions.validation] test {list(val)} overlaps or precedes "
                f"[partitions.calibration] test {list(cal)}: validation must test later "
                f"months than calibration; start validation's test after month {cal[1]}")
        return self

    def scheme(self) -> PartitionScheme:
        return PartitionScheme(
            calibration=Window(*self.calibration.test),
            validation=Window(*self.validation.test),
            calibration_train_first=self.calibration.train[0],
            validation_train_first=self.validation.train[0],
            forecasting_train_first=self.forecasting.train_first,
            steps=self.steps,
            sequences=self.sequences,
            backtest_test_firsts=tuple(self.backtest.test_firsts),
        )


class DemoSettings(_Strict):
    seed: int = 20240701
    countries: int = Field(190, ge=10, le=400)
    pgm_cells: Annotated[int, Field(ge=50, le=13110)] | Literal["global"] = Field(
        2000, description="cells of the pgm region (a disc of N cells), or \"global\": every "
        "cell of the PRIO-GRID table with its real country (then the owners are the countries)"
    )
    first_month: int = Field(121, ge=1)
    last_month: int | None = Field(
        None, description="last month_id of the demo world; default: last complete month"
    )

    @field_validator("pgm_cells", mode="before")
    @classmethod
    def _cells(cls, value: Any) -> Any:
        if value == "global":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 50 <= value <= 13110:
            raise ValueError("must be a number of grid cells from 50 to 13110 (a disc of "
                             "cells) or \"global\" (every cell of the PRIO-GRID table)")
        return value


class DataSettings(_Strict):
    """Input limits of every import (README "Input limits"; ewspipe.panel.limits)."""

    max_columns: int = Field(1_000, ge=3)
    max_line_bytes: int = Field(1 << 20, ge=1024)
    max_decompressed_bytes: int = Field(2 << 30, ge=1 << 20)
    max_deaths_per_row: int = Field(1_000_000, ge=1)
    min_months: int | None = Field(None, ge=1, description="default: [partitions] steps + 1")


class UcdpSettings(_Strict):
    ged_url: str = "https://ucdp.uu.se/downloads/ged/ged{compact}-csv.zip"
    timeout_seconds: float = Field(60.0, gt=0)


class SourcesSettings(_Strict):
    ucdp: UcdpSettings = UcdpSettings()


# --------------------------------------------------------------------------- drift

DriftThreshold = Annotated[float, Field(gt=0, description="alarm when value / threshold > 1")]


class DriftThresholds(_Strict):
    """One threshold per input-drift detector (names = the ewspipe.drift registry).

    Defaults are tuned on the real cm data; the evidence is in docs/drift_backtest.md.
    """

    global_missingness: DriftThreshold = 0.05
    month_missingness: DriftThreshold = 0.05
    unit_missingness: DriftThreshold = 0.05
    feature_missingness: DriftThreshold = 0.05
    global_zeros: DriftThreshold = 0.995
    month_zeros: DriftThreshold = 0.995
    unit_zeros: DriftThreshold = 0.99
    feature_zeros: DriftThreshold = 0.995
    delta_completeness: DriftThreshold = 1.25
    delta_zeroes: DriftThreshold = 0.1
    extreme_values: DriftThreshold = 50.0
    ks_drift: DriftThreshold = 100.0
    nonzero_shift: DriftThreshold = 1.0
    positive_shift: DriftThreshold = 1.0


_Override = Annotated[float | None, Field(None, gt=0)]


class DriftOverrides(_Strict):
    """Overrides for one level or run type; unset keys keep the [drift.thresholds] value."""

    fail_level: int | None = Field(None, ge=2)
    global_missingness: _Override = None
    month_missingness: _Override = None
    unit_missingness: _Override = None
    feature_missingness: _Override = None
    global_zeros: _Override = None
    month_zeros: _Override = None
    unit_zeros: _Override = None
    feature_zeros: _Override = None
    delta_completeness: _Override = None
    delta_zeroes: _Override = None
    extreme_values: _Override = None
    ks_drift: _Override = None
    nonzero_shift: _Override = None
    positive_shift: _Override = None


class DriftSettings(_Strict):
    """``[drift]``: windows, thresholds and how alarm severities map to alert levels."""

    test_months: int = Field(1, ge=1, le=24)
    standard_months: int = Field(30, ge=2, le=240)
    min_standard_months: int = Field(12, ge=1, le=240)
    min_positives: int = Field(5, ge=2)
    fail_level: int = Field(3, ge=2)
    error_level: int = Field(3, ge=2)
    critical_level: int = Field(10, ge=2)
    max_alerts: int = Field(10, ge=1)
    ignore_columns: tuple[str, ...] = ("gwcode",)
    thresholds: DriftThresholds = DriftThresholds()
    cm: DriftOverrides = DriftOverrides()
    pgm: DriftOverrides = DriftOverrides(
        global_zeros=0.9995, month_zeros=0.9995, feature_zeros=0.9995, extreme_values=300.0,
        ks_drift=1e4, nonzero_shift=1.25,
    )
    calibration: DriftOverrides = DriftOverrides()
    validation: DriftOverrides = DriftOverrides()
    forecasting: DriftOverrides = DriftOverrides()

    @model_validator(mode="after")
    def _consistent(self) -> DriftSettings:
        if self.min_standard_months > self.standard_months:
            raise ValueError(
                f"min_standard_months ({self.min_standard_months}) exceeds standard_months "
                f"({self.standard_months}); lower it or lengthen the standard window"
            )
        if self.error_level > self.critical_level:
            raise ValueError(
                f"error_level ({self.error_level}) exceeds critical_level "
                f"({self.critical_level}); the levels must rise"
            )
        return self

    def resolve(self, run_type: str, level: str) -> tuple[dict[str, float], int]:
        """Thresholds and fail level for a run type and level: defaults < level < run type."""
        thresholds = self.thresholds.model_dump()
        fail_level = self.fail_level
        for override in (getattr(self, level), getattr(self, run_type)):
            for key, value in override.model_dump(exclude_none=True).items():
                if key == "fail_level":
                    fail_level = value
                else:
                    thresholds[key] = value
        return thresholds, fail_level


# --------------------------------------------------------------------------- alerts

SeverityName = Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
_NOT_A_NAME = "<not shown: not an environment variable name>"


def _mask_env_name(value: Any) -> Any:
    # a misplaced secret (a webhook URL pasted here) must not reach the error message
    return value if isinstance(value, str) and value.isidentifier() else _NOT_A_NAME


def _check_env_name(value: str) -> str:
    if not value.isidentifier():
        raise ValueError(
            "must be the NAME of an environment variable (letters, digits, _) that holds the "
            "secret; put the secret itself in the environment, never in ewspipe.toml"
        )
    return value


EnvName = Annotated[str, AfterValidator(_check_env_name), BeforeValidator(_mask_env_name)]


class AlertLogSettings(_Strict):
    min_severity: SeverityName = "INFO"
    retention_days: int = Field(30, ge=1, le=3650)


class WebhookSettings(_Strict):
    enabled: bool = False
    min_severity: SeverityName = "ERROR"
    url_env: EnvName = "EWSPIPE_ALERT_WEBHOOK_URL"
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    retries: int = Field(3, ge=0, le=10)
    backoff_seconds: float = Field(1.0, ge=0, le=60)


class EmailSettings(_Strict):
    enabled: bool = False
    min_severity: SeverityName = "CRITICAL"
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    sender: str = "ewspipe@localhost"
    to: tuple[str, ...] = ()
    username: str | None = None
    password_env: EnvName = "EWSPIPE_SMTP_PASSWORD"
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    retries: int = Field(1, ge=0, le=10)
    backoff_seconds: float = Field(1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _recipients(self) -> EmailSettings:
        if self.enabled and not self.to:
            raise ValueError("e-mail alerts are enabled but `to` is empty; list recipients")
        return self


class MlflowAlertSettings(_Strict):
    min_severity: SeverityName = "WARNING"


class AlertSettings(_Strict):
    """``[alerts]``: where alerts go, by severity. Secrets come only from the environment."""

    log: AlertLogSettings = AlertLogSettings()
    webhook: WebhookSettings = WebhookSettings()
    email: EmailSettings = EmailSettings()
    mlflow: MlflowAlertSettings = MlflowAlertSettings()


# the metrics an evaluation run scores (flows.modelrun.POINT_METRICS + SAMPLE_METRICS)
RunMetric = Literal["mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar",
                    "crps", "twcrps", "mis", "coverage", "coverage_50", "coverage_90",
                    "pit_coverage_50", "pit_coverage_90", "brier"]


class TrackingSettings(_Strict):
    """MLflow tracking of every evaluation and forecast run (offline; ewspipe.store.tracking)."""

    enabled: bool = True
    uri: str = Field(
        "", description="MLflow tracking URI; empty: sqlite:///<state_dir>/mlflow.db, "
        "artifacts in <state_dir>/mlruns"
    )
    step_metrics: list[RunMetric] = Field(
        ["msle", "mse", "crps"], description="metrics logged as a series over steps 1..36 "
        "(MLflow charts them); every metric's pooled value and scheme means are logged "
        "anyway, and the full tables travel as the metrics JSON artifact. Each series is 36 "
        "rows per model in MLflow's store, so logging all twelve makes tracking ~4x slower"
    )


class ReconciliationSettings(_Strict):
    """``[reconciliation]``: pgm -> cm reconciliation of ensembles with ``reconcile_with``.

    ``mapping_file`` (relative to ewspipe.toml): a Parquet/CSV table with ``priogrid_gid`` (or
    ``priogrid_id``), ``country_id`` and optionally ``month_id``. Unset: the pgm panel's own
    per-month ``country_id`` column is used. Alerts fire per country-month whose rescaling
    factor is above ``max_factor`` or below ``min_factor``.
    """

    mapping_file: Path | None = None
    max_factor: float = Field(10.0, gt=1, allow_inf_nan=False)
    min_factor: float = Field(0.1, ge=0, lt=1)
    alert_min_deaths: float = Field(
        1.0, ge=0, allow_inf_nan=False,
        description="factor alerts only where the country forecast or the cell sum is at "
        "least this many deaths",
    )

    def mapping_path(self, source_file: Path | None) -> Path | None:
        """``mapping_file`` resolved against the settings file's folder (or the cwd)."""
        if self.mapping_file is None:
            return None
        base = source_file.parent if source_file is not None else Path.cwd()
        return self.mapping_file if self.mapping_file.is_absolute() else base / self.mapping_file


class GeographySettings(_Strict):
    """``[geography]``: where the dashboard's cm map takes its country shapes from.

    ``priogrid_country`` (relative to ewspipe.toml): a folder holding ``priogrid.parquet``
    (one row per PRIO-GRID cell: ``priogrid_id``, ``country_id``). Empty: the table of the
    installed ``views-reporting`` package (requirements-geo.lock, MIT, PRIO).
    """

    priogrid_country: str = Field(
        "", description="folder with priogrid.parquet; empty: the installed views-reporting "
        "table")

    def priogrid_folder(self, source_file: Path | None) -> Path | None:
        """The folder resolved against the settings file's folder (or the cwd); None: the
        installed table."""
        if not self.priogrid_country:
            return None
        folder = Path(self.priogrid_country).expanduser()
        base = source_file.parent if source_file is not None else Path.cwd()
        return folder if folder.is_absolute() else base / folder


def _check_executor(value: str) -> str:
    # the one executor parser (ewspipe.executor_spec), so the file and --executor agree
    try:
        return str(parse_executor(value, source="[run] executor"))
    except InputError as exc:
        raise ValueError(str(exc)) from None


#: the smallest memory budget accepted: below it the model and panel alone do not fit
MIN_MEMORY_BUDGET = 64 << 20


def _check_memory_budget(value: str) -> str:
    size = parse_memory_size(value)
    if size < MIN_MEMORY_BUDGET:
        raise ValueError(f"{value!r} is below the smallest budget, 64MiB; give the memory a "
                         "run may use, e.g. \"6GiB\"")
    return value


def _check_memory_limit(value: str) -> str:
    try:
        parse_memory_limit(value)  # the loader names the key
    except InputError as exc:
        raise ValueError(str(exc)) from None
    return value


class RunSettings(_Strict):
    """``[run]``: the monthly run (``ewspipe run``; ewspipe.flows.monthly).

    ``executor``: ``local`` (in-process), ``dask`` (a local Dask cluster, one worker per core)
    or a Dask scheduler address, ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (any scheme in
    ewspipe.executor_spec.SCHEDULER_SCHEMES). ``lock_timeout_seconds``: how long a
    second run on the same environment waits for the lock (0: exit at once).
    ``dask_workers`` and ``dask_memory_limit``: the local Dask cluster (``executor = "dask"``)
    of the monthly run, evaluate and forecast: its worker processes (0: one per core) and each
    worker's memory limit (``"4GiB"``; ``""``: Dask's default, the machine's memory shared
    among the workers); a worker above it is restarted and its task fails, naming the limit.
    Workers of an external scheduler are sized where they are started. State of an
    environment lives in ``<state_dir>/<environment>/``; snapshots stay shared. Run records
    and published-pointer history go to SQLite in that folder, or to PostgreSQL when
    ``state_url = "postgresql://..."``. ``memory_budget`` (e.g. ``"6GiB"``): the memory the run's
    process (or each Dask worker) aims to stay within: a sampling model's draws are made and
    written in chunks that fit what the process does not already hold
    (:mod:`ewspipe.models.chunking`), and above half of it the cached panels are dropped
    once a design is built. A design alone larger than the budget still exceeds it.
    ``split_draws``: on Dask with several workers, evaluate and forecast split the prediction
    of a model whose forecast holds at least this many values (rows x draws) into one task
    per worker (:mod:`ewspipe.flows.predict_parts`; same file and scores); 0: never.
    """

    executor: Annotated[str, AfterValidator(_check_executor)] = "local"
    dask_workers: int = Field(0, ge=0, le=1024)
    dask_memory_limit: Annotated[str, AfterValidator(_check_memory_limit)] = ""
    lock_timeout_seconds: float = Field(0.0, ge=0, le=86400)
    environment: str = "development"
    environments: tuple[str, ...] = ("development", STAGING_ENVIRONMENT, "production")
    publish_environments: tuple[str, ...] = ("production",)
    demo_when_empty: bool = True
    state_url: str = Field("", pattern=r"^(|sqlite:///.+|postgres(ql)?://.+)$")
    memory_budget: Annotated[str, AfterValidator(_check_memory_budget)] = "6GiB"
    split_draws: int = Field(100_000_000, ge=0)

    @field_validator("environments")
    @classmethod
    def _folder_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment name; use letters, digits, "
                                 "- and _ (it becomes a folder of the state directory)")
        if len(set(names)) != len(names):
            raise ValueError("lists an environment twice; list each once")
        return names

    @model_validator(mode="after")
    def _known_environments(self) -> RunSettings:
        known = ", ".join(self.environments)
        if self.environment not in self.environments:
            raise ValueError(f"environment = {self.environment!r} is not one of environments "
                             f"({known}); set it to one of them or add it to environments")
        unknown = [e for e in self.publish_environments if e not in self.environments]
        if unknown:
            raise ValueError(f"publish_environments names {', '.join(map(repr, unknown))}, "
                             f"not one of environments ({known}); a run there would publish "
                             "nothing. List only configured environments")
        return self

    @property
    def memory_budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_memory_size(self.memory_budget)

    @property
    def dask_memory_limit_bytes(self) -> int | None:
        """``dask_memory_limit`` in bytes; None: Dask's default."""
        return parse_memory_limit(self.dask_memory_limit, source="[run] dask_memory_limit")

    @property
    def production_environment(self) -> str:
        """The environment releases serve: the first publishing one (``production`` by
        default). Its state database holds the release ledger; rollback moves its pointers."""
        return self.publish_environments[0] if self.publish_environments else (
            RunSettings.model_fields["publish_environments"].default[0])


_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _ref_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid git branch name (``git check-ref-format --branch``), or
    None. Checked here so a typo fails at load, not half-way through a release."""
    bad = next((c for c in name if c in " ~^:?*[\\" or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        return f"contains {bad!r} (no spaces, control characters or ~^:?*[\\ in branch names)"
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "starts with '-'"
    for part, why in (("..", "'..'"), ("@{", "'@{'"), ("//", "'//'")):
        if part in name:
            return f"contains {why}"
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "starts or ends with '/' or ends with '.'"
    for comp in name.split("/"):
        if comp.startswith(".") or comp.endswith(".lock"):
            return f"has a component {comp!r} starting with '.' or ending with '.lock'"
    return None


def _check_branch(name: str) -> str:
    why = _ref_name_problem(name)
    if why:
        raise ValueError(f"{name!r} is not a valid git branch name: it {why}; choose a name "
                         "that `git check-ref-format --branch` accepts, e.g. 'production'")
    return name


def _check_tag_prefix(prefix: str) -> str:
    if prefix:
        why = _ref_name_problem(prefix + "1.0.0")
        if why:
            raise ValueError(f"tag prefix {prefix!r} cannot start a git tag name: it {why}; "
                             "use e.g. 'v' or 'release-'")
    return prefix


BranchName = Annotated[str, AfterValidator(_check_branch)]


# --------------------------------------------------------------------------- quality assurance

LossMetric = Literal["msle", "mse", "rmsle", "mae"]


class OnlineEvalSettings(_Strict):
    """``[qa.online]``: ``ewspipe online-eval`` (ewspipe.flows.online; rules in
    docs/online_eval.md). A deployed model or ensemble alerts when its ``metric`` over the last
    ``window_months`` scored target months is worse than a baseline of its level on the same
    rows (ERROR), or above mean + ``band_sd`` sd of its own earlier rolling windows (WARNING;
    needs ``band_min_windows`` earlier windows)."""

    window_months: int = Field(6, ge=1, le=120)
    metric: LossMetric = "msle"
    baseline_tolerance: float = Field(0.0, ge=0, allow_inf_nan=False)
    band_sd: float = Field(2.0, gt=0, allow_inf_nan=False)
    band_min_windows: int = Field(6, ge=2, le=1000)


class OutputDriftSettings(_Strict):
    """``[qa.output_drift]``: a forecast vs the same model's previous month's forecast, on the
    (target month, unit) rows both cover (ewspipe.flows.output_drift)."""

    max_total_ratio: float = Field(2.0, gt=1, allow_inf_nan=False)
    min_total_deaths: float = Field(10.0, ge=0, allow_inf_nan=False)
    max_unit_jump: float = Field(2.0, gt=0, allow_inf_nan=False)
    nonzero_threshold: float = Field(0.5, ge=0, allow_inf_nan=False)
    max_nonzero_share_change: float = Field(0.1, gt=0, le=1)
    max_alerts: int = Field(10, ge=1)
    statuses: tuple[Literal["deployed", "shadow", "baseline"], ...] = ("deployed", "shadow")


class QaSettings(_Strict):
    """``[qa]``: freshness guards (ewspipe.flows.guards), online evaluation, output drift.

    The expected last observed month is ``expected_last_month`` when set, else the last
    complete calendar month minus ``publication_lag_months``.
    """

    max_snapshot_age_days: float = Field(35.0, gt=0, allow_inf_nan=False)
    publication_lag_months: int = Field(0, ge=0, le=24)
    expected_last_month: int | None = Field(None, ge=1)
    max_forecast_factor: float = Field(
        10.0, gt=1, allow_inf_nan=False,
        description="the monthly run's QA fails a forecast above this many times the largest "
        "count of its target ever observed at its level (an exploding model)",
    )
    online: OnlineEvalSettings = OnlineEvalSettings()
    output_drift: OutputDriftSettings = OutputDriftSettings()


class ReleaseSettings(_Strict):
    """``[release]``: the development/production sync (``ewspipe release``; ewspipe.release).

    Branch names and the version tag prefix; the staging gates' thresholds live here too.
    """

    development_branch: BranchName = "development"
    production_branch: BranchName = "production"
    tag_prefix: Annotated[str, AfterValidator(_check_tag_prefix)] = "v"
    # staging gates (ewspipe.release.staging; docs/releasing.md)
    metric: LossMetric = "msle"
    tolerance: float = Field(0.01, ge=0, allow_inf_nan=False)
    significance: float = Field(0.05, gt=0, lt=1)
    drift_fail_severity: SeverityName = "ERROR"
    diff_max_total_change: float = Field(0.25, gt=0, allow_inf_nan=False)
    diff_max_unit_change: float = Field(1.0, gt=0, allow_inf_nan=False)
    diff_top_units: int = Field(10, ge=1, le=1000)
    test_command: tuple[str, ...] = Field(("python", "-m", "pytest", "-q", "-x"), min_length=1)
    test_timeout_seconds: float = Field(1800.0, gt=0, le=86400)
    run_timeout_seconds: float = Field(3600.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _two_branches(self) -> ReleaseSettings:
        if self.development_branch == self.production_branch:
            raise ValueError(
                f"development_branch and production_branch are both "
                f"{self.production_branch!r}; releases move commits from one to the other, "
                "so name two different branches")
        return self


class ApiSettings(_Strict):
    """``[api]``: ``ewspipe serve`` (ewspipe.api). Read-only unless the token variable is set."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token_env: EnvName = "EWSPIPE_API_TOKEN"
    page_size: int = Field(100, ge=1, le=100_000, description="default ?limit of lists")
    max_page_size: int = Field(1000, ge=1, le=100_000, description="largest ?limit of lists")
    max_forecast_rows: int = Field(
        100_000, ge=1, le=5_000_000,
        description="default and largest ?limit of forecast rows (one global pgm month: "
        "66,205)")

    @model_validator(mode="after")
    def _page_sizes(self) -> ApiSettings:
        if self.page_size > self.max_page_size:
            raise ValueError(f"page_size ({self.page_size}) exceeds max_page_size "
                             f"({self.max_page_size}); lower it or raise max_page_size")
        return self


class Settings(_Strict):
    workspace: WorkspaceSettings = WorkspaceSettings()
    models: ModelsSettings = ModelsSettings()
    partitions: PartitionSettings = PartitionSettings()
    demo: DemoSettings = DemoSettings()
    data: DataSettings = DataSettings()
    sources: SourcesSettings = SourcesSettings()
    reconciliation: ReconciliationSettings = ReconciliationSettings()
    tracking: TrackingSettings = TrackingSettings()
    drift: DriftSettings = DriftSettings()
    alerts: AlertSettings = AlertSettings()
    qa: QaSettings = QaSettings()
    run: RunSettings = RunSettings()
    release: ReleaseSettings = ReleaseSettings()
    api: ApiSettings = ApiSettings()
    geography: GeographySettings = GeographySettings()
    source_file: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.workspace.state_dir

    @property
    def models_dir(self) -> Path:
        return self.workspace.models_dir

    @property
    def ensembles_dir(self) -> Path:
        return self.workspace.ensembles_dir

    @property
    def layout(self) -> StateLayout:
        """Where everything lives under the state directory (ewspipe.layout)."""
        return StateLayout(self.state_dir)

    @property
    def artifact_dir(self) -> Path:
        return self.layout.artifacts

    @property
    def runs_dir(self) -> Path:
        return self.layout.runs

    @property
    def snapshot_dir(self) -> Path:
        return self.layout.snapshots

    @property
    def download_dir(self) -> Path:
        return self.layout.downloads

    def partition_scheme(self) -> PartitionScheme:
        return self.partitions.scheme()


def _key_name(loc: tuple[int | str, ...]) -> str:
    """``('partitions', 'calibration', 'train', 1)`` -> ``[partitions.calibration] train[1]``:
    the table and key as written in ewspipe.toml."""
    names = [str(p) for p in loc if isinstance(p, str)]
    if not names:
        return "the file's top level"
    table, key = names[:-1], names[-1]
    index = "".join(f"[{p}]" for p in loc[len(names):] if isinstance(p, int))
    if not table:
        return f"[{key}]" if key in Settings.model_fields else f"key {key!r}{index}"
    return f"[{'.'.join(table)}] {key}{index}"


def _format_validation_error(path: Path | None, exc: ValidationError) -> str:
    where = str(path) if path else "built-in settings"
    lines = [f"{where}: invalid settings"]
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        loc = tuple(err["loc"])
        dotted = ".".join(str(part) for part in loc)
        lines.append(f"  {_key_name(loc)} (key {dotted}): {msg}{shown}")
    lines.append(f"Fix the keys above in {where}; the commented ewspipe.toml in the repository "
                 "lists every key with its default.")
    return "\n".join(lines)


def _find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if explicit.is_dir():
            raise SettingsError(f"settings file {explicit} is a folder, not a file; pass "
                                f"the {CONFIG_NAME} inside it")
        if not explicit.is_file():
            raise SettingsError(f"config file {explicit} does not exist; pass an existing file")
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise SettingsError(
                f"${CONFIG_ENV} points to {path}, which does not exist or is not a file; unset "
                "it or fix the path"
            )
        return path
    here = Path.cwd() / CONFIG_NAME
    return here if here.is_file() else None


def _read_config(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path``; every way a file can be unusable is a SettingsError that
    names the file and the fix."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"settings file {path} cannot be read ({exc.strerror or exc}); make "
                            "it readable (e.g. chmod u+r) or pass another --config") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SettingsError(
            f"settings file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
            f"{line}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}; fix the syntax there") from None


def _usable_state_dir(state_dir: Path, origin: str) -> None:
    """Refuse a state directory that is a file, or lies under one, before anything uses it."""
    for candidate in (state_dir, *state_dir.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == state_dir else f"lies under the file {candidate}"
                raise SettingsError(f"state directory {state_dir} ({origin}) {what}, not a "
                                    "folder; point it at a folder (or remove the file)")
            return


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read, validate and resolve the settings; relative paths are relative to the file.

    ``path`` may be a string or any path-like (a notebook passes ``"ewspipe.toml"``)."""
    config_path = _find_config(None if path is None else as_path(path, "path"))
    raw: dict[str, Any] = _read_config(config_path) if config_path is not None else {}
    try:
        settings = Settings.model_validate(raw)
        scheme = PartitionSettings.scheme(settings.partitions)
        if "backtest" in settings.partitions.model_fields_set:  # defaults: checked when used
            scheme.check_backtest()
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(config_path, exc)) from None
    except SettingsError as exc:
        where = str(config_path) if config_path else "built-in settings"
        raise SettingsError(f"{where}: {exc}") from None

    base = config_path.parent if config_path is not None else Path.cwd()
    state_dir = Path(os.environ.get(STATE_DIR_ENV) or settings.workspace.state_dir)
    origin = (f"${STATE_DIR_ENV}" if os.environ.get(STATE_DIR_ENV) else
              f"[workspace] state_dir of {config_path}" if config_path else "the default")
    if overrides.get("state_dir") is not None:
        state_dir = Path(overrides["state_dir"])
        origin = "--state-dir"
    if not state_dir.is_absolute():
        state_dir = (base / state_dir).resolve()
    _usable_state_dir(state_dir, origin)
    dirs = {"state_dir": state_dir}
    for key in ("models_dir", "ensembles_dir"):
        path = Path(overrides[key]) if overrides.get(key) is not None else getattr(
            settings.workspace, key)
        dirs[key] = path if path.is_absolute() else (base / path).resolve()
    workspace = settings.workspace.model_copy(update=dirs)
    return settings.model_copy(update={"workspace": workspace, "source_file": config_path})
