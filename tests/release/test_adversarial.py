"""Adversarial tests of the production guarantee (README "Releasing", docs/releasing.md
"The production guarantee"): each case tries to publish something a staged, promoted release
did not validate, through the CLI or the API, on a scratch git repository, and checks the
refusal (exit code, message), that nothing was published, and that the records (run
status, pointer history, alerts) say what actually happened.

One released workspace (the quick monthly workspace promoted to v0.1.0, one production run
published) serves the cases that only try to break in; each restores the repository after
itself, and cases that must write state work on a copy of the state folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.flows import monthly_workspace

from ewspipe.api.app import create_app
from ewspipe.cli.main import main
from ewspipe.flows.runner import EnvironmentLock
from ewspipe.panel.ingest import import_frame
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.release.context import ReleaseContext
from ewspipe.release.promote import promote
from ewspipe.release.rollback import rollback
from ewspipe.settings import load_settings
from ewspipe.store.statedb import open_state_db

TOKEN_ENV = "EWSPIPE_API_TOKEN"
TOKEN = "adversarial-token-0123456789"
ROGUE = """
name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "locf"
status = "deployed"
owner = "mallory"
description = "Not released."
features = []
"""


@dataclass
class Released:
    config: Path
    repo: Path
    state: Path
    tag: str
    run: dict

    def cli(self, *args: str, state: Path | None = None,
            config: Path | None = None) -> tuple[int, dict]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(config or self.config), "--state-dir",
                         str(state or self.state), *args, "--json"])
        return code, json.loads(out.getvalue())

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.repo, check=True, capture_output=True,
                              text=True).stdout.strip()

    def pointer(self, state: Path | None = None) -> bytes:
        return ((state or self.state) / "production" / "published" / "cm" /
                "ged_sb.json").read_bytes()

    def runs(self, state: Path | None = None) -> list[dict]:
        db = open_state_db("", (state or self.state) / "production")
        return db.runs("production", limit=1000)

    def state_copy(self, dest: Path) -> Path:
        shutil.copytree(self.state, dest, ignore=shutil.ignore_patterns("run.lock"))
        return dest


def _clean_env(mp: pytest.MonkeyPatch) -> None:
    for name in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR", TOKEN_ENV):
        mp.delenv(name, raising=False)


def _released(root: Path) -> Released:
    config = monthly_workspace.write_monthly_workspace(root / "ws")
    state = root / "ws" / "state"
    tag = monthly_workspace.release_workspace(config, state)
    ws = Released(config, config.parent, state, tag, {})
    code, ws.run = ws.cli("run", "--env", "production", "--quiet")
    assert code == 0, ws.run
    assert ws.run["status"] == "ok" and ws.run["release"]["tag"] == tag
    return ws


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        _clean_env(mp)
        yield _released(tmp_path_factory.mktemp("adversarial"))


@pytest.fixture
def env(monkeypatch):
    _clean_env(monkeypatch)


# ----------------------------------------------------------------- files that are not the release

def _untracked_model(ws: Released) -> tuple[str, str]:
    (ws.repo / "models" / "rogue_mean.toml").write_text(ROGUE.format(name="rogue_mean"))
    return "models/rogue_mean.toml", "not part of the release"


def _ignored_model(ws: Released) -> tuple[str, str]:
    with (ws.repo / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("models/*.local.toml\n")
    (ws.repo / "models" / "rogue.local.toml").write_text(ROGUE.format(name="rogue_local"))
    return "models/rogue.local.toml", "untracked or git-ignored"


def _modified_model(ws: Released) -> tuple[str, str]:
    path = ws.repo / "models" / "small_ridge.toml"
    path.write_text(path.read_text().replace("seed = 7", "seed = 8"))
    return "models/small_ridge.toml", "uncommitted changes"


def _untracked_ensemble(ws: Released) -> tuple[str, str]:
    (ws.repo / "ensembles" / "rogue_chorus.toml").write_text(
        monthly_workspace.ENSEMBLE.format(name="rogue_chorus", level="cm",
                                          members='["small_ridge"]', extra=""))
    return "ensembles/rogue_chorus.toml", "not part of the release"


def _modified_settings(ws: Released) -> tuple[str, str]:
    ws.config.write_text(ws.config.read_text() + "\n[qa]\nmax_forecast_factor = 1e9\n"
                         if "[qa]" not in ws.config.read_text() else
                         ws.config.read_text().replace("[qa]\n", "[qa]\nmax_snapshot_age_days "
                                                       "= 100000\n"))
    return "ewspipe.toml", "uncommitted changes"


CASES = {"untracked model": _untracked_model, "ignored model": _ignored_model,
         "modified model": _modified_model, "untracked ensemble": _untracked_ensemble,
         "modified settings": _modified_settings}


@pytest.mark.parametrize("case", list(CASES))
def test_a_file_that_is_not_the_release_never_runs_in_production(released, env, case):
    """Untracked, ignored or edited model, ensemble and settings files: exit 1 naming the
    file, before any task runs; the pointer and the run records are untouched."""
    ws = released
    before_pointer, before_runs = ws.pointer(), len(ws.runs())
    try:
        name, why = CASES[case](ws)
        code, doc = ws.cli("run", "--env", "production", "--quiet")
    finally:
        ws.git("checkout", "-q", "--", ".")
        ws.git("clean", "-q", "-f", "-x", "--", "models", "ensembles")
        (ws.repo / ".git" / "info" / "exclude").write_text("")
    assert code == 1, doc
    assert doc["exit_code"] == 1 and name in doc["error"] and why in doc["error"], doc
    assert ws.pointer() == before_pointer and len(ws.runs()) == before_runs


def test_an_unreleased_settings_file_is_refused(released, env, tmp_path):
    """`--config` naming an untracked copy of the settings inside the repository, or a
    settings file outside it: refused, nothing runs."""
    ws = released
    local = ws.repo / "ewspipe.local.toml"
    local.write_text(ws.config.read_text())
    try:
        code, doc = ws.cli("run", "--env", "production", config=local)
    finally:
        local.unlink()
    assert code == 1 and "ewspipe.local.toml is not committed" in doc["error"], doc
    outside = tmp_path / "ewspipe.toml"
    outside.write_text(ws.config.read_text().replace('state_dir = "state"',
                                                     f'models_dir = "{ws.repo / "models"}"'))
    code, doc = ws.cli("run", "--env", "production", config=outside)
    assert code == 1 and "not a git repository" in doc["error"], doc


def test_models_folder_outside_the_repository_is_refused(released, env, tmp_path):
    """A committed settings file whose models folder points outside the repository."""
    from ewspipe.flows.release_guard import ReleaseGuardFailed, check_release

    settings = load_settings(ws_config := released.config, state_dir=released.state)
    elsewhere = tmp_path / "models"
    shutil.copytree(released.repo / "models", elsewhere)
    moved = settings.model_copy(update={"workspace": settings.workspace.model_copy(
        update={"models_dir": elsewhere})})
    with pytest.raises(ReleaseGuardFailed, match="outside the release repository"):
        check_release(moved)
    assert ws_config.is_file()


# ----------------------------------------------------------------- refusals are failures

def _cut_snapshots(state: Path) -> None:
    """Snapshots ending one month early (519 while 520 is expected): stale data."""
    store = SnapshotStore(state / "snapshots")
    for level in ("cm", "pgm"):
        latest = store.latest(level)
        frame = store.load(latest.id).frame
        frame = frame[frame["month_id"] < latest.last_month].copy()
        import_frame(frame, level, store, source={"kind": "test"}, source_name="stale",
                     count_columns=list(latest.count_columns))


def test_stale_data_is_not_published_and_says_so(released, env, tmp_path):
    """The freshness guard refuses: exit 1, status not_published with the reason in the run
    record, an ERROR alert in the alert log, the pointer unchanged."""
    ws = released
    state = ws.state_copy(tmp_path / "state")
    _cut_snapshots(state)
    before = ws.pointer(state)
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 1, doc
    assert doc["status"] == "not_published"
    reasons = doc["outputs"]["not_published_reasons"]
    assert any("expected" in r and "519" in r for r in reasons), reasons
    assert ws.pointer(state) == before
    assert ws.runs(state)[0]["status"] == "not_published"
    alerts = [json.loads(line) for line in
              (state / "production" / "alerts.jsonl").read_text().splitlines()]
    assert any(a["source"] == "publish" and a["severity"] == "ERROR" for a in alerts)


def test_engine_upgrade_after_promotion(released, env, tmp_path):
    """Another ewspipe than the one the release validated: exit 1 before anything runs;
    with --allow-engine-change REASON the run publishes and every pointer records why."""
    import ewspipe

    ws = released
    state = ws.state_copy(tmp_path / "state")
    upgraded = tmp_path / "engine" / "ewspipe"
    shutil.copytree(Path(ewspipe.__file__).parent, upgraded,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (upgraded / "errors.py").open("a") as fh:
        fh.write("\n# a newer engine\n")
    environ = {**os.environ, "PYTHONPATH": str(upgraded.parent)}
    environ.pop("EWSPIPE_CONFIG", None)

    def run(*extra: str) -> tuple[int, dict]:
        done = subprocess.run(
            [sys.executable, "-m", "ewspipe", "--config", str(ws.config), "--state-dir",
             str(state), "run", "--env", "production", "--quiet", "--json", *extra],
            capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=600)
        return done.returncode, json.loads(done.stdout)

    code, doc = run()
    assert code == 1 and "engine differs from the release" in doc["error"], doc
    assert len(ws.runs(state)) == len(ws.runs())
    code, doc = run("--allow-engine-change", "urgent engine fix, revalidated by hand")
    assert code == 0, doc
    for pointer in doc["outputs"]["published"]:
        override = pointer["release"]["engine_override"]
        assert override["reason"] == "urgent engine fix, revalidated by hand"
        assert override["running"]["fingerprint"] != override["released"]["fingerprint"]


def test_engine_override_is_only_for_production(released, env):
    code, doc = released.cli("run", "--env", "development", "--allow-engine-change", "x")
    assert code == 2 and "--allow-engine-change" in doc["error"]
    code, doc = released.cli("run", "--env", "production", "--allow-engine-change", "  ")
    assert code == 2 and "give the reason" in doc["error"], doc


# ----------------------------------------------------------------- the API publishes by the rule

@pytest.fixture
def api(released, monkeypatch):
    _clean_env(monkeypatch)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with TestClient(create_app(load_settings(released.config, state_dir=released.state))) as c:
        yield c


def _post(client: TestClient, run: str, level: str = "cm") -> tuple[int, dict]:
    resp = client.post(f"/api/v1/published/{level}/ged_sb", json={"run": run},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    return resp.status_code, resp.json()


def test_api_publish_waits_for_no_writer(released, api):
    """A second writer: while a monthly run holds production, the API refuses (409)."""
    run = released.run["outputs"]["runs"]["cm"]
    before = released.pointer()
    with EnvironmentLock(released.state / "production" / "run.lock", timeout=1,
                         environment="production"):
        code, doc = _post(api, run)
    assert code == 409 and "locked by another run" in doc["detail"], doc
    assert released.pointer() == before


def test_api_refuses_while_the_workspace_is_not_the_release(released, api):
    run = released.run["outputs"]["runs"]["cm"]
    before = released.pointer()
    rogue = released.repo / "models" / "rogue_mean.toml"
    rogue.write_text(ROGUE.format(name="rogue_mean"))
    try:
        code, doc = _post(api, run)
    finally:
        rogue.unlink()
    assert code == 409 and "rogue_mean.toml" in doc["detail"], doc
    assert released.pointer() == before


def test_release_lifecycle_publishes_only_the_current_release(tmp_path, monkeypatch):
    """Release v0.1.0 and run; release a feature (v0.2.0) and run; roll back (v0.2.1). The
    API refuses every run not made by the current release (an older release, a rolled-back
    one), the pointer history reads every move in order (A, B, A, ...) with its newest entry
    always the visible pointer, and a run of the current release publishes again."""
    _clean_env(monkeypatch)
    ws = _released(tmp_path)
    run_a = ws.run["outputs"]["runs"]["cm"]
    ctx = ReleaseContext.open(load_settings(ws.config, state_dir=ws.state))
    ws.git("checkout", "-q", "development")
    (ws.repo / "models" / "extra_guess.toml").write_text(
        monthly_workspace.MODEL.format(name="extra_guess", level="cm", algorithm="locf",
                                       status="shadow", features="[]", hyper=""))
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "feat: a shadow model")
    ctx.ledger.record_staging(monthly_workspace.staging_report(
        ctx.git.resolve("development"), ctx.git.rev("production")))
    second = promote(ctx)["tag"]
    ws.git("checkout", "-q", "production")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    client = TestClient(create_app(load_settings(ws.config, state_dir=ws.state)))
    code, doc = _post(client, run_a)
    assert code == 409 and "made by v0.1.0" in doc["detail"] and second in doc["detail"]
    code, run_b_doc = ws.cli("run", "--env", "production", "--quiet")
    assert code == 0 and run_b_doc["release"]["tag"] == second, run_b_doc
    run_b = run_b_doc["outputs"]["runs"]["cm"]
    assert run_b != run_a
    result = rollback(ctx)
    third = result["tag"]
    assert result["restored"] == "v0.1.0"
    for run in (run_a, run_b):  # neither was made by the rollback release
        code, doc = _post(client, run)
        assert code == 409 and f"production is now {third}" in doc["detail"], doc
    history = client.get("/api/v1/published/cm/ged_sb").json()
    runs = [h["run"] for h in history["history"]]
    assert runs == [run_a, run_b, run_a], runs  # the rollback moved it back: A-B-A
    assert history["history"][-1]["publish_id"] == history["current"]["publish_id"]
    # production regenerates under the rollback release (v0.1.0's tree: the same forecasts)
    code, doc = ws.cli("run", "--env", "production", "--quiet")
    assert code == 0 and doc["release"]["tag"] == third, doc
    assert doc["outputs"]["runs"]["cm"] == run_a
    # new data of the same month: run D publishes, then the API puts A (now made by the
    # current release) back
    store = SnapshotStore(ws.state / "snapshots")
    latest = store.latest("cm")
    frame = store.load(latest.id).frame.copy()
    frame.loc[frame.index[0], "ged_sb"] += 1  # a revision of an early month
    import_frame(frame, "cm", store, source={"kind": "test"}, source_name="revised",
                 count_columns=list(latest.count_columns))
    code, doc = ws.cli("run", "--env", "production", "--quiet")
    assert code == 0, doc["outputs"]["not_published_reasons"]
    run_d = doc["outputs"]["runs"]["cm"]
    assert run_d != run_a
    code, doc = _post(client, run_a)
    assert code == 200, doc
    assert doc["release"]["tag"] == third and doc["published_by"]["via"] == "api"
    history = client.get("/api/v1/published/cm/ged_sb").json()
    runs = [h["run"] for h in history["history"]]
    assert runs == [run_a, run_b, run_a, run_a, run_d, run_a], runs
    assert [h["seq"] for h in history["history"]] == list(range(1, 7))
    assert history["current"]["run"] == run_a == history["history"][-1]["run"]


# ----------------------------------------------------------------- records stay consistent

def test_an_interrupted_move_never_shows_in_the_history(tmp_path):
    """A crash between the history row and the pointer file: the row never became the
    visible pointer, so the next move drops it; retrying a move that did happen is a no-op."""
    from ewspipe.store.published import PublishedPointers

    db = open_state_db("", tmp_path)
    pointers = PublishedPointers(tmp_path / "published", db, environment="production")

    def pointer(pid: str, run: str) -> dict:
        return {"publish_id": pid, "level": "cm", "target": "ged_sb", "run": run,
                "primary": "m", "models": ["m"], "published_at": "2026-01-01T00:00:00Z"}

    pointers.move(pointer("p1", "A"))
    db.add_pointer({**pointer("p2", "B"), "environment": "production", "seq": 2})  # crash
    assert pointers.current("cm", "ged_sb")["run"] == "A"
    pointers.move(pointer("p3", "C"))
    assert pointers.move(pointer("p3", "C"))["publish_id"] == "p3"  # a retry: no new entry
    history = pointers.history("cm", "ged_sb")
    assert [(h["run"], h["seq"]) for h in history] == [("A", 1), ("C", 2)]
    assert history[-1]["publish_id"] == pointers.current("cm", "ged_sb")["publish_id"]


def test_a_model_file_edited_mid_run_is_not_trained(released, env):
    """The graph names each model's config hash; a task finding another definition refuses."""
    from ewspipe.errors import InputError
    from ewspipe.flows import tasks

    settings = load_settings(released.config, state_dir=released.state)
    ctx = tasks.TaskContext(settings=settings, environment="development",
                            state=released.state / "development")
    spec = ctx.catalog().models["small_ridge"]
    assert tasks._spec(ctx, "small_ridge", spec.config_hash) is not None
    with pytest.raises(InputError, match="changed while the run was going"):
        tasks._spec(ctx, "small_ridge", "0" * 64)


