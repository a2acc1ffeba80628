"""Workspace settings: ``ewspipe.toml`` parsed once into a frozen, typed object.

Lookup order for the file: an explicit path, ``$EWSPIPE_CONFIG``, ``./ewspipe.toml``,
else built-in defaults (the DOMAIN.md conventions). ``$EWSPIPE_STATE_DIR`` overrides the
state directory so tests and teams can point at another place without editing the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ewspipe.errors import SettingsError
from ewspipe.partitions import PartitionScheme, Window

__all__ = ["DemoSettings", "Settings", "load_settings"]

CONFIG_ENV = "EWSPIPE_CONFIG"
STATE_DIR_ENV = "EWSPIPE_STATE_DIR"
CONFIG_NAME = "ewspipe.toml"

MonthPair = Annotated[tuple[int, int], Field(description="[first, last] month_id, inclusive")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSettings(_Strict):
    state_dir: Path = Path(".ewspipe")
    models_dir: Path = Path("models")
    ensembles_dir: Path = Path("ensembles")


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


class UcdpSettings(_Strict):
    ged_url: str = "https://ucdp.uu.se/downloads/ged/ged{compact}-csv.zip"
    timeout_seconds: float = Field(60.0, gt=0)


class SourcesSettings(_Strict):
    ucdp: UcdpSettings = UcdpSettings()


class Settings(_Strict):
    workspace: WorkspaceSettings = WorkspaceSettings()
    partitions: PartitionSettings = PartitionSettings()
    demo: DemoSettings = DemoSettings()
    sources: SourcesSettings = SourcesSettings()
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
    def artifact_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def snapshot_dir(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def download_dir(self) -> Path:
        return self.state_dir / "downloads"

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
