"""Workspace settings: ``ewspipe.toml`` parsed once into a frozen, typed object.

Lookup order for the file: an explicit path, ``$EWSPIPE_CONFIG``, ``./ewspipe.toml``,
else built-in defaults (the DOMAIN.md conventions). ``$EWSPIPE_STATE_DIR`` overrides the
state directory so tests and teams can point at another place without editing the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from ewspipe.errors import InputError, SettingsError
from ewspipe.executor_spec import parse_executor
from ewspipe.layout import StateLayout
from ewspipe.partitions import PartitionScheme, Window

__all__ = ["AlertSettings", "DemoSettings", "DriftSettings",
           "QaSettings", "ReconciliationSettings", "RunSettings", "Settings", "load_settings"]

CONFIG_ENV = "EWSPIPE_CONFIG"
STATE_DIR_ENV = "EWSPIPE_STATE_DIR"
CONFIG_NAME = "ewspipe.toml"

#: The environment ``ewspipe release stage`` runs the candidate and production sides in (it is
#: added to a staged side's ``[run] environments``); the only environment name the code knows.
STAGING_ENVIRONMENT = "staging"
#: The MLflow registry alias of the released models (``ewspipe release`` moves it).
PRODUCTION_ALIAS = "production"

MonthPair = Annotated[tuple[int, int], Field(description="[first, last] month_id, inclusive")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSettings(_Strict):
    state_dir: Path = Path(".ewspipe")
    models_dir: Path = Path("models")
    ensembles_dir: Path = Path("ensembles")


class ModelsSettings(_Strict):
    """``[models]``: ``allow_pickle`` lets fitted models of an older format load their pickled
    learners (sha256-checked). Loading a pickle runs any code in it: keep it off unless every
    writer of the state folder is trusted."""

    allow_pickle: StrictBool = False


class _TrainTest(_Strict):
    train: MonthPair
    test: MonthPair

    @model_validator(mode="after")
    def _contiguous(self) -> _TrainTest:
        if self.train[1] != self.test[0] - 1:
            raise ValueError(
                f"train must end the month before test starts: train ends {self.train[1]}, "
                f"test starts {self.test[0]}; set train = [{self.train[0]}, {self.test[0] - 1}]"
            )
        return self


class _Forecasting(_Strict):
    train_first: int = 121


class PartitionSettings(_Strict):
    steps: int = Field(36, ge=1, le=120)
    sequences: int = Field(13, ge=1, le=120)
    calibration: _TrainTest = _TrainTest(train=(121, 444), test=(445, 492))
    validation: _TrainTest = _TrainTest(train=(121, 492), test=(493, 540))
    forecasting: _Forecasting = _Forecasting()

    def scheme(self) -> PartitionScheme:
        return PartitionScheme(
            calibration=Window(*self.calibration.test),
            validation=Window(*self.validation.test),
            calibration_train_first=self.calibration.train[0],
            validation_train_first=self.validation.train[0],
            forecasting_train_first=self.forecasting.train_first,
            steps=self.steps,
            sequences=self.sequences,
        )


class DemoSettings(_Strict):
    seed: int = 20240701
    countries: int = Field(190, ge=10, le=400)
    pgm_cells: int = Field(2000, ge=50, le=13110)
    first_month: int = Field(121, ge=1)
    last_month: int | None = Field(
        None, description="last month_id of the demo world; default: last complete month"
    )


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
                    "crps", "twcrps", "mis", "coverage", "brier"]


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


def _check_executor(value: str) -> str:
    # the one executor parser (ewspipe.executor_spec), so the file and --executor agree
    try:
        return str(parse_executor(value, source="[run] executor"))
    except InputError as exc:
        raise ValueError(str(exc)) from None


class RunSettings(_Strict):
    """``[run]``: the monthly run (``ewspipe run``; ewspipe.flows.monthly).

    ``executor``: ``local`` (in-process), ``dask`` (a local Dask cluster, one worker per core)
    or a Dask scheduler address, ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (any scheme in
    ewspipe.executor_spec.SCHEDULER_SCHEMES). ``lock_timeout_seconds``: how long a
    second run on the same environment waits for the lock (0: exit at once). State of an
    environment lives in ``<state_dir>/<environment>/``; snapshots stay shared. Run records
    and published-pointer history go to SQLite in that folder, or to PostgreSQL when
    ``state_url = "postgresql://..."``.
    """

    executor: Annotated[str, AfterValidator(_check_executor)] = "local"
    lock_timeout_seconds: float = Field(0.0, ge=0, le=86400)
    environment: str = "development"
    environments: tuple[str, ...] = ("development", STAGING_ENVIRONMENT, "production")
    publish_environments: tuple[str, ...] = ("production",)
    demo_when_empty: bool = True
    state_url: str = Field("", pattern=r"^(|sqlite:///.+|postgres(ql)?://.+)$")

    @property
    def production_environment(self) -> str:
        """The environment releases serve: the first publishing one (``production`` by
        default). Its state database holds the release ledger; rollback moves its pointers."""
        return self.publish_environments[0] if self.publish_environments else (
            RunSettings.model_fields["publish_environments"].default[0])


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

    development_branch: str = Field("development", min_length=1)
    production_branch: str = Field("production", min_length=1)
    tag_prefix: str = "v"
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


class ApiSettings(_Strict):
    """``[api]``: ``ewspipe serve`` (ewspipe.api). Read-only unless the token variable is set."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token_env: EnvName = "EWSPIPE_API_TOKEN"
    page_size: int = Field(100, ge=1, le=100_000, description="default ?limit of lists")
    max_page_size: int = Field(1000, ge=1, le=100_000, description="largest ?limit of lists")
    max_forecast_rows: int = Field(
        50_000, ge=1, le=5_000_000,
        description="default and largest ?limit of forecast rows (one pgm month: 13,110)")

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