def test_a_feature_branch_never_publishes(released, env, api):
    """A feature branch checked out in the production workspace: the CLI run exits 1 before
    running, the API refuses the stored production run (409); nothing moves."""
    ws = released
    before_pointer, before_runs = ws.pointer(), len(ws.runs())
    ws.git("checkout", "-q", "-b", "feature/bolder-ridge")
    try:
        path = ws.repo / "models" / "small_ridge.toml"
        path.write_text(path.read_text().replace("seed = 7", "seed = 9"))
        ws.git("commit", "-q", "-am", "feat: a bolder ridge")
        code, doc = ws.cli("run", "--env", "production", "--quiet")
        assert code == 1 and "not the head of the production branch" in doc["error"], doc
        code, body = _post(api, ws.run["outputs"]["runs"]["cm"])
        assert code == 409 and "not the head of the production branch" in body["detail"]
    finally:
        ws.git("checkout", "-q", "production")
        ws.git("branch", "-q", "-D", "feature/bolder-ridge")
    assert ws.pointer() == before_pointer and len(ws.runs()) == before_runs


def test_a_broken_model_cannot_be_released_with_any_override(released, env, tmp_path):
    """A candidate whose model file is broken (integrity FAIL, inference SKIP): `promote`
    with every overridable gate allowed still exits 1; naming integrity or inference is bad
    input (exit 2); production, its tags and the ledger stay as they were."""
    from ewspipe.release.context import ReleaseContext

    ws = released
    ctx = ReleaseContext.open(load_settings(ws.config, state_dir=ws.state))
    tags_before = ws.git("tag", "--list")
    prod_before = ws.git("rev-parse", "production")
    releases_before = len(ctx.ledger.db.releases())
    ws.git("checkout", "-q", "development")
    try:
        (ws.repo / "models" / "small_ridge.toml").write_text("name = 'small_ridge'\nlevel =")
        ws.git("commit", "-q", "-am", "fix: break a model")
        report = monthly_workspace.staging_report(
            ctx.git.resolve("development"), ctx.git.rev("production"), failed=("integrity",))
        for gate in report["gates"]:
            if gate["gate"] in ("inference", "performance", "forecast_diff"):
                gate["status"] = "SKIP"
        ctx.ledger.record_staging(report)
        allowed = [a for g in ("tests", "drift", "performance", "forecast_diff")
                   for a in ("--allow", g)]
        code, doc = ws.cli("release", "promote", *allowed, "--reason", "ship it")
        assert code == 1 and "integrity" in doc["error"], doc
        for gate in ("integrity", "inference"):
            code, doc = ws.cli("release", "promote", "--allow", gate, "--reason", "ship it")
            assert code == 2 and "cannot be overridden" in doc["error"], doc
    finally:
        ws.git("checkout", "-q", "production")
    assert ws.git("tag", "--list") == tags_before
    assert ws.git("rev-parse", "production") == prod_before
    assert len(ctx.ledger.db.releases()) == releases_before
    code, doc = ws.cli("run", "--env", "production", "--quiet")
    assert code == 0 and doc["status"] == "ok", doc


