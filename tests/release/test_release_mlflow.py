"""MLflow as a record of what production runs (issue 16, item 4), against the real SQLite
store: after promote, hotfix finish and rollback the ``production`` alias of every deployed
model and ensemble is on a version whose tags equal the release's config hash, snapshot and
code fingerprint; a feature-branch forecast registered later never gets it; a version
missing from the registry is registered from the staging evidence (the candidate side's
artifacts and predictions, laid out by the real ``Side`` and made by a real monthly run).

One scripted history, shared by the tests (module fixture): forecast with tracking on,
feature-branch forecast, promote v0.1.0, hotfix v0.2.0 (a changed deployed model, only
staging evidence: a MINOR release by the bump rule), rollback v0.2.1 to v0.1.0."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from release_repo import git, make_repo, open_ctx
from tests.flows.monthly_workspace import staging_report

from ewspipe.catalog import load_catalog
from ewspipe.flows.ingest import import_demo_checked
from ewspipe.flows.modelrun import forecast_models
from ewspipe.flows.monthly import run_monthly
from ewspipe.provenance import code_fingerprint
from ewspipe.release.aliases import ALIAS, restored_aliases, set_aliases
from ewspipe.release.hotfix import finish_hotfix, start_hotfix
from ewspipe.release.promote import promote
from ewspipe.release.rollback import rollback
from ewspipe.release.sides import Side, settings_text, side_state
from ewspipe.settings import load_settings
from ewspipe.store.tracking import register_version, tracking_uri
from ewspipe.store.tracking_monthly import MONTHLY_EXPERIMENT, track_monthly_run

pytest.importorskip("mlflow")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEPLOYED = ["grid_chorus", "grid_ridge", "small_chorus", "small_ridge", "small_tree"]


def _client(settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(settings))


def _aliased(client) -> dict[str, Any]:
    """name -> the version carrying the alias (None: no alias), for every registered model."""
    from mlflow.exceptions import MlflowException

    found = {}
    for rm in client.search_registered_models():
        try:
            found[rm.name] = client.get_model_version_by_alias(rm.name, ALIAS)
        except MlflowException:
            found[rm.name] = None
    return found


def _expected(repo: Path, ref: str, snaps: dict[str, str]) -> dict[str, dict[str, str]]:
    """What the release at ``ref`` deploys, from its own files: config hash, snapshot of the
    level, and the engine (a repository without src/ runs the installed ewspipe)."""
    tree = repo.parent / f"exp-{ref}"
    git(repo, "worktree", "add", "-q", "--detach", str(tree), ref)
    try:
        catalog = load_catalog(tree / "models", ensembles_dir=tree / "ensembles")
    finally:
        git(repo, "worktree", "remove", "--force", str(tree))
    specs = [*catalog.models.values(), *catalog.ensembles.values()]
    return {s.name: {"ewspipe.config_hash": s.config_hash,
                     "ewspipe.snapshot": snaps[s.level.value],
                     "ewspipe.code_fingerprint": code_fingerprint()}
            for s in specs if s.status.value == "deployed"}


def _side_evidence(ctx, commit: str, snaps: dict[str, str]) -> None:
    """What `release stage` leaves behind for ``commit``: the candidate side laid out by
    the real Side (settings, linked snapshots, shared artifact store) and its monthly run."""
    config = settings_text(ctx.git.show("production", "ewspipe.toml"))
    staging = ctx.settings.state_dir / "staging"
    with ctx.git.worktree(commit) as tree:
        side = Side("candidate", commit, tree, side_state(staging / "sides", commit, config,
                                                          snaps))
        side.prepare(config, snaps, ctx.settings.snapshot_dir, staging / "artifacts")
        done = run_monthly(load_settings(side.config, state_dir=side.state),
                           environment="staging")
        assert done.status == "ok" and done.tracking is None  # sides never track


def _snap(ctx, client) -> dict[str, Any]:
    entry = ctx.ledger.releases()[0]
    return {"manifest": entry["manifest"], "aliased": _aliased(client)}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-release")
    repo = make_repo(root)
    cfg = repo / "ewspipe.toml"
    cfg.write_text(cfg.read_text().replace("[tracking]\nenabled = false", "[tracking]\n"
                                           "enabled = true"))
    git(repo, "commit", "-q", "-am", "chore: track runs")
    ctx = open_ctx(repo, root / "state")
    settings = ctx.settings
    snaps = {lvl: r.manifest.id for lvl, r in import_demo_checked(settings).results.items()}
    catalog = load_catalog(settings.models_dir, ensembles_dir=settings.ensembles_dir)
    forecast_models(settings, catalog, names=["small_chorus", "grid_chorus"])
    client = _client(settings)
    # a stale alias on a model the release does not deploy
    stale = register_version(client, "last_value", source=(root / "x").as_uri(), tags={})
    client.set_registered_model_alias("last_value", ALIAS, stale)
    # the repro: a feature branch with a changed hyperparameter, forecast later
    git(repo, "checkout", "-q", "-b", "feature/ridge")
    ridge = repo / "models" / "small_ridge.toml"
    ridge.write_text(ridge.read_text().replace("seed = 7", "seed = 99"))
    git(repo, "commit", "-q", "-am", "feat: reseed small_ridge")
    forecast_models(settings, load_catalog(settings.models_dir), names=["small_ridge"])
    git(repo, "checkout", "-q", "development")
    feature = max(client.search_model_versions("name = 'small_ridge'"),
                  key=lambda v: int(v.version))

    states: dict[str, Any] = {"repo": repo, "ctx": ctx, "client": client, "snaps": snaps,
                              "feature_version": feature}
    dev = ctx.git.resolve("development")
    ctx.ledger.record_staging(staging_report(dev, None, snapshots=snaps))
    promote(ctx)
    states["promote"] = _snap(ctx, client)
    states["promote_ref"] = "v0.1.0"

    # hotfix: small_tree changes; nothing registered for it, only the staging evidence
    start_hotfix(ctx, "tree")
    tree_file = repo / "models" / "small_tree.toml"
    tree_file.write_text(tree_file.read_text().replace("n_estimators = 10", "n_estimators = 12"))
    git(repo, "commit", "-q", "-am", "fix: a bigger small_tree")
    hotfix = ctx.git.resolve("HEAD")
    versions_before = {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED}
    _side_evidence(ctx, hotfix, snaps)
    ctx.ledger.record_staging(staging_report(hotfix, ctx.git.resolve("production"),
                                             ref="hotfix/tree", snapshots=snaps))
    finish_hotfix(ctx)
    states["hotfix"] = _snap(ctx, client)
    states["versions_before_hotfix"] = versions_before

    git(repo, "checkout", "-q", "production")
    done = rollback(ctx)
    states["rollback"] = _snap(ctx, client)
    states["rollback_steps"] = [s["step"] for s in done["steps"]]
    return states


def _assert_aliases_match(state, expected, client):
    aliased = state["aliased"]
    for name, tags in expected.items():
        version = aliased.get(name)
        assert version is not None, f"{name} has no {ALIAS} alias"
        assert {k: version.tags.get(k) for k in tags} == tags, name
        assert state["manifest"]["aliases"][name] == str(version.version)
    assert set(state["manifest"]["aliases"]) == set(expected)


def test_promote_puts_the_alias_on_the_validated_versions(history):
    expected = _expected(history["repo"], "v0.1.0", history["snaps"])
    assert sorted(expected) == DEPLOYED
    _assert_aliases_match(history["promote"], expected, history["client"])
    # the feature branch's later version (changed hyperparameter) does not get the alias
    feature = history["feature_version"]
    aliased = history["promote"]["aliased"]["small_ridge"]
    assert int(feature.version) > int(aliased.version)
    assert feature.tags["ewspipe.config_hash"] != aliased.tags["ewspipe.config_hash"]
    assert aliased.tags["ewspipe.source"] == "forecast"
    # a model the release does not deploy loses the alias; the notes say so
    assert history["promote"]["aliased"]["last_value"] is None
    notes = history["promote"]["manifest"]["alias_notes"]
    assert "last_value: alias production removed (not deployed by v0.1.0)" in notes


def test_every_registered_version_says_what_made_it(history):
    version = history["promote"]["aliased"]["small_chorus"]
    assert version.tags["ewspipe.code_fingerprint"] == code_fingerprint()
    assert version.tags["ewspipe.ewspipe_version"]
    assert version.tags["ewspipe.inputs"] == "small_ridge,small_tree"
    assert len(version.tags["ewspipe.inputs_hash"]) == 64


def test_hotfix_registers_what_staging_validated(history):
    expected = _expected(history["repo"], "v0.2.0", history["snaps"])
    _assert_aliases_match(history["hotfix"], expected, history["client"])
    aliased = history["hotfix"]["aliased"]
    # small_tree changed: registered from the candidate side's hash-verified artifact;
    # its ensembles (config unchanged, a member changed) from the side's predictions
    for name in ("small_tree", "small_chorus", "grid_chorus"):
        version = aliased[name]
        assert version.tags["ewspipe.source"] == "staging", name
        assert version.tags["ewspipe.registered_by"] == "v0.2.0"
        assert version.tags["ewspipe.artifact_uri"].startswith(
            (history["ctx"].settings.state_dir / "staging").resolve().as_uri())
        # no MLflow run made it: its pyfunc model is kept in the state's MLflow folder
        assert version.source.startswith(
            history["ctx"].settings.layout.mlflow_models.resolve().as_uri())
    assert ("/staging/artifacts/small_tree/forecasting/"
            in aliased["small_tree"].tags["ewspipe.artifact_uri"])
    assert aliased["small_chorus"].tags["ewspipe.artifact_uri"].endswith(
        "/model%3Dsmall_chorus/part-0.parquet")
    # unchanged models keep the version the promotion found
    for name in ("small_ridge", "grid_ridge"):
        assert aliased[name].version == history["promote"]["aliased"][name].version
    counts = {m: len(history["client"].search_model_versions(f"name = '{m}'"))
              for m in DEPLOYED}
    added = {m: counts[m] - history["versions_before_hotfix"][m] for m in DEPLOYED}
    assert added == {"grid_chorus": 1, "grid_ridge": 0, "small_chorus": 1, "small_ridge": 0,
                     "small_tree": 1}


def test_rollback_restores_the_recorded_versions(history):
    state = history["rollback"]
    assert history["rollback_steps"] == ["commit", "tag", "aliases", "pointers"]
    expected = _expected(history["repo"], "v0.1.0", history["snaps"])
    _assert_aliases_match(state, expected, history["client"])
    assert state["manifest"]["aliases"] == history["promote"]["manifest"]["aliases"]


def test_setting_the_aliases_again_changes_nothing(history):
    """The aliases step is redone on a resumed release: it finds what it registered."""
    ctx, client = history["ctx"], history["client"]
    before = {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED}
    manifest = ctx.ledger.get("0.2.0")["manifest"]
    again = set_aliases(ctx.settings, manifest, "v0.2.0", git=ctx.git)
    assert again.aliases == manifest["aliases"]
    assert {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED} == before
    # and the rollback's step, redone, puts production's aliases back where it left them
    restored = restored_aliases(ctx, "v0.1.0", "v0.2.1")
    assert restored.aliases == history["rollback"]["manifest"]["aliases"]
    assert {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED} == before


@pytest.fixture(scope="module")
def production_run(history):
    """The monthly run of production (at the rollback release v0.2.1), tracked."""
    before = {m: len(history["client"].search_model_versions(f"name = '{m}'"))
              for m in DEPLOYED}
    done = run_monthly(history["ctx"].settings, environment="production")
    return done.to_dict(), before


def test_the_monthly_production_run_is_tracked(history, production_run):
    doc, before = production_run
    client, settings = history["client"], history["ctx"].settings
    tracked = doc["tracking"]
    assert tracked["status"] == "logged" and tracked["experiment"] == MONTHLY_EXPERIMENT
    assert doc["outputs"]["published"], doc["outputs"]["not_published"]
    run = client.get_run(tracked["parent_run_id"])
    tags = run.data.tags
    assert tags["ewspipe.run_id"] == doc["run_id"] and tags["ewspipe.environment"] == \
        "production"
    assert tags["ewspipe.status"] == doc["status"] and tags["ewspipe.release_tag"] == "v0.2.1"
    assert tags["ewspipe.code_fingerprint"] == code_fingerprint()
    assert tags["ewspipe.snapshots"] == ",".join(f"{k}:{v}" for k, v in
                                                 sorted(history["snaps"].items()))
    assert run.data.metrics["tasks_ran"] == len(doc["ran"])
    # one new version per deployed model and ensemble: what production ran this month
    expected = _expected(history["repo"], "v0.2.1", history["snaps"])
    production = settings.layout.env("production").root.resolve().as_uri()
    artifacts = settings.layout.artifacts.resolve().as_uri()  # models: the one shared cache
    for name in DEPLOYED:
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == before[name] + 1, name
        newest = max(versions, key=lambda v: int(v.version))
        assert newest.run_id == tracked["parent_run_id"]
        assert newest.tags["ewspipe.source"] == "monthly"
        assert newest.tags["ewspipe.monthly_run"] == doc["run_id"]
        assert newest.tags["ewspipe.release"] == "v0.2.1"
        assert {k: newest.tags[k] for k in expected[name]} == expected[name]
        assert newest.tags["ewspipe.artifact_uri"].startswith(
            artifacts if newest.tags["ewspipe.model_kind"] == "model" else production), name
        assert newest.source == f"{client.get_run(newest.run_id).info.artifact_uri}/pyfunc/{name}"
    assert "/artifacts/small_tree/forecasting/" in max(
        client.search_model_versions("name = 'small_tree'"),
        key=lambda v: int(v.version)).tags["ewspipe.artifact_uri"]
    # the alias stays on what the release validated
    aliased = _aliased(client)
    assert {n: str(aliased[n].version) for n in DEPLOYED} == \
        history["rollback"]["manifest"]["aliases"]


def test_a_monthly_run_is_tracked_once_and_only_production_registers(history, production_run):
    doc, _ = production_run
    client, settings = history["client"], history["ctx"].settings
    counts = {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED}
    again = track_monthly_run(settings, doc)
    assert again.status == "already_logged"
    assert again.parent_run_id == doc["tracking"]["parent_run_id"]
    dev = track_monthly_run(settings, {**doc, "run_id": doc["run_id"] + "-dev",
                                       "environment": "development"})
    assert dev.status == "logged" and "registered" not in dev.message
    assert {m: len(client.search_model_versions(f"name = '{m}'")) for m in DEPLOYED} == counts


def test_release_log_shows_the_versions_production_runs(history, cli):
    ctx = history["ctx"]
    log = cli("--config", str(history["repo"] / "ewspipe.toml"), "--state-dir",
              str(ctx.settings.state_dir), "release", "log")
    assert log.code == 0, log.err
    aliases = history["rollback"]["manifest"]["aliases"]
    line = "    production alias: " + ", ".join(f"{n} v{v}" for n, v in sorted(aliases.items()))
    assert log.out.splitlines()[1] == line  # under the newest entry, the rollback v0.2.1


def _served(settings, uri: str, frame=None) -> pd.DataFrame:
    """``mlflow.pyfunc.load_model(uri).predict(frame)``, as a user would, on the store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(settings))  # the registry's too, when unset
    try:
        return mlflow.pyfunc.load_model(uri).predict(frame)
    finally:
        mlflow.set_tracking_uri(None)