def _format_validation_error(path: Path | None, exc: ValidationError) -> str:
    where = str(path) if path else "built-in settings"
    lines = [f"{where}: invalid settings"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  key '{key}': {err['msg']} (got {err.get('input')!r})")
    lines.append("Fix the keys above; see the commented ewspipe.toml in the repository.")
    return "\n".join(lines)


def _find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise SettingsError(f"config file {explicit} does not exist; pass an existing file")
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise SettingsError(
                f"${CONFIG_ENV} points to {path}, which does not exist; unset it or fix the path"
            )
        return path
    here = Path.cwd() / CONFIG_NAME
    return here if here.is_file() else None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read, validate and resolve the settings; relative paths are relative to the file."""
    config_path = _find_config(path)
    raw: dict[str, Any] = {}
    if config_path is not None:
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_path}: not valid TOML: {exc}") from exc
    try:
        settings = Settings.model_validate(raw)
        PartitionSettings.scheme(settings.partitions)
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(config_path, exc)) from exc
    except SettingsError as exc:
        where = str(config_path) if config_path else "built-in settings"
        raise SettingsError(f"{where}: {exc}") from exc

    base = config_path.parent if config_path is not None else Path.cwd()
    state_dir = Path(os.environ.get(STATE_DIR_ENV) or settings.workspace.state_dir)
    if overrides.get("state_dir") is not None:
        state_dir = Path(overrides["state_dir"])
    if not state_dir.is_absolute():
        state_dir = (base / state_dir).resolve()
    dirs = {"state_dir": state_dir}
    for key in ("models_dir", "ensembles_dir"):
        path = Path(overrides[key]) if overrides.get(key) is not None else getattr(
            settings.workspace, key)
        dirs[key] = path if path.is_absolute() else (base / path).resolve()
    workspace = settings.workspace.model_copy(update=dirs)
    return settings.model_copy(update={"workspace": workspace, "source_file": config_path})