def test_an_engine_change_between_stage_and_promote_is_refused(tmp_path, env):
    """The staging report records the engine that validated the candidate; a promotion
    under another engine (an upgrade in between) exits 1 and releases nothing."""
    from tests.release.release_repo import make_repo, open_ctx

    from ewspipe.release.manifest import release_engine

    repo = make_repo(tmp_path)
    ctx = open_ctx(repo, tmp_path / "state")
    commit = ctx.git.resolve("development")
    report = monthly_workspace.staging_report(commit)
    engine = release_engine(ctx.git, commit)
    report["engine"] = {**engine, "fingerprint": "0" * 64, "ewspipe": "0.0.9"}
    ctx.ledger.record_staging(report)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(repo / "ewspipe.toml"), "--state-dir",
                     str(tmp_path / "state"), "release", "promote", "--json"])
    doc = json.loads(out.getvalue())
    assert code == 1 and "engine changed since it was staged" in doc["error"], doc
    assert ctx.git.tag_exists("v0.1.0") is False and not ctx.git.branch_exists("production")
    report["engine"] = engine  # staged again with this engine: the release goes through
    ctx.ledger.record_staging({**report, "finished_at": "2026-01-01T00:02:00Z"})
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--config", str(repo / "ewspipe.toml"), "--state-dir",
                     str(tmp_path / "state"), "release", "promote", "--json"])
    assert code == 0
    assert ctx.ledger.db.releases()[0]["manifest"]["engine"] == engine