def test_the_production_alias_serves_the_release_forecast(history, production_run):
    """``models:/<name>@production`` loads as a pyfunc model whose predict() is the forecast
    the release's monthly run published to the prediction store, value for value (the store
    keeps float32; the served forecast is its version's run at full precision)."""
    doc, _ = production_run
    settings = history["ctx"].settings
    home = settings.layout.env("production")
    published = {p["model"]: home.resolve(p["path"]) for p in doc["outputs"]["partitions"]}
    aliased = _aliased(history["client"])
    for name in DEPLOYED:
        served = _served(settings, f"models:/{name}@production")
        version = aliased[name]
        own = settings.runs_dir / version.tags["ewspipe.run_id"] / "predictions" / f"{name}.parquet"
        pd.testing.assert_frame_equal(served, pd.read_parquet(own), check_exact=True)
        stored = pd.read_parquet(published[name])
        assert len(stored) == len(served) > 0, name
        for column in stored.columns:
            left, right = served[column].to_numpy(), stored[column].to_numpy()
            if column == "samples":
                left, right = np.stack(left), np.stack(right)
            np.testing.assert_array_equal(left.astype(right.dtype), right, err_msg=name)
    # a selection by unit and month, in any order, returns just those stored rows
    unit = "country_id" if "country_id" in served.columns else "priogrid_gid"
    rows = served.iloc[[7, 2]]
    picked = _served(settings, f"models:/{name}@production", rows[[unit, "month_id"]])
    pd.testing.assert_frame_equal(picked, served.iloc[[2, 7]].reset_index(drop=True))


