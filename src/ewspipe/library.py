"""ewspipe as a library: panels, backtests and forecasts in memory, for notebooks.

The same protocol as ``ewspipe evaluate`` / ``ewspipe forecast`` (the rolling-origin
partitions of the settings, the model's design and learner, the run's metrics) on a panel or
DataFrame held in memory: no state folder, no snapshot, no stored artifact, no run record.
Models come from the repository's catalog (``models/``, ``ensembles/``) by name, from a model
TOML file, or as a :class:`~ewspipe.catalog.ModelSpec`.

    >>> import ewspipe
    >>> panel = ewspipe.load_panel("cm.parquet")                    # doctest: +SKIP
    >>> ewspipe.backtest("last_value", panel).msle                  # doctest: +SKIP
    >>> ewspipe.backtest("last_value", panel, "backtest").to_frame()  # doctest: +SKIP

``"backtest"`` repeats the protocol on every ``[partitions.backtest]`` window (one fit per
window) and returns a :class:`BacktestResult`; :func:`backtest_forecasts` gives the raw
per-window forecasts of a model or an ensemble's members (e.g. to learn ensemble weights
on the backtest windows only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias, overload

import pandas as pd
import tomlkit

from ewspipe import __version__
from ewspipe.catalog import ModelSpec, load_catalog
from ewspipe.catalog.ensembles import EnsembleSpec
from ewspipe.catalog.files import display_path
from ewspipe.catalog.loader import check_model_text, feature_parser
from ewspipe.errors import InputError, SpecError
from ewspipe.evaluation.schemes import Evaluation as Scores
from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.flows.ensemble_run import combine, plan_run
from ewspipe.flows.modelrun import (
    POINT_METRICS,
    SAMPLE_METRICS,
    check_coverage,
    fit_predict,
)
from ewspipe.models.forecast import Forecast
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.schema import TIME_COLUMN, Level, MissingPolicy, Panel, validate_panel
from ewspipe.panel.snapshot import Manifest
from ewspipe.panel.sources.table import index_as_columns, read_table
from ewspipe.partitions import Partition, RunType
from ewspipe.settings import Settings, load_settings

__all__ = ["BacktestResult", "Evaluation", "PanelLike", "backtest", "backtest_forecasts",
           "forecast", "load_panel"]

PanelLike: TypeAlias = Panel | pd.DataFrame | str | os.PathLike[str]
"""What :func:`backtest` and :func:`forecast` take as data (see :func:`load_panel`)."""
ModelLike: TypeAlias = str | os.PathLike[str] | ModelSpec
"""A catalog model or ensemble name, a model TOML file, or a spec."""

_UNITS = {Level.PGM.unit_column: Level.PGM, Level.CM.unit_column: Level.CM}  # pgm first


# --------------------------------------------------------------------------- panels


def load_panel(
    data: PanelLike,
    level: Level | str | None = None,
    *,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
) -> Panel:
    """A validated :class:`Panel` from a long DataFrame, a VIEWS-style frame indexed by
    (``month_id``, ``country_id``) or (``month_id``, ``priogrid_gid``), or a Parquet/CSV file.

    The checks are those of ``ewspipe data import panel``. ``level`` (``"cm"``/``"pgm"``) is
    inferred from the unit column when not given.

    Raises:
        PanelError: the table fails a check (the message names the column at fault).
        InputError: the level cannot be told, or contradicts the panel given.
    """
    if isinstance(data, Panel):
        if level is not None and Level.parse(level) is not data.level:
            raise InputError(f"load_panel: level={level!r} but the panel given is "
                             f"{data.level.value}; pass level={data.level.value!r} or leave it out",
                             parameter="level")
        if count_columns is None and str(missing) == MissingPolicy.ERROR.value:
            return data
        # asked for other count columns or a missing policy: the checks run again on its rows
        frame, source = data.frame, "Panel"
        level = data.level
    elif isinstance(data, pd.DataFrame):
        frame, source = index_as_columns(data, "DataFrame"), "DataFrame"
    elif isinstance(data, str | os.PathLike):
        frame, source = read_table(Path(data)), str(data)
    else:
        raise InputError(f"load_panel: cannot read a {type(data).__name__}; pass a pandas "
                         "DataFrame, a Panel or the path of a Parquet/CSV file",
                         parameter="data")
    lvl = _level(frame, level, source)
    panel, _ = validate_panel(frame, lvl, source=source, count_columns=count_columns,
                              missing=missing, max_count=InputLimits().max_deaths_per_row)
    return panel


def _level(frame: pd.DataFrame, level: Level | str | None, source: str) -> Level:
    if level is not None:
        return Level.parse(level)
    for column, lvl in _UNITS.items():
        if column in frame.columns:
            return lvl
    raise InputError(
        f"{source}: column 'country_id' or 'priogrid_gid': neither is present (columns and "
        f"index levels: {', '.join(map(str, frame.columns))}), so the level cannot be told; "
        "name the unit column (or index level) country_id for cm or priogrid_gid for pgm, or "
        "pass level='cm' / level='pgm'",
        parameter="data",
    )


def _memory_manifest(panel: Panel) -> Manifest:
    """A manifest for a panel that was never stored (names it in messages as in memory)."""
    return Manifest(
        id=f"{panel.level.value}-in-memory", sha256="", file_sha256="", level=panel.level.value,
        source={"kind": "memory"}, imported_at="", fetched_at="",
        columns={str(c): str(t) for c, t in panel.frame.dtypes.items()},
        count_columns=list(panel.spec.count_columns), rows=len(panel.frame),
        first_month=panel.first_month, last_month=panel.last_month,
        months=panel.last_month - panel.first_month + 1, units=len(panel.units),
        units_last_month=len(panel.forecast_entities()), totals=panel.totals(), validation={},
        ewspipe_version=__version__,
    )


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class _Plan:
    """What to fit for one request: the models, and the ensemble built from them (if any)."""

    models: list[ModelSpec]
    ensemble: EnsembleSpec | None = None


def _settings(settings: object) -> Settings:
    """The settings given, or (None) the working directory's."""
    if settings is None:
        return load_settings()
    if isinstance(settings, Settings):
        return settings
    hint = (f"ewspipe.load_settings({os.fspath(settings)!r})"
            if isinstance(settings, str | os.PathLike) else "ewspipe.load_settings(path)")
    raise InputError(f"settings: cannot use a {type(settings).__name__}; pass {hint}, or "
                     "None for the ewspipe.toml of the working directory",
                     parameter="settings")