def test_a_dependency_upgrade_after_promotion_is_refused(released, env, tmp_path):
    """The engine is ewspipe's source and its resolved dependencies: a release validated with
    another lightgbm (its ledger manifest says so) does not run until an override says why."""
    import sqlite3

    ws = released
    state = ws.state_copy(tmp_path / "state")
    con = sqlite3.connect(state / "production" / "state.db")
    with con:
        row = con.execute("SELECT manifest FROM release_ledger WHERE version = '0.1.0'").fetchone()
        manifest = json.loads(row[0])
        installed = manifest["engine"]["dependencies"]["lightgbm"]
        manifest["engine"]["dependencies"]["lightgbm"] = "3.0.0"
        con.execute("UPDATE release_ledger SET manifest = ? WHERE version = '0.1.0'",
                    (json.dumps(manifest),))
    con.close()
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 1 and f"lightgbm 3.0.0 -> {installed}" in doc["error"], doc
    code, doc = ws.cli("run", "--env", "production", "--quiet", "--allow-engine-change",
                       "lightgbm security release", state=state)
    assert code == 0, doc
    override = doc["release"]["engine_override"]
    assert override["differences"] == [f"lightgbm 3.0.0 -> {installed}"]
    assert all(p["release"]["engine_override"]["reason"] == "lightgbm security release"
               for p in doc["outputs"]["published"])


