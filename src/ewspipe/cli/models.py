"""`ewspipe models ...`: list, show, create, check, document and tune model definitions, and
list the transforms their features may use, and learn ensemble weights (`stack`).

Exit codes: 0 success; 2 bad input, which includes an invalid model file (`check` prints its
full report, then exits 2) or an unknown model name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from ewspipe.catalog.ensembles import EnsembleSpec
from ewspipe.catalog.files import FileReport, display_path
from ewspipe.catalog.loader import Catalog, CheckReport, check_models, load_catalog
from ewspipe.catalog.pages import non_default_hyperparameters, write_pages
from ewspipe.catalog.rules import Status
from ewspipe.catalog.scaffold import scaffold_model
from ewspipe.catalog.spec import ModelSpec, toml_value
from ewspipe.cli.choices import LevelName, RunTypeName, StackCombine, StatusName, SweepOn
from ewspipe.cli.output import (
    JSON_OPTION,
    QUIET_OPTION,
    emit,
    progress_on_stderr,
    snapshot_words,
)
from ewspipe.errors import SettingsError, SpecError
from ewspipe.features.transforms import get_transform
from ewspipe.features.transforms import names as transform_names
from ewspipe.panel.schema import Level
from ewspipe.partitions import PartitionScheme
from ewspipe.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="List, show, create, check, document and tune model definitions; "
                  "list the feature transforms.",
                  no_args_is_help=True,
                  rich_markup_mode=None)

MODELS_DIR_OPTION = typer.Option(
    None, "--models-dir",
    help="Folder of <name>.toml model files (default: [workspace] models_dir, i.e. models/ "
    "beside ewspipe.toml or in the working directory). Ensemble names are read from "
    "ensembles/ beside it.",
)


def _partitions(ctx: typer.Context) -> PartitionScheme | None:
    """The settings' partitions: features are checked against their training windows."""
    settings = ctx.obj
    return settings.partition_scheme() if isinstance(settings, Settings) else None


def _dirs(ctx: typer.Context, models_dir: Path | None) -> tuple[Path, Path]:
    if models_dir is not None:
        return models_dir, models_dir.parent / "ensembles"
    settings: Settings = ctx.obj
    return settings.models_dir, settings.ensembles_dir


def _catalog(ctx: typer.Context, models_dir: Path | None) -> Catalog:
    models, ensembles = _dirs(ctx, models_dir)
    return load_catalog(models, ensembles_dir=ensembles, partitions=_partitions(ctx))


def _status(value: str | None) -> Status | None:
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        raise SpecError(
            f"option --status: unknown status {value!r}; use one of "
            f"{', '.join(repr(s.value) for s in Status)}"
        ) from None


def _summary(spec: ModelSpec) -> dict[str, Any]:
    return {"name": spec.name, "level": spec.level.value, "algorithm": spec.algorithm,
            "target": spec.target, "status": spec.status.value, "owner": spec.owner}


def _ensemble_summary(spec: EnsembleSpec) -> dict[str, Any]:
    return {"name": spec.name, "kind": "ensemble", "level": spec.level.value,
            "aggregation": spec.aggregation, "members": list(spec.members),
            "samples": spec.samples, "reconcile_with": spec.reconcile_with,
            "target": spec.target, "status": spec.status.value, "owner": spec.owner}


