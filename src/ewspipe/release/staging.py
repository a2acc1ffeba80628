"""The staging validation cycle (``ewspipe release stage``): run every gate for a candidate
commit against production, on the data production last ran on, and write the report.

The candidate and production's head are each checked out into a throw-away worktree and run
as child processes with their own code and production's settings, each in its own state
folder under ``<state_dir>/staging/sides/`` (keyed by commit, settings and snapshots, so a
re-stage reuses earlier runs and production's evaluation); the content-addressed artifact
stores are shared, so an unchanged model is trained once for both sides. Nothing is written into
production's state or the user's working tree. Gates: sync, integrity, tests, inference,
drift, performance, forecast diff (docs/releasing.md). The report goes to
``<state_dir>/staging/<candidate sha[:12]>_<snapshots>/report.{json,html}``.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ewspipe.atomic import write_text
from ewspipe.errors import InputError
from ewspipe.layout import StateLayout
from ewspipe.panel.schema import Panel
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.partitions import RunType
from ewspipe.release.gates import drift_gate, integrity_gate, sync_gate, tests_gate
from ewspipe.release.gates_outputs import (
    StoredForecast,
    forecast_diff_gate,
    inference_gate,
    performance_gate,
    read_run_forecasts,
)
from ewspipe.release.git import Git
from ewspipe.release.manifest import release_engine
from ewspipe.release.sides import (
    STAGING_ENV,
    CommandResult,
    Side,
    production_toml_ok,
    settings_text,
    side_state,
    snapshot_key,
)
from ewspipe.release.staging_html import render_html
from ewspipe.release.staging_report import GateResult, StagingReport
from ewspipe.settings import Settings
from ewspipe.store.run_record import MonthlyRunRecord
from ewspipe.store.statedb import open_state_db

__all__ = ["GateResult", "StagingReport", "stage"]

Progress = Callable[[str], None]
RUN_GATES = ("inference", "performance", "forecast_diff")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- snapshots


def _named_snapshots(store: SnapshotStore,
                     snapshot: str | Sequence[str] | None) -> dict[str, str]:
    """``snapshot``: ids (or unique prefixes), one per level; a comma-separated string is
    still read as several (the form ``release stage --snapshot`` took before it repeated)."""
    given = [snapshot] if isinstance(snapshot, str) else list(snapshot or [])
    shown = ",".join(given)
    named: dict[str, str] = {}
    for ref in (r.strip() for value in given for r in value.split(",")):
        if not ref:
            continue
        manifest = store.get(ref)  # SnapshotNotFound (an InputError) names the ref
        if manifest.level in named:
            raise InputError(f"snapshot {shown!r}: two snapshots given for level "
                             f"{manifest.level}; name one per level", parameter="snapshot")
        named[manifest.level] = manifest.id
    if snapshot is not None and not named:
        raise InputError(f"snapshot {shown!r} names no snapshot; pass an id from "
                         "`ewspipe data list`", parameter="snapshot")
    return named


def _production_snapshots(settings: Settings) -> dict[str, str]:
    """The snapshots of production's newest run that recorded them (empty: never ran)."""
    env = settings.run.production_environment
    env_layout = settings.layout.env(env)
    if not settings.run.state_url and not env_layout.state_db.is_file():
        return {}  # never create production's state database by looking
    for record in open_state_db(settings.run.state_url, env_layout.root).run_records(env, limit=20):
        if record.snapshot_ids:
            return record.snapshot_ids
    return {}


def _choose_snapshots(store: SnapshotStore, levels: set[str], named: dict[str, str],
                      production: dict[str, str]) -> tuple[dict[str, str], str | None]:
    chosen, latest = {}, []
    for level in sorted(levels | set(named)):
        if level in named:
            chosen[level] = named[level]
        elif level in production:
            sid = production[level]
            if not (store.root / sid).is_dir():
                raise InputError(f"production's last run used snapshot {sid}, which is no "
                                 f"longer in {store.root}; re-import it or pass snapshot=ID")
            chosen[level] = sid
        else:
            chosen[level] = store.latest(level).id  # SnapshotNotFound says how to import one
            latest.append(level)
    note = None
    if latest:
        note = (f"production never ran on level(s) {', '.join(latest)}: staged on the latest "
                "snapshot instead of production's")
    return chosen, note


# --------------------------------------------------------------------------- side runs