def test_a_renamed_production_environment_is_one_place(tmp_path, env):
    """`[run] publish_environments = ["live"]`: the release ledger, the guard and the pointers
    all use `live`; nothing is written under a hard-coded `production`."""
    config = monthly_workspace.write_monthly_workspace(tmp_path / "ws")
    config.write_text(config.read_text() + '\n[run]\nenvironments = ["development", "live"]\n'
                      'publish_environments = ["live"]\n')
    state = tmp_path / "ws" / "state"
    tag = monthly_workspace.release_workspace(config, state)
    ws = Released(config, config.parent, state, tag, {})
    code, doc = ws.cli("run", "--env", "live", "--quiet")
    assert code == 0 and doc["release"]["tag"] == tag, doc
    assert [p["level"] for p in doc["outputs"]["published"]] == ["cm", "pgm"]
    releases = open_state_db("", state / "live").releases()
    assert [(r["version"], r["status"]) for r in releases] == [("0.1.0", "completed")]
    assert not (state / "production").exists()


# ----------------------------------------------------------------- damaged state, a failed run

def _history(ws: Released, state: Path) -> list[str]:
    db = open_state_db("", state / "production")
    return [h["publish_id"] for h in db.pointer_history("cm", "ged_sb", "production")]


def test_a_run_whose_monitoring_fails_publishes_nothing(released, env, tmp_path):
    """The published run's forecast damaged, then new data: output drift cannot read the
    previous forecast and fails. Publish ran anyway (it did not wait for output drift), so a
    run recorded `failed` had moved the pointer, again on every retry."""
    ws = released
    state = ws.state_copy(tmp_path / "state")
    published = json.loads(ws.pointer(state))
    part = next((state / "production" / "predictions" / "level=cm" / f"run={published['run']}"
                 / f"model={published['primary']}").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:500])
    code, doc = ws.cli("data", "demo", "--seed", "9", state=state)
    assert code == 0, doc
    before, history = ws.pointer(state), _history(ws, state)
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 2, doc
    assert str(part) in doc["error"] and "delete that folder" in doc["error"]
    assert ws.pointer(state) == before and _history(ws, state) == history
    assert ws.runs(state)[0]["status"] == "failed"