def _plan(model: ModelLike, settings: Settings) -> _Plan:
    if isinstance(model, ModelSpec):
        return _Plan([_checked_spec(model)])
    if not isinstance(model, str | os.PathLike):
        raise InputError(f"model: cannot use a {type(model).__name__}; pass a model or "
                         "ensemble name, the path of a model TOML file or a ModelSpec",
                         parameter="model")
    text = os.fspath(model)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        return _Plan([_spec_from_file(path)])
    try:
        catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    except InputError as exc:  # no models folder, a broken file: the settings point there
        exc.parameter = exc.parameter or "settings"
        raise
    try:
        plan = plan_run(catalog, [text])  # unknown (did-you-mean) or deprecated: SpecError
    except InputError as exc:
        exc.parameter = exc.parameter or "model"
        raise
    if not plan.ensembles:
        return _Plan(plan.models)
    if len(plan.ensembles) > 1:  # a pgm ensemble reconciled with a cm one needs both panels
        raise InputError(
            f"ensemble {text!r} is reconciled with {plan.ensembles[0].name!r}, which needs the "
            "cm and the pgm panels together; evaluate it with `ewspipe evaluate --model "
            f"{text}` on imported snapshots"
        )
    return _Plan(plan.models, plan.ensembles[0])


def _spec_from_file(path: Path) -> ModelSpec:
    if not path.is_file():
        raise InputError(f"model file {path} does not exist; pass an existing model TOML file "
                         "or the name of a model in the catalog", parameter="model")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {exc.start}); save the model "
                        "file as UTF-8 TOML", parameter="model") from None
    return _checked_text(path, text)