def _artifact_files(side: Side) -> dict[str, tuple[int, int]]:
    """The monthly run's artifact files (``<model>/forecasting/...``) in the side's cache;
    the evaluations running meanwhile write other run types into the same shared cache."""
    root = side.layout.artifacts
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.glob(f"*/{RunType.FORECASTING.value}/**/*")
            if p.is_file() and ".tmp" not in p.as_posix()}


def _forecasts(side: Side, result: CommandResult) -> dict[str, StoredForecast] | None:
    run = MonthlyRunRecord.from_output(result.doc)
    if result.returncode not in (0, 1) or run is None:
        return None
    return read_run_forecasts(side.env_state, run)


def _monthly(side: Side, timeout: float, say: Progress) -> tuple[CommandResult,
                                                                  dict[str, StoredForecast] | None]:
    say(f"[{side.name}] monthly run ({side.commit[:12]})")
    done = side.ewspipe("run", "--env", STAGING_ENV, timeout=timeout)
    return done, _forecasts(side, done)


_REPEATED = ("train:", "forecast:", "ensembles", "qa", "store", "report", "alerts")


def _repeat(side: Side, timeout: float, say: Progress) -> tuple[
        CommandResult, dict[str, StoredForecast] | None, dict[str, Any]]:
    """Run again from the stored artifacts only: the cached results of every task from
    training on and the outputs removed (the input drift checks are kept), so every forecast
    is recomputed from a hash-verified reload of the trained artifacts."""
    before = _artifact_files(side)
    tasks = side.env_layout.tasks
    for path in tasks.rglob("*.json") if tasks.is_dir() else ():
        try:
            task = str(json.loads(path.read_text()).get("task", ""))
        except (OSError, ValueError):
            task = ""
        if not task or task.startswith(_REPEATED):
            path.unlink()
    for folder in (side.env_layout.predictions, side.env_layout.work):
        shutil.rmtree(folder, ignore_errors=True)
    say(f"[{side.name}] repeated run from the stored artifacts")
    done = side.ewspipe("run", "--env", STAGING_ENV, timeout=timeout)
    after = _artifact_files(side)
    new = [k for k in sorted(after) if k.endswith("manifest.json") and before.get(k) != after[k]]
    # a new artifact under a new code fingerprint means the code itself changed while staging
    # (an edited installation), not that reloading failed: reported, judged separately
    codes = {_artifact_code(side, k) for k in before if k.endswith("manifest.json")}
    run = MonthlyRunRecord.from_output(done.doc)
    ran = run.ran if run is not None else []
    info = {"reloaded": sum(str(t).startswith("train:") for t in ran) - len(new),
            "retrained": [k for k in new if _artifact_code(side, k) in codes],
            "code_changed": [k for k in new if _artifact_code(side, k) not in codes],
            "hashes": _artifact_hashes(side)}
    return done, _forecasts(side, done), info