@app.command("list")
def list_models(
    ctx: typer.Context,
    level: LevelName | None = typer.Option(None, "--level", help="Only this level: cm or pgm."),
    status: StatusName | None = typer.Option(
        None, "--status", help="Only this status: deployed, shadow, baseline or deprecated."
    ),
    models_dir: Path | None = MODELS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List models (name, level, algorithm, target, status, owner), sorted by name."""
    lvl = Level.parse(level) if level is not None else None
    sts = _status(status)
    catalog = _catalog(ctx, models_dir)
    specs = catalog.filter(level=lvl, status=sts)
    rows = [_summary(s) for s in specs]
    ensembles = [_ensemble_summary(e) for e in catalog.ensembles.values()
                 if (lvl is None or e.level is lvl) and (sts is None or e.status is sts)]
    data = {"models_dir": display_path(catalog.models_dir), "models": rows,
            "ensembles": ensembles, "notes": list(catalog.notes)}

    def human() -> str:
        if not rows and not ensembles:
            return "no models match" if catalog.models else (
                f"no models in {display_path(catalog.models_dir)}; "
                "create one with `ewspipe models new NAME`")
        # ensembles share the table: kind ensemble, "algorithm" = aggregation of N members
        shown = rows + [{**e, "algorithm": f"ensemble: {e['aggregation']} of "
                         f"{len(e['members'])}"} for e in ensembles]
        cols = ("name", "level", "algorithm", "target", "status", "owner")
        widths = {c: max(len(c), *(len(r[c]) for r in shown)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in shown]
        return "\n".join(lines + [f"note: {n}" for n in catalog.notes])

    emit(data, as_json, human)


@app.command("features")
def list_features(
    level: LevelName | None = typer.Option(
        None, "--level", help="Only the transforms valid at this level: cm or pgm."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the transforms feature expressions may use: signature, levels, meaning, example."""
    lvl = Level.parse(level) if level is not None else None
    rows = []
    for name in transform_names():
        spec = get_transform(name)
        if lvl is None or lvl in spec.levels:
            rows.append({"name": name, "signature": spec.signature,
                         "levels": sorted(lv.value for lv in spec.levels),
                         "summary": spec.summary, "example": spec.example})

    def human() -> str:
        return "\n".join(f"{r['signature']}  [{'/'.join(r['levels'])}]\n    {r['summary']}\n"
                         f"    e.g. {r['example']}" for r in rows)

    emit({"transforms": rows}, as_json, human)


@app.command("show")
def show_model(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name (adjective_noun)."),
    models_dir: Path | None = MODELS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a model's (or an ensemble's) full definition, its file and its config hash."""
    catalog = _catalog(ctx, models_dir)
    if name in catalog.ensembles:
        _show_ensemble(catalog, catalog.ensembles[name], as_json)
        return
    spec = catalog.get(name)
    non_default = non_default_hyperparameters(spec)
    data = {
        "file": display_path(catalog.files[name]),
        "config_hash": spec.config_hash,
        "spec": spec.model_dump(mode="json"),
        "non_default_hyperparameters": non_default,
    }

    def human() -> str:
        lines = [
            f"model {spec.name}  ({data['file']})",
            f"  config hash   {spec.config_hash}",
            f"  level         {spec.level.value}",
            f"  target        {spec.target}",
            f"  algorithm     {spec.algorithm}",
            f"  status        {spec.status.value}",
            f"  owner         {spec.owner}",
            f"  description   {spec.description}",
            f"  features      {len(spec.features)}",
            *(f"    {f}" for f in spec.features),
            "  hyperparameters (as written; * differs from the default)",
        ]
        flat = _flatten(spec.hyperparameters_dict())
        lines += [
            f"    {'*' if key in non_default else ' '} {key} = {toml_value(v) or repr(v)}"
            for key, v in flat.items()
        ] or ["    (none: all defaults)"]
        if spec.sweep is not None:
            lines.append(f"  sweep         {len(spec.sweep.space)} searched key(s), "
                         f"{spec.sweep.trials} trials: `ewspipe models sweep {spec.name}`")
            lines += [f"    {k}: {d.describe()}" for k, d in spec.sweep.space.items()]
        return "\n".join(lines)

    emit(data, as_json, human)


def _show_ensemble(catalog: Catalog, spec: EnsembleSpec, as_json: bool) -> None:
    data = {"kind": "ensemble", "file": display_path(catalog.ensemble_files[spec.name]),
            "config_hash": spec.config_hash, "spec": spec.model_dump(mode="json")}

    def human() -> str:
        lines = [
            f"ensemble {spec.name}  ({data['file']})",
            f"  config hash     {spec.config_hash}",
            f"  level           {spec.level.value}",
            f"  target          {spec.target}",
            f"  aggregation     {spec.aggregation}",
            f"  samples         {spec.samples}" + (f" (seed {spec.seed})"
                                                     if spec.samples == "pool" else ""),
            f"  reconcile with  {spec.reconcile_with or '-'}",
            f"  status          {spec.status.value}",
            f"  owner           {spec.owner}",
            f"  description     {spec.description}",
            f"  members         {len(spec.members)} (weight, status)",
        ]
        lines += [f"    {m:<20} {spec.weight_of(m):.3f}  {catalog.models[m].status.value}"
                  for m in spec.members]
        return "\n".join(lines)

    emit(data, as_json, human)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


@app.command("new")
def new_model(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="New model name: adjective_noun, e.g. amber_tree."),
    level: LevelName = typer.Option("cm", "--level", help="cm or pgm."),
    algorithm: str = typer.Option("stepshifter", "--algorithm", help="A registered algorithm."),
    owner: str | None = typer.Option(None, "--owner", help="Owner (default: your user name)."),
    target: str = typer.Option("ged_sb", "--target", help="Count column to forecast."),
    status: StatusName = typer.Option("shadow", "--status", help="Initial deployment status: "
                                      "deployed, shadow, baseline or deprecated."),
    description: str | None = typer.Option(None, "--description", help="One or two sentences."),
    models_dir: Path | None = MODELS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create models/NAME.toml: a valid, commented definition to edit (refuses taken names)."""
    models, ensembles = _dirs(ctx, models_dir)
    path = scaffold_model(
        name, models_dir=models, ensembles_dir=ensembles,
        level=Level.parse(level), algorithm=algorithm, owner=owner,
        target=target, status=_status(status) or Status.SHADOW, description=description,
    )
    data = {"created": display_path(path), "name": name, "level": level,
            "algorithm": algorithm, "status": status}
    emit(data, as_json, lambda: (
        f"created {display_path(path)}; edit its features, hyperparameters and description, "
        "then run `ewspipe models check`"))


def _file_lines(kind: str, files: Sequence[FileReport[Any]], folder: Path) -> list[str]:
    """The checked files of one kind: a count line, then ok (with config hash) or FAIL."""
    bad = sum(not f.ok for f in files)
    lines = [f"checked {len(files)} {kind} file(s) in {display_path(folder)}: "
             f"{len(files) - bad} valid, {bad} invalid"]
    for f in files:
        if f.ok and f.spec is not None:
            lines.append(f"  ok    {display_path(f.path)}  (config {f.spec.config_hash[:12]})")
        else:
            lines.append(f"  FAIL  {display_path(f.path)}")
            lines += [f"        {p}" for p in f.problems]
    return lines


def _check_lines(report: CheckReport) -> list[str]:
    lines = _file_lines("model", report.files, report.models_dir)
    if report.ensembles:
        lines += _file_lines("ensemble", report.ensembles, report.ensembles_dir)
    lines += [f"note: {n}" for n in report.notes]
    return lines


@app.command("check")
def check(
    ctx: typer.Context,
    models_dir: Path | None = MODELS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate every model file and report all problems; exit 2 if any file is invalid."""
    models, ensembles = _dirs(ctx, models_dir)
    report = check_models(models, ensembles_dir=ensembles, partitions=_partitions(ctx))
    doc = report.to_dict()
    which = ("model and ensemble files" if any(not e.ok for e in report.ensembles)
             else "model files")
    summary = (f"{len(report.problems)} problem(s) in {which}; fix them and re-run "
               "`ewspipe models check`")
    if not report.ok:  # the one JSON document carries the error like every refusal's
        doc = {"error": "\n".join([summary + ":", *(f"  {p}" for p in report.problems)]),
               "kind": SpecError.__name__, "exit_code": SpecError.exit_code, **doc}
    emit(doc, as_json, lambda: "\n".join(_check_lines(report)))
    if not report.ok:
        if not as_json:
            typer.echo(f"error: {summary}", err=True)
        raise typer.Exit(SpecError.exit_code)


@app.command("catalog")
def catalog_pages(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: docs/catalog in the workspace root)."
    ),
    models_dir: Path | None = MODELS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the Markdown model catalog: models_cm.md and models_pgm.md.

    With stored backtest evaluations (`ewspipe evaluate --run-type backtest`) of the current
    definitions, each page also shows the scores on every backtest window and the rank
    stability of its models and ensembles.
    """
    catalog = _catalog(ctx, models_dir)
    target = out if out is not None else catalog.models_dir.parent / "docs" / "catalog"
    backtest = _stored_backtest(ctx.obj, catalog)
    paths = write_pages(catalog, target, backtest=backtest)
    counts = {lvl.value: len(catalog.filter(level=lvl)) for lvl in Level}
    data = {"pages": [display_path(p) for p in paths], "models": counts,
            "backtest": None if backtest is None else {
                "windows": backtest[0], "scored": sorted(backtest[1])}}
    emit(data, as_json, lambda: "\n".join(
        [f"wrote {display_path(p)} ({counts[lvl.value]} model(s))"
         for p, lvl in zip(paths, Level, strict=True)]
        + ([f"  with backtest scores of {len(backtest[1])} model(s) and ensemble(s) on "
            f"{', '.join(backtest[0])}"] if backtest is not None else [])))


def _stored_backtest(settings: Settings, catalog: Catalog
                     ) -> tuple[list[str], dict[str, dict[str, float | None]]] | None:
    """The windows and the stored backtest scores of the catalog's current definitions, or
    None when there are none (or the backtest windows do not fit these partitions)."""
    from ewspipe.flows.backtest_run import stored_backtest  # the engine: only when asked

    try:
        windows = [str(p.window) for p in settings.partition_scheme().backtest()]
    except SettingsError:
        return None
    configs = {s.name: s.config_hash for s in catalog}
    configs.update({e.name: e.config_hash for e in catalog.ensembles.values()})
    scores = stored_backtest(settings.runs_dir, windows, configs)
    return (windows, scores) if scores else None


def _score(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _sweep_lines(doc: dict[str, Any]) -> str:
    counts, best, on = doc["counts"], doc["best"], doc["on"]
    objective = f"{doc['scheme']} {doc['metric']}"
    where = "the mean over the backtest windows" if on == "backtest" else "calibration"
    reused = doc.get("tasks", {}).get("reused", 0)
    lines = [
        f"sweep of {doc['model']}: study {doc['study']} ({doc['storage']}), snapshot "
        f"{doc['snapshot']}",
        f"  {counts['complete'] + counts['failed']} of {doc['budget']} trials done: "
        f"{counts['evaluated']} evaluated now ({counts['resumed']} resumed), {counts['kept']} "
        f"kept from earlier runs, {counts['failed']} failed"
        + (f"; {reused} evaluation(s) reused from the task cache" if reused else ""),
        f"  objective: {objective} on {where} ({doc['direction']}); "
        f"{doc['settings']['sampler']} seed {doc['settings']['seed']}, batch "
        f"{doc['settings']['batch_size']}, executor {doc['executor']}",
        f"  best trial #{best['trial']}: {doc['metric']} {_score(best[on])} "
        f"{on}, {_score(best['validation'])} validation (reported, not selected on)",
    ]
    if best.get("windows"):
        lines.append("    by window: " + ", ".join(f"{w} {_score(v)}"
                                                   for w, v in best["windows"].items()))
    lines += [f"    {k} = {toml_value(v) or repr(v)}" for k, v in best["params"].items()]
    refs = doc["references"]
    if "current" in refs:
        cur = refs["current"]
        lines.append(f"  current definition: {_score(cur[on])} {on}, "
                     f"{_score(cur.get('validation'))} validation")
    if "untuned" in refs:
        lines.append(f"  untuned (searched keys at their defaults): "
                     f"{_score(refs['untuned'][on])} {on}")
    lines.append("  top: " + ", ".join(f"#{t['trial']} {_score(t['score'])}"
                                       for t in doc["top"]))
    tracking = doc["tracking"]
    if tracking.get("warning"):
        lines.append(f"  warning: {tracking['message']}")
    elif tracking.get("status") == "logged":
        lines.append(f"  tracked: MLflow experiment {tracking['experiment']}, run "
                     f"{tracking['parent_run_id']} ({tracking['uri']})")
    lines += [f"  note: {n}" for n in doc["notes"] if not n.startswith("tracking:")]
    applied = doc.get("applied")
    if applied is not None:
        lines.append(f"  applied to {applied['file']} (config hash "
                     f"{applied['config_hash'][:12]}); review the diff" if applied["applied"]
                     else f"  not applied: {applied['reason']}")
    return "\n".join(lines)


@app.command("sweep")
def sweep_model(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name; its file needs a [sweep] table."),
    trials: int | None = typer.Option(
        None, "--trials", help="Trial budget (default: [sweep] trials); stored trials count."),
    executor: str = typer.Option(
        "local", "--executor",
        help="local (this process), dask (a local Dask cluster) or a running Dask scheduler: "
        "tcp://HOST:PORT, tls://HOST:PORT (also ucx, ws, wss)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Concurrent trials: local threads (default 1) or local Dask "
        "workers."),
    run_type: RunTypeName = typer.Option(
        "calibration", "--run-type", help="Only calibration: tuning on validation is leakage."),
    on: SweepOn = typer.Option(
        "backtest", "--on", help="The objective: backtest (the mean over the "
        "[partitions.backtest] windows, one fit per window) or calibration alone."),
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", metavar="<id>",
        help="Snapshot id per level (repeatable; the one of the model's "
        "level is used; default: the latest of that level)."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard this sweep's stored trials."),
    apply: bool = typer.Option(
        False, "--apply", help="Write the best hyperparameters into models/NAME.toml if they "
        "beat the current definition on the objective (exit 1 if not)."),
    models_dir: Path | None = MODELS_DIR_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Tune a model's hyperparameters on the backtest windows (Optuna; resumable).

    Each trial is scored like `ewspipe evaluate` (13 rolling origins x 36 steps) on every
    backtest window, and the mean is the objective (`--on calibration`: calibration alone);
    the best trial is reported once on validation, never selected on it. The study
    is stored in <state_dir>/sweeps/NAME.db: an interrupted sweep continues where it stopped.
    """
    from ewspipe.flows.sweep import run_sweep  # Optuna and Dask load only when sweeping

    settings: Settings = ctx.obj
    catalog = _catalog(ctx, models_dir)
    with snapshot_words(), progress_on_stderr(quiet) as reporter:
        result = run_sweep(
            settings, catalog, name, trials=trials, executor=executor, workers=workers,
            run_type=run_type, snapshot_ref=snapshot, fresh=fresh, apply=apply,
            progress=reporter.note, on=on,
        )
    doc = result.to_dict()
    emit(doc, as_json, lambda: _sweep_lines(doc))
    if result.applied is not None and not result.applied["applied"]:
        raise typer.Exit(1)


def _stack_lines(doc: dict[str, Any]) -> str:
    lines = [
        f"stacking of {doc['ensemble']} on snapshot {doc['snapshot']}: shrinkage "
        f"{doc['shrinkage']:g} toward equal weights, {doc['combine']} combination",
        "  " + ", ".join(f"{m} {doc['weights'][m]:.3f} (fitted {doc['fitted_weights'][m]:.3f})"
                         for m in doc["members"]),
        f"  {'window':<12} {'rows':>8} {'stacked':>9} {'equal':>9} "
        f"{'as written':>11} {'gain':>7}",
    ]
    for w in doc["windows"]:
        lines.append(f"  {w['window']:<12} {w['rows']:>8,} {w['stacked_msle']:>9.4f} "
                     f"{w['equal_msle']:>9.4f} {w['current_msle']:>11.4f} "
                     f"{100 * w['gain_vs_equal']:>6.1f}%")
    pooled = doc["pooled"]
    lines.append(f"  {'pooled':<12} {'':>8} {pooled['stacked_msle']:>9.4f} "
                 f"{pooled['equal_msle']:>9.4f}")
    unscored = sum(w["unscored"] for w in doc["windows"])
    if unscored:
        lines.append(f"  {unscored:,} forecast row(s) without an actual left out, as "
                     "evaluation leaves them unscored")
    lines.append(f"  ('equal' = equal-weight {doc['combine']}; 'as written' = the file's "
                 f"{doc['current_aggregation']} as it stands; MSLE on raw counts)")
    applied = doc["applied"]
    lines.append(f"  applied to {applied['file']} (aggregation = \"{doc['combine']}\", [weights], "
                 f"[stacking]; config hash {applied['config_hash'][:12]}); review the diff"
                 if applied is not None else "  not written: add --apply to write the weights")
    return "\n".join(lines)


@app.command("stack")
def stack_ensemble(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Ensemble name (ensembles/NAME.toml)."),
    windows: int | None = typer.Option(
        None, "--windows", min=1, help="Use the N latest [partitions.backtest] windows "
        "(default: all; never validation)."),
    combine: StackCombine | None = typer.Option(
        None, "--combine", help="The aggregation whose weights are learned: logmean (log "
        "scale) or mean (counts). Default: the file's [stacking] combine, else logmean."),
    shrinkage: float | None = typer.Option(
        None, "--shrinkage", min=0.0, max=1.0,
        help="s in [0, 1]: weights = (1 - s) * fitted + s / M (default: the file's "
        "[stacking] shrinkage, else 0.5)."),
    snapshot: list[str] | None = typer.Option(
        None, "--snapshot", metavar="<id>",
        help="Snapshot id (default: the latest of the ensemble's level)."),
    apply: bool = typer.Option(
        False, "--apply", help="Write the aggregation, the weights and a [stacking] "
        "record into ensembles/NAME.toml."),
    models_dir: Path | None = MODELS_DIR_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Learn an ensemble's weights on windows before validation (stacking with shrinkage).

    Every member is fitted and scored on each window in this process (nothing is stored);
    the weights of the logmean combination minimise the pooled MSLE, are shrunk toward equal
    weights, and are compared with equal weights on every window.
    """
    from ewspipe.flows.stacking import run_stacking

    settings: Settings = ctx.obj
    catalog = _catalog(ctx, models_dir)
    with snapshot_words(), progress_on_stderr(quiet) as reporter:
        result = run_stacking(settings, catalog, name, windows=windows, shrinkage=shrinkage,
                              combine=combine, snapshot_ref=snapshot, apply=apply,
                              progress=reporter.note)
    doc = result.to_dict()
    emit(doc, as_json, lambda: _stack_lines(doc))