def test_the_readme_example_runs_on_a_release(history, production_run):
    """README's MLflow block, run as written on this release's store (only ``<state_dir>``
    filled in): it loads ``small_chorus@production`` and selects rows as it says."""
    import mlflow

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
               if "mlflow.pyfunc.load_model" in b]
    state = history["ctx"].settings.state_dir
    namespace: dict[str, object] = {}
    try:
        exec(compile(block.replace("<state_dir>", state.as_posix()), "README.md", "exec"),
             namespace)
    finally:
        mlflow.set_tracking_uri(None)
    served = _served(history["ctx"].settings, "models:/small_chorus@production")
    pd.testing.assert_frame_equal(namespace["model"].predict(None), served)


def test_a_version_registered_from_staging_evidence_serves_the_side_forecast(history):
    """The hotfix registered small_tree and its ensembles from the candidate side: their
    pyfunc serves exactly what that side stored (its prediction store partitions)."""
    settings = history["ctx"].settings
    for name in ("small_tree", "small_chorus"):
        version = history["hotfix"]["aliased"][name]
        served = _served(settings, f"models:/{name}/{version.version}")
        [side] = sorted(settings.layout.staging_sides.glob(
            f"*/**/model={name}/part-0.parquet"), key=lambda p: p.stat().st_mtime)[-1:]
        pd.testing.assert_frame_equal(served, pd.read_parquet(side), check_exact=True)


