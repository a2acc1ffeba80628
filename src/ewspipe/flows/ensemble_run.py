"""Ensembles in evaluation and forecast runs: plan, aggregate, post-process, reconcile, store.

An ensemble is selected like a model (``--model NAME``, or by default with every model and
ensemble that is not deprecated). Its members run first through the normal per-model path of
:mod:`ewspipe.flows.modelrun` (artifacts keyed by model, config, snapshot, training window and
code, so an unchanged member is reused, never retrained). Then, in memory and from those very
forecasts (same snapshot, same partition, same configuration):

1. every member forecast is checked for NaN/inf (an error naming model, month and unit);
2. the members are aggregated (:func:`ewspipe.ensembles.aggregate.aggregate`);
3. post-processed: negatives set to 0 with an alert;
4. a pgm ensemble with ``reconcile_with`` is rescaled to that cm ensemble's forecast (computed
   earlier in the same run; cm ensembles always come first). Cell ownership: the
   ``[reconciliation] mapping_file`` when set, else the pgm snapshot's own per-month
   ``country_id`` column, read in the forecast origin months. cm countries owning no cell of
   the grid (outside the pgm domain) are left out and counted in the summary. Points and,
   for a sample forecast, every draw are reconciled streamed by month
   (:class:`ewspipe.ensembles.reconcile.Reconciler`: draw j of the cells with draw j of the
   country);
5. scored with the same metrics as models (evaluation runs) and stored as
   ``predictions/<ensemble>.parquet`` and ``metrics/<ensemble>.json``; a reconciled ensemble
   also gets ``reconciliation/<ensemble>.parquet`` (one row per country-month: forecast, cell
   sum before, factor).

Alerts (non-negativity, reconciliation) carry the run id and go into ``run.json`` (``alerts``).
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ewspipe.alerts import Alert
from ewspipe.catalog import Catalog, ModelSpec
from ewspipe.catalog.ensembles import EnsembleSpec
from ewspipe.catalog.loader import display_path
from ewspipe.catalog.rules import Status
from ewspipe.ensembles.aggregate import aggregate
from ewspipe.ensembles.postprocess import check_finite, postprocess
from ewspipe.ensembles.reconcile import (
    CHUNK_VALUES,
    Ownership,
    Reconciler,
    month_chunks,
    read_ownership,
)
from ewspipe.errors import InputError, SpecError
from ewspipe.models.forecast import Forecast
from ewspipe.panel.schema import TIME_COLUMN, Level, Panel
from ewspipe.panel.snapshot import Manifest
from ewspipe.partitions import RunType
from ewspipe.provenance import code_version
from ewspipe.settings import Settings
from ewspipe.store.predictions import write_forecast
from ewspipe.store.runs import RunWriter

__all__ = [
    "EnsembleOutcome", "RunPlan", "combine", "plan_run", "reconcile_by_month", "run_ensembles",
]

Score = Callable[[Forecast, Panel, str], dict[str, Any]]
Check = Callable[[Forecast, Panel, str, str], dict[str, Any] | None]


@dataclass(frozen=True)
class RunPlan:
    """What a run computes: models (requested ones and ensemble members) and ensembles.

    ``ensembles`` is in computation order: cm ensembles (which pgm ensembles reconcile with)
    before pgm ones. ``needed`` names the models whose forecasts ensembles aggregate.
    """

    models: list[ModelSpec]
    ensembles: list[EnsembleSpec]
    needed: frozenset[str]


def _deprecated(spec: EnsembleSpec, catalog: Catalog) -> SpecError:
    where = display_path(catalog.ensemble_files[spec.name])
    return SpecError(
        f"ensemble {spec.name!r} is deprecated and refuses to run; to run it again set "
        f"status = \"shadow\" (or \"deployed\") in {where}, otherwise leave it out"
    )


def _unknown(catalog: Catalog, name: str) -> SpecError:
    known = [*catalog.models, *catalog.ensembles]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return SpecError(
        f"no model or ensemble named {name!r}; known models: "
        f"{', '.join(catalog.models) or 'none'}; ensembles: "
        f"{', '.join(catalog.ensembles) or 'none'}.{hint} `ewspipe models list` shows them all."
    )


def plan_run(catalog: Catalog, names: Sequence[str] | None, level: str | None = None) -> RunPlan:
    """The models and ensembles to run for ``--model`` names (models or ensembles) and
    ``--level``; without names every model and ensemble that is not deprecated.

    An ensemble brings its members and its ``reconcile_with`` ensemble (with that one's
    members), whatever their level: they are inputs, not choices.

    Raises:
        SpecError: an unknown name (with a did-you-mean) or a deprecated model or ensemble.
        InputError: nothing to run at the given level.
    """
    models: list[ModelSpec] = []
    ensembles: list[EnsembleSpec] = []
    if names:
        for name in names:
            if name in catalog.ensembles:
                spec = catalog.ensembles[name]
                if spec.status is Status.DEPRECATED:
                    raise _deprecated(spec, catalog)
                ensembles.append(spec)
            elif name in catalog.models:
                models.append(catalog.require_runnable(name))
            else:
                raise _unknown(catalog, name)
    else:
        models = [s for s in catalog if s.status is not Status.DEPRECATED]
        ensembles = [e for e in catalog.ensembles.values() if e.status is not Status.DEPRECATED]
    if level is not None:
        lvl = Level.parse(level)
        models = [s for s in models if s.level is lvl]
        ensembles = [e for e in ensembles if e.level is lvl]
    if not models and not ensembles:
        raise InputError(
            "no model to run: the catalog has no runnable model or ensemble"
            + (f" at level {level}" if level else "")
            + "; add one with `ewspipe models new NAME` or check --model / --level"
        )
    chosen = {e.name: e for e in ensembles}
    for spec in list(chosen.values()):
        if spec.reconcile_with and spec.reconcile_with not in chosen:
            chosen[spec.reconcile_with] = catalog.ensembles[spec.reconcile_with]
    ordered = sorted(chosen.values(), key=lambda e: (e.level is not Level.CM, e.name))
    needed = frozenset(m for e in ordered for m in e.members)
    present = {s.name for s in models}
    for e in ordered:
        for member in e.members:
            if member not in present:
                models.append(catalog.models[member])
                present.add(member)
    return RunPlan(models=models, ensembles=ordered, needed=needed)


@dataclass
class EnsembleOutcome:
    """One ensemble's result, with the fields of a model's result plus ``ensemble``."""

    model: str
    level: str
    status: str
    snapshot: str
    artifact: str
    reused: bool
    predictions: str
    rows: int
    n_samples: int
    timings: dict[str, float]
    metrics: dict[str, Any] | None
    kind: str
    ensemble: dict[str, Any]
    plausibility: dict[str, Any] | None = None  # from run_ensembles' ``check``

    def fields(self) -> dict[str, Any]:
        return dict(vars(self))


def combine(spec: EnsembleSpec, forecasts: Mapping[str, Forecast]) -> tuple[Forecast, list[Alert]]:
    """The ensemble's post-processed forecast from its members' (each checked finite first, so
    a bad member is named) and the alerts post-processing raised."""
    members = {m: forecasts[m] for m in spec.members}
    for name, fc in members.items():
        check_finite(fc, model=name)
    combined = aggregate(members, method=spec.aggregation,
                         weights=dict(spec.weights) if spec.weights else None,
                         samples=spec.samples, seed=spec.seed)
    return postprocess(combined, model=spec.name)


def _ownership(
    settings: Settings, panel: Panel, manifest: Manifest, origins: np.ndarray,
    cache: dict[str, Ownership],
) -> Ownership:
    path = settings.reconciliation.mapping_path(settings.source_file)
    if path is not None:
        key = str(path)
        if key not in cache:
            cache[key] = read_ownership(path)
        return cache[key]
    frame = panel.frame
    if "country_id" not in frame.columns:
        raise InputError(
            f"pgm snapshot {manifest.id} has no country_id column and no [reconciliation] "
            "mapping_file is set in ewspipe.toml, so cells cannot be assigned to countries; "
            "set mapping_file (e.g. ../shared/data/priogrid_country/priogrid.parquet) or import "
            "a pgm panel with a per-month country_id column"
        )
    months = frame[TIME_COLUMN].to_numpy()
    rows = np.isin(months, origins)
    sub = frame.loc[rows, [TIME_COLUMN, panel.unit_column, "country_id"]]
    return Ownership.from_frame(
        sub.reset_index(drop=True),
        source=f"snapshot {manifest.id} (column country_id)",
    )


def reconcile_by_month(reconciler: Reconciler, forecast: Forecast, *,
                       chunk_values: int = CHUNK_VALUES) -> Forecast:
    """``forecast`` reconciled month chunk by month chunk (at most ``chunk_values``
    cell-draws each) into one output forecast; then ``reconciler.report()`` has the rest.

    The chunks are views of the input, so besides the output only one chunk's draws are
    allocated at a time; the result equals in-memory ``reconcile`` bit for bit.
    """
    point = np.empty_like(forecast.point)
    samples = np.empty(forecast.samples.shape, dtype=np.float64)
    row = 0
    for part in reconciler.run(month_chunks(forecast, max_values=chunk_values)):
        end = row + len(part)
        point[row:end] = part.point
        samples[row:end] = part.samples
        row = end
    return Forecast(frame=forecast.frame, point=point, samples=samples,
                    unit_column=forecast.unit_column)


Defer = Callable[..., None]


def _now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    fn(*args, **kwargs)


def run_ensembles(
    plan: RunPlan,
    forecasts: Mapping[str, Forecast],
    member_reused: Mapping[str, bool],
    *,
    settings: Settings,
    catalog: Catalog,
    run_type: RunType,
    snapshots: Mapping[str, Manifest],
    panels: Mapping[str, Panel],
    writer: RunWriter,
    score: Score | None,
    defer: Defer | None = None,
    check: Check | None = None,
) -> tuple[list[EnsembleOutcome], list[Alert]]:
    """Compute, store and score every ensemble of ``plan`` from its members' forecasts.

    Args:
        plan: from :func:`plan_run`.
        forecasts: member name -> its forecast of this run.
        member_reused: member name -> whether its fitted model was reused.
        settings: reconciliation settings and the settings file (for the mapping path).
        catalog: for member config hashes.
        run_type: the run's run type (stored with the predictions).
        snapshots, panels: per level, the snapshot manifest and panel of this run.
        writer: the run being written.
        score: forecast, panel, target -> metrics dict (None for forecast runs).
        defer: runs a file write, ``defer(fn, *args, **kwargs)``, possibly later in another
            thread (the caller then waits for it before committing); None: write now.
        check: forecast, panel, target, level -> a finding about the final forecast (the
            plausibility check of evaluation and forecast runs) kept in the outcome's
            ``plausibility``; None: no check.

    Returns:
        One outcome per ensemble (in plan order) and every alert raised, stamped with the
        run id.
    """
    later: Defer = defer if defer is not None else _now
    outcomes: list[EnsembleOutcome] = []
    alerts: list[Alert] = []
    done: dict[str, Forecast] = {}
    ownership_cache: dict[str, Ownership] = {}
    rec_settings = settings.reconciliation
    for spec in plan.ensembles:
        level = spec.level.value
        manifest, panel = snapshots[level], panels[level]
        t0 = time.perf_counter()
        forecast, raised = combine(spec, forecasts)
        summary: dict[str, Any] | None = None
        if spec.reconcile_with is not None:
            origins = np.unique(forecast.frame["origin"].to_numpy())
            ownership = _ownership(settings, panel, manifest, origins, ownership_cache)
            reconciler = Reconciler(
                done[spec.reconcile_with], ownership,
                max_factor=rec_settings.max_factor, min_factor=rec_settings.min_factor,
                min_deaths=rec_settings.alert_min_deaths, outside="exclude",
                grid_model=spec.name, country_model=spec.reconcile_with,
            )
            forecast = reconcile_by_month(reconciler, forecast)
            result = reconciler.report()
            summary = result.summary
            raised += list(result.alerts)
            table_path = writer.path / f"reconciliation/{spec.name}.parquet"
            table_path.parent.mkdir(parents=True, exist_ok=True)
            result.table.to_parquet(table_path, index=False)
            summary = {**summary, "table": f"reconciliation/{spec.name}.parquet"}
        done[spec.name] = forecast
        t1 = time.perf_counter()
        rel = f"predictions/{spec.name}.parquet"
        later(write_forecast, forecast, writer.path / rel, metadata={
            "model": spec.name, "kind": "ensemble", "run_type": run_type.value,
            "snapshot": manifest.id, "config_hash": spec.config_hash,
            "members": {m: catalog.models[m].config_hash for m in spec.members},
            "aggregation": spec.aggregation, "samples": spec.samples,
            "reconcile_with": spec.reconcile_with, "status": spec.status.value,
            "code_commit": code_version().commit, "target": spec.target,
        })
        metrics = None
        if score is not None:
            metrics = score(forecast, panel, spec.target)
            later(writer.write_json, f"metrics/{spec.name}.json", metrics)
        t2 = time.perf_counter()
        stamped = [dataclasses.replace(a, run_id=writer.run_id) for a in raised]
        alerts += stamped
        outcomes.append(EnsembleOutcome(
            model=spec.name, level=level, status=spec.status.value, snapshot=manifest.id,
            artifact="", reused=all(member_reused.get(m, False) for m in spec.members),
            predictions=rel, rows=len(forecast), n_samples=forecast.n_samples,
            timings={"features": 0.0, "fit": 0.0, "predict": t1 - t0, "evaluate": t2 - t1},
            metrics=metrics, kind="ensemble",
            plausibility=None if check is None else check(forecast, panel, spec.target, level),
            ensemble={
                "config_hash": spec.config_hash, "members": list(spec.members),
                "weights": {m: spec.weight_of(m) for m in spec.members},
                "aggregation": spec.aggregation, "samples": spec.samples,
                "reconcile_with": spec.reconcile_with, "alerts": len(stamped),
                "reconciliation": summary,
            },
        ))
    return outcomes, alerts