def _checked_text(path: Path, text: str, shown: str | None = None) -> ModelSpec:
    """The spec of a model file's text, checked as `ewspipe models check` checks files."""
    check, _ = feature_parser()
    report = check_model_text(path, text, check_feature=check)
    if report.spec is None or report.problems:
        prefix = f"{display_path(path)}: "
        problems = [str(p).removeprefix(prefix) if shown else str(p) for p in report.problems]
        raise SpecError("\n".join([f"{shown or path}: invalid model{'' if shown else ' file'}:",
                                   *(f"  {p}" for p in problems)]), parameter="model")
    return report.spec


def _checked_spec(spec: ModelSpec) -> ModelSpec:
    """A ModelSpec built in Python gets the checks a model file gets (algorithm,
    hyperparameters, features), so a slip fails here and not deep inside a fit."""
    text = tomlkit.dumps(spec.model_dump(mode="json", exclude_none=True))
    _checked_text(Path(f"{spec.name}.toml"), text, shown=f"ModelSpec {spec.name!r}")
    return spec


def _check_level(name: str, level: Level, panel: Panel) -> None:
    if level is not panel.level:
        raise InputError(f"model {name!r} is a {level.value} model but the panel is "
                         f"{panel.level.value}; pass a {level.value} panel", parameter="data")


def _fit_predict(spec: ModelSpec, panel: Panel, partition: Partition) -> Forecast:
    """Fit on the partition's training window and predict every origin (as modelrun does)."""
    _check_level(spec.name, spec.level, panel)
    return fit_predict(spec, panel, _memory_manifest(panel), partition)


def _partition(settings: Settings, run_type: RunType, panel: Panel) -> Partition:
    return settings.partition_scheme().partition(
        run_type, last_observed=panel.last_month if run_type is RunType.FORECASTING else None)


def _run_type(partition: RunType | str) -> RunType:
    try:
        rt = RunType(partition)
    except ValueError:
        rt = None
    if rt is None or rt is RunType.FORECASTING:
        raise InputError(f"partition {partition!r}: a backtest runs on 'calibration', "
                         "'validation' or 'backtest' (every [partitions.backtest] window); "
                         "use ewspipe.forecast() for the months ahead", parameter="partition")
    return rt


# --------------------------------------------------------------------------- results