def test_mlflow_ui_command_opens_the_store_the_pipeline_writes(history, production_run, cli):
    """`ewspipe mlflow-ui` prints the one `mlflow ui` command line: mlflow's own parser
    accepts it (the full package's server is the same command), and the store it names holds
    the tracked monthly run and the registry with the production aliases."""
    from mlflow.cli import cli as mlflow_cli
    from mlflow.tracking import MlflowClient

    doc, _ = production_run
    ctx = history["ctx"]
    shown = cli("--config", str(history["repo"] / "ewspipe.toml"), "--state-dir",
                str(ctx.settings.state_dir), "mlflow-ui", "--json")
    assert shown.code == 0, shown.err
    printed = shown.json()
    assert printed["command"][:2] == ["mlflow", "ui"]
    assert printed["command_line"].startswith("mlflow ui --backend-store-uri sqlite:///")
    ui = mlflow_cli.get_command(None, "ui")
    params = ui.make_context("ui", printed["command"][2:]).params
    assert params["backend_store_uri"] == tracking_uri(ctx.settings) == printed["tracking_uri"]
    assert params["default_artifact_root"] == ctx.settings.layout.mlruns.resolve().as_uri()
    client = MlflowClient(tracking_uri=params["backend_store_uri"])
    assert client.get_run(doc["tracking"]["parent_run_id"]).data.tags["ewspipe.run_id"] == \
        doc["run_id"]
    aliased = {n: str(client.get_model_version_by_alias(n, ALIAS).version) for n in DEPLOYED}
    assert aliased == history["rollback"]["manifest"]["aliases"]
    for experiment in client.search_experiments(filter_string="name LIKE 'ewspipe-%'"):
        assert experiment.artifact_location == params["default_artifact_root"]
    text = cli("--config", str(history["repo"] / "ewspipe.toml"), "--state-dir",
               str(ctx.settings.state_dir), "mlflow-ui")
    assert f"  {printed['command_line']}" in text.out.splitlines()
    assert ("pip install 'ewspipe[mlflow-ui]'" in text.out) is not printed["ui_installed"]