def test_a_deleted_ensemble_output_is_rebuilt(released, env, tmp_path):
    """The ensembles task ran again when its output was gone, but kept the damaged folder:
    every later production run failed."""
    ws = released
    state = ws.state_copy(tmp_path / "state")
    files = sorted((state / "production" / "work" / "ensembles").glob("*/predictions/*.parquet"))
    assert files
    files[0].unlink()
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 0 and doc["status"] == "ok", doc
    assert files[0].is_file()


def test_a_snapshot_changed_after_import_is_refused_before_publishing(released, env, tmp_path):
    """Tasks reused from the cache never read the data: without a re-hash the run published
    from a snapshot whose file no longer matched its manifest (then crashed, exit 70)."""
    ws = released
    state = ws.state_copy(tmp_path / "state")
    store = SnapshotStore(state / "snapshots")
    data = store.data_path(store.latest("cm").id, verify=False)
    data.write_bytes(data.read_bytes()[:2000])
    before, history = ws.pointer(state), _history(ws, state)
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 2 and str(data) in doc["error"] and "sha256" in doc["error"], doc
    assert ws.pointer(state) == before and _history(ws, state) == history


def test_a_state_folder_without_the_ledger_is_refused_and_left_empty(released, env, tmp_path):
    """A production run pointed at another state folder is refused (its ledger does not
    record the release); the check itself created an empty state.db there."""
    ws = released
    state = tmp_path / "elsewhere"
    state.mkdir()
    code, doc = ws.cli("run", "--env", "production", "--quiet", state=state)
    assert code == 1, doc
    assert not list(state.rglob("state.db")), sorted(state.rglob("*"))