class _Pooled:
    """A read-only attribute for one pooled metric: ``evaluation.msle`` is
    ``evaluation.metrics["msle"]``, None where undefined or not scored."""

    def __init__(self, metric: str, doc: str = "") -> None:
        self.metric = metric
        self.__doc__ = doc or f"The pooled {metric} (None where undefined)."

    def __get__(self, obj: Evaluation | None, owner: type | None = None) -> float | None:
        if obj is None:
            return None
        return obj.scores.pooled.get(self.metric)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A backtest's result: the forecast of every origin and its scores.

    ``metrics`` are the pooled values (raw counts, as ``ewspipe evaluate`` reports them);
    :meth:`to_frame` has every step-, month- and origin-wise value. An ensemble's members
    are in ``members``.
    """

    model: str
    kind: str  # "model" or "ensemble"
    level: str
    run_type: str
    target: str
    forecast: Forecast
    scores: Scores
    members: Mapping[str, Evaluation] = field(default_factory=dict)
    window: str | None = None  # the backtest window's label (e.g. "2005-2008"), else None

    @property
    def partition(self) -> str:
        return self.run_type

    @property
    def metrics(self) -> dict[str, float | None]:
        """Pooled metric -> value (None where undefined)."""
        return dict(self.scores.pooled)

    msle = _Pooled("msle")
    mse = _Pooled("mse")
    rmsle = _Pooled("rmsle")
    mae = _Pooled("mae")
    crps = _Pooled("crps", "None for a point forecast (CRPS is scored on samples only).")

    def to_frame(self) -> pd.DataFrame:
        """One row per (scheme, group, metric): scheme ``step``, ``month`` or ``sequence``
        (the origin), with the value, the rows scored and why a value is missing."""
        frame = self.scores.frame()
        frame.insert(0, "model", self.model)
        return frame

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()
                          if k in ("msle", "mse", "crps") and v is not None)
        where = self.run_type if self.window is None else f"{self.run_type} {self.window}"
        return (f"Evaluation({self.model!r}, {self.kind}, {self.level}, {where}, "
                f"{len(self.forecast):,} rows: {shown})")


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """A model's evaluation on every backtest window (oldest first): ``result["2005-2008"]``
    is that window's :class:`Evaluation`; ``msle`` etc. are means over the windows."""

    model: str
    windows: Mapping[str, Evaluation]

    def __getitem__(self, window: str) -> Evaluation:
        try:
            return self.windows[window]
        except KeyError:
            raise KeyError(f"no backtest window {window!r}; the windows are "
                           f"{', '.join(self.windows)}") from None

    def mean(self, metric: str) -> float | None:
        """The metric's mean over the windows (None if any window lacks it)."""
        values = [e.metrics.get(metric) for e in self.windows.values()]
        if not values or any(v is None for v in values):
            return None
        return sum(float(v) for v in values if v is not None) / len(values)

    @property
    def msle(self) -> float | None:
        """The pooled MSLE averaged over the windows (a sweep's backtest objective)."""
        return self.mean("msle")

    @property
    def crps(self) -> float | None:
        return self.mean("crps")

    def to_frame(self) -> pd.DataFrame:
        """One row per window: its label, test months and every pooled metric."""
        rows = []
        for label, ev in self.windows.items():
            months = ev.forecast.frame[TIME_COLUMN]
            rows.append({"model": self.model, "window": label,
                         "first_month": int(months.min()), "last_month": int(months.max()),
                         **ev.metrics})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        shown = ", ".join(f"{w}: {e.msle:.4f}" for w, e in self.windows.items()
                          if e.msle is not None)
        return f"BacktestResult({self.model!r}, MSLE by window {{{shown}}})"


def _score(forecast_: Forecast, panel: Panel, target: str) -> Scores:
    """The metrics ``ewspipe evaluate`` stores, on the panel's actuals."""
    frame = panel.frame
    actuals = pd.DataFrame({
        TIME_COLUMN: frame[TIME_COLUMN].to_numpy(),
        panel.unit_column: frame[panel.unit_column].to_numpy(),
        "value": frame[target].to_numpy(),
    })
    names = POINT_METRICS + (SAMPLE_METRICS if forecast_.n_samples > 1 else ())
    return evaluate(join_actuals(forecast_, actuals), names)


def _target(panel: Panel, name: str, target: str) -> None:
    if target not in panel.frame.columns:
        raise InputError(f"model {name!r} forecasts column '{target}', which the panel lacks "
                         f"(counts: {', '.join(panel.spec.count_columns)}); pass a panel with it")


# --------------------------------------------------------------------------- entry points


def _evaluate(plan: _Plan, panel: Panel, part: Partition) -> Evaluation:
    """Fit every model of ``plan`` on ``part``, score it, and combine the ensemble."""
    rt, window = part.run_type.value, part.window
    head = plan.ensemble or plan.models[0]
    try:
        check_coverage(head.name, part, first_month=panel.first_month,
                       last_month=panel.last_month, data="the panel",
                       fix="pass data that covers them or choose the other partition")
    except InputError as exc:
        exc.parameter = exc.parameter or "data"
        raise
    results: dict[str, Evaluation] = {}
    for spec in plan.models:
        _target(panel, spec.name, spec.target)
        fc = _fit_predict(spec, panel, part)
        results[spec.name] = Evaluation(spec.name, "model", spec.level.value, rt, spec.target,
                                        fc, _score(fc, panel, spec.target), window=window)
    if plan.ensemble is None:
        return results[plan.models[0].name]
    ens = plan.ensemble
    _check_level(ens.name, ens.level, panel)
    fc, _alerts = combine(ens, {name: r.forecast for name, r in results.items()})
    return Evaluation(ens.name, "ensemble", ens.level.value, rt, ens.target, fc,
                      _score(fc, panel, ens.target), members=results, window=window)