def _artifact_hashes(side: Side) -> dict[str, dict[str, Any]]:
    """Per model, the artifact the candidate's run used (its train task's output) and the
    sha256 of each of its files, as its manifest records them (verified on every load): the
    release manifest's artifact hashes."""
    found: dict[str, dict[str, Any]] = {}
    tasks = side.env_layout.tasks
    for path in sorted(tasks.rglob("*.json")) if tasks.is_dir() else ():
        try:
            doc = json.loads(path.read_text())
            if not str(doc.get("task", "")).startswith("train:"):
                continue
            model, digest = doc["output"]["model"], doc["output"]["artifact_key"]
            runs = side.layout.artifacts / model
            [manifest] = sorted(runs.glob(f"*/*_{digest[:16]}/manifest.json"))[-1:]
            art = json.loads(manifest.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found[model] = {"artifact": art["directory"], "key": digest,
                        "files": dict(art["files"]), "trained_at": art.get("trained_at")}
    return found


def _artifact_code(side: Side, manifest: str) -> str | None:
    try:
        doc = json.loads((side.layout.artifacts / manifest).read_text())
        return str(doc["key"]["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _evaluate(side: Side, run_type: str, snapshots: Mapping[str, str], timeout: float,
              say: Progress) -> CommandResult:
    """``ewspipe evaluate --run-type RT``, reused from the side's cache when stored."""
    name = f"evaluate-{run_type}"
    cached = side.cached(name)
    if cached and (Path(cached.get("path", "")) / "run.json").is_file():
        say(f"[{side.name}] {run_type} evaluation reused ({cached.get('run_id')})")
        return CommandResult(("evaluate", "--run-type", run_type), 0, cached, "")
    say(f"[{side.name}] {run_type} evaluation ({side.commit[:12]})")
    args = ["evaluate", "--run-type", run_type]
    for sid in snapshots.values():
        args += ["--snapshot", sid]
    done = side.ewspipe(*args, timeout=timeout)
    if done.returncode == 0 and done.doc is not None:
        side.cache(name, done.doc)
    return done


# --------------------------------------------------------------------------- the cycle


@contextmanager
def _trees(git: Git, candidate: str, production: str | None) -> Iterator[
        tuple[Path, Path | None]]:
    with ExitStack() as stack:
        cand = stack.enter_context(git.worktree(candidate))
        prod = stack.enter_context(git.worktree(production)) if production else None
        yield cand, prod


def _production_settings(text: str | None) -> Settings:
    try:
        return Settings.model_validate(tomllib.loads(text or ""))
    except ValidationError as exc:
        raise InputError(f"production's ewspipe.toml is invalid: {exc}") from exc


def _skipped(gate: str, why: str) -> GateResult:
    return GateResult(gate, "SKIP", f"not run: {why}", {"reason": why})


def _write_report(report: StagingReport) -> None:
    doc = report.to_dict()
    final = Path(report.json_path).parent
    final.mkdir(parents=True, exist_ok=True)
    for path, text in ((Path(report.json_path), json.dumps(doc, indent=2, default=str) + "\n"),
                       (Path(report.html_path), render_html(doc))):
        write_text(path, text)


def stage(repo: Path, settings: Settings, *, candidate: str | None = None,
          snapshot: str | Sequence[str] | None = None,
          skip_tests_reason: str | None = None,
          validation: bool = False, progress: Progress | None = None) -> StagingReport:
    """Run every gate for ``candidate`` (default: the development branch's head) of the git
    repository ``repo`` against production's head, and write the report.

    Args:
        repo: the product repository (any folder inside it).
        settings: the workspace settings: branch names, where snapshots and state live.
            Pipeline settings and gate thresholds come from production's ``ewspipe.toml``
            (the candidate cannot loosen its own gates).
        candidate: a branch, tag or commit.
        snapshot: snapshot ids to stage on, one per level (a list, or one string, where
            commas separate ids); default: the snapshots of production's last run, else the
            latest (a WARN on the drift gate).
        skip_tests_reason: skip the tests gate, recording this reason.
        validation: evaluate on the validation partition too.
        progress: called with one line per step.

    Raises:
        InputError: ``repo`` is not a git repository, the candidate ref or a snapshot is
            unknown, production's settings are invalid, a level has no snapshot.
    """
    say = progress or (lambda _line: None)
    started = _now()
    git = Git(Path(repo))
    root = git.root
    rel = settings.release
    ref = candidate or rel.development_branch
    cand_sha = git.resolve(ref, what="candidate")
    engine = release_engine(git, cand_sha)  # what validates the candidate, recorded
    prod_sha = git.rev(rel.production_branch)
    prod_toml = git.show(prod_sha or cand_sha, "ewspipe.toml")
    production_toml_ok(prod_toml)
    prod_settings = _production_settings(prod_toml)
    gates_cfg = prod_settings.release
    config_text = settings_text(prod_toml)
    store = SnapshotStore(settings.snapshot_dir)
    named = _named_snapshots(store, snapshot)
    last_production = _production_snapshots(settings)
    layout = settings.layout
    timeout = gates_cfg.run_timeout_seconds

    with _trees(git, cand_sha, prod_sha) as (cand_tree, prod_tree):
        probe = Side("candidate", cand_sha, cand_tree, cand_tree.parent / "probe-state")
        probe.config.write_text(config_text, encoding="utf-8")
        say(f"[candidate] {ref} = {cand_sha[:12]}; production = "
            f"{prod_sha[:12] if prod_sha else 'none'}")
        sync = sync_gate(root, cand_sha, prod_sha, production_branch=rel.production_branch)
        integrity, items = integrity_gate(root, probe, prod_sha, timeout=timeout)
        # the candidate's levels and production's (its side must run on the same data)
        levels = {i["level"] for i in items if i["status"] != "deprecated"}
        levels |= set(last_production)
        snaps, note = _choose_snapshots(store, levels or {m.level for m in store.list()},
                                        named, last_production)
        if not snaps:
            raise InputError(f"no snapshot in {store.root} to stage on; import one with "
                             "`ewspipe data import panel FILE --level cm`")
        panels: dict[str, tuple[str, Panel]] = {
            lvl: (sid, store.load(sid)) for lvl, sid in snaps.items()}
        cand = replace(probe, state=side_state(layout.staging_sides, cand_sha, config_text,
                                               snaps))
        cand.prepare(config_text, snaps, store.root, layout.staging_artifacts)
        say("[candidate] tests")
        tests = tests_gate(cand, gates_cfg, skip_tests_reason)
        say("[data] drift")
        drift = drift_gate(prod_settings, panels, fail_severity=gates_cfg.drift_fail_severity,
                           snapshot_note=note)
        blocked = [g.gate for g in (sync, integrity) if g.status == "FAIL"]
        if blocked:
            why = f"the {' and '.join(blocked)} gate failed; fix that first"
            inference, performance, diff = (_skipped(g, why) for g in RUN_GATES)
        else:
            inference, performance, diff = _run_gates(
                cand, prod_tree, prod_sha, items, panels, snaps, config_text, layout,
                prod_settings, store.root, validation=validation, say=say)
    gates = (sync, integrity, tests, inference, drift, performance, diff)
    out = layout.staging_report(f"{cand_sha[:12]}_{snapshot_key(snaps)}")
    report = StagingReport(
        candidate_commit=cand_sha, candidate_ref=ref, production_commit=prod_sha,
        snapshots=snaps, gates=gates, started_at=started, finished_at=_now(),
        json_path=str(out / "report.json"), html_path=str(out / "report.html"),
        engine=engine)
    _write_report(report)
    say(f"staging {'passed' if report.passed else 'FAILED'}: " + ", ".join(
        f"{g.gate} {g.status}" for g in gates))
    return report


def _run_gates(cand: Side, prod_tree: Path | None, prod_sha: str | None,
               items: list[dict[str, Any]], panels: dict[str, tuple[str, Panel]],
               snaps: dict[str, str], config_text: str, layout: StateLayout,
               prod_settings: Settings, store_dir: Path, *, validation: bool, say: Progress
               ) -> tuple[GateResult, GateResult, GateResult]:
    """Inference, performance and forecast diff: the gates that need pipeline runs.

    Two lanes share the work: the monthly runs (candidate, its repeat, then production) and
    the evaluations (candidate, then production). Each lane is sequential, so the second
    side reuses every artifact the first one trained for an unchanged model, and the
    candidate's repeat sees no artifact written by anyone else."""
    gates_cfg = prod_settings.release
    timeout = gates_cfg.run_timeout_seconds
    run_types = ("calibration", "validation") if validation else ("calibration",)
    prod = None
    if prod_tree is not None and prod_sha is not None:
        prod = Side("production", prod_sha, prod_tree,
                    side_state(layout.staging_sides, prod_sha, config_text, snaps))
        prod.prepare(config_text, snaps, store_dir, layout.staging_artifacts)

    def evaluations() -> dict[str, tuple[CommandResult, CommandResult | None]]:
        return {rt: (_evaluate(cand, rt, snaps, timeout, say),
                     _evaluate(prod, rt, snaps, timeout, say) if prod else None)
                for rt in run_types}

    with ThreadPoolExecutor(max_workers=1) as pool:
        evaluated = pool.submit(evaluations)
        first, forecasts = _monthly(cand, timeout, say)
        repeat, repeated, artifacts = (None, None, {})
        if forecasts is not None:
            repeat, repeated, artifacts = _repeat(cand, timeout, say)
        prod_run, prod_forecasts = (None, None)
        if prod is not None:
            prod_run, prod_forecasts = _monthly(prod, timeout, say)
        factor = prod_settings.qa.max_forecast_factor
        performance = performance_gate(evaluated.result(), panels, gates_cfg,
                                       max_forecast_factor=factor)
    expected = [i for i in items if i["status"] in ("deployed", "shadow")]
    inference = inference_gate(expected, first, repeat, forecasts, repeated, panels=panels,
                               steps=prod_settings.partitions.steps, artifacts=artifacts,
                               max_forecast_factor=factor)
    reason = None
    if prod_run is None:
        reason = "no production branch yet"
    elif prod_forecasts is None:
        reason = f"production's monthly run failed: {prod_run.error()}"
    if forecasts is None:
        reason = "the candidate's monthly run failed"
    diff = forecast_diff_gate(forecasts if reason is None else None, prod_forecasts,
                              gates_cfg, reason=reason)
    return inference, performance, diff