@overload
def backtest(model: ModelLike, data: PanelLike,
             partition: Literal["calibration", "validation",
                                RunType.CALIBRATION, RunType.VALIDATION] = ...,
             *, settings: Settings | None = None) -> Evaluation: ...
@overload
def backtest(model: ModelLike, data: PanelLike,
             partition: Literal["backtest", RunType.BACKTEST],
             *, settings: Settings | None = None) -> BacktestResult: ...
@overload
def backtest(model: ModelLike, data: PanelLike, partition: RunType | str = ...,
             *, settings: Settings | None = None) -> Evaluation | BacktestResult: ...


def backtest(
    model: ModelLike,
    data: PanelLike,
    partition: RunType | str = "calibration",
    *,
    settings: Settings | None = None,
) -> Evaluation | BacktestResult:
    """Evaluate a model or ensemble as ``ewspipe evaluate`` does, in memory.

    Fits once on the partition's training window and predicts steps 1..36 from each of its
    rolling origins using data up to the origin only; scores every metric of the run.

    Args:
        model: a model or ensemble name from the catalog, a model TOML file or a ModelSpec.
        data: a Panel, a DataFrame (long or VIEWS-indexed) or a Parquet/CSV path.
        partition: ``"calibration"`` (default) or ``"validation"`` (an :class:`Evaluation`),
            or ``"backtest"``: the same on every ``[partitions.backtest]`` window, one fit
            per window (a :class:`BacktestResult`).
        settings: partitions and catalog folders; default :func:`load_settings` (the
            ``ewspipe.toml`` of the working directory, or the built-in defaults).
    """
    run_type = _run_type(partition)
    settings = _settings(settings)
    plan = _plan(model, settings)
    panel = load_panel(data)
    if run_type is RunType.BACKTEST:
        windows = {str(p.window): _evaluate(plan, panel, p)
                   for p in settings.partition_scheme().backtest()}
        return BacktestResult((plan.ensemble or plan.models[0]).name, windows)
    return _evaluate(plan, panel, _partition(settings, run_type, panel))


def backtest_forecasts(
    model: ModelLike, data: PanelLike, *, settings: Settings | None = None
) -> dict[str, dict[str, Forecast]]:
    """Window label -> name -> forecast on every backtest window, oldest first: the model's
    own, or an ensemble's members' and their combination as the ensemble's spec says (under
    the ensemble's name). Every window ends before validation's test months, so weights
    learned on these forecasts leave validation out of sample."""
    result = backtest(model, data, "backtest", settings=settings)
    return {label: {**{n: m.forecast for n, m in ev.members.items()}, ev.model: ev.forecast}
            for label, ev in result.windows.items()}


def forecast(model: ModelLike, data: PanelLike, *, settings: Settings | None = None) -> Forecast:
    """Forecast the 36 months after the panel's last month for the units present in it, as
    ``ewspipe forecast`` does: fitted on every month from the forecasting partition's first
    training month up to the last one. Arguments as for :func:`backtest`."""
    settings = _settings(settings)
    plan = _plan(model, settings)
    panel = load_panel(data)
    part = _partition(settings, RunType.FORECASTING, panel)
    members: dict[str, Forecast] = {}
    for spec in plan.models:
        _target(panel, spec.name, spec.target)
        members[spec.name] = _fit_predict(spec, panel, part)
    if plan.ensemble is None:
        return members[plan.models[0].name]
    _check_level(plan.ensemble.name, plan.ensemble.level, panel)
    forecast_, _alerts = combine(plan.ensemble, members)
    return forecast_

