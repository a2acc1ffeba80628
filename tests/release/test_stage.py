"""stage() end to end on a scripted product repository (real git, real child processes, the
small demo world): a good change passes every gate, a worse ensemble fails performance, a
broken model fails inference, a candidate behind production fails sync, an invalid model file
fails integrity, drifted data fails drift, a candidate with one wild forecast fails
inference and performance and cannot be released, and bad input is refused."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from staging_repo import (
    commit_on,
    copy_package,
    git,
    import_demo,
    import_drifted,
    make_product_repo,
    workspace_settings,
)

from ewspipe.errors import InputError
from ewspipe.flows.monthly import run_monthly
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.release.staging import StagingReport, _named_snapshots, stage
from ewspipe.settings import Settings


@dataclass(frozen=True)
class World:
    repo: Path
    settings: Settings
    snapshots: dict[str, str]
    drifted: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("stage")
    repo = make_product_repo(root)
    settings = workspace_settings(repo, root / "state")
    snapshots = import_demo(settings)
    # production's run records the snapshots it used (publishing, which needs a completed
    # release in the ledger, is beside the point here)
    quiet = settings.model_copy(update={"run": settings.run.model_copy(
        update={"publish_environments": ()})})
    run_monthly(quiet, environment="production")
    drifted = import_drifted(settings, snapshots["cm"])  # the newest cm snapshot from now on
    return World(repo, settings, snapshots, drifted)


def _statuses(report: StagingReport) -> dict[str, str]:
    return {g.gate: g.status for g in report.gates}


def test_good_change_passes_every_gate(world: World) -> None:
    tree = (world.repo / "models" / "small_tree.toml").read_text()
    sha = commit_on(world.repo, "feature/good", "development", {
        "models/small_tree.toml": tree.replace("n_estimators = 10", "n_estimators = 12")},
        "feat: a slightly larger tree")
    branches_before = git(world.repo, "branch", "--list")
    report = stage(world.repo, world.settings, candidate="feature/good")
    statuses = _statuses(report)
    assert report.passed, statuses
    assert set(statuses.values()) <= {"PASS", "WARN"}
    assert statuses["sync"] == statuses["integrity"] == statuses["tests"] == "PASS"
    assert statuses["inference"] in ("PASS", "WARN")  # WARN only if the code changed meanwhile
    assert report.candidate_commit == sha
    assert report.production_commit == git(world.repo, "rev-parse", "production")
    # production's last run chose the data, not the newer (drifted) snapshot
    assert report.snapshots == world.snapshots
    inference = report.gate("inference").evidence
    assert set(inference["items"]) == {"small_tree", "small_ridge", "last_value", "grid_ridge",
                                       "small_chorus", "grid_chorus"}
    # reloaded, unless the installed code was edited meanwhile (then retrained: a WARN)
    assert inference["artifacts"]["reloaded"] > 0 or inference["artifacts"]["code_changed"]
    assert not inference["artifacts"]["retrained"]
    # the release manifest's artifact hashes: each trained model's files, sha256 per file
    hashes = inference["artifacts"]["hashes"]
    assert {"small_tree", "small_ridge", "grid_ridge"} <= set(hashes)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes["small_tree"]["files"].values())
    perf = report.gate("performance").evidence["run_types"]["calibration"]
    assert perf["judged"]["small_chorus"]["vs_production"]["verdict"] is not None
    assert set(perf["judged"]["small_chorus"]["baselines"]) == {"zero_floor"}
    assert "small_tree" in perf["models"]
    diff = report.gate("forecast_diff").evidence["models"]
    assert diff["small_tree"]["total_change"] != 0.0  # the changed model moved
    assert diff["last_value"]["total_change"] == 0.0  # an unchanged one did not
    # the report: JSON round trip, self-contained HTML, written where promised
    doc = json.loads(Path(report.json_path).read_text())
    assert StagingReport.from_dict(doc) == report
    assert Path(report.json_path).parent.name.startswith(sha[:12] + "_cm-")
    page = Path(report.html_path).read_text()
    assert "small_chorus" in page and not re.search(r"(src|href)=['\"]?https?:", page)
    # the user's repository is untouched: same branches, no leftover worktree, clean tree
    assert git(world.repo, "branch", "--list") == branches_before
    assert len(git(world.repo, "worktree", "list").splitlines()) == 1
    assert git(world.repo, "status", "--porcelain") == ""


def test_worse_ensemble_fails_performance(world: World) -> None:
    zero = ('name = "zero_guess"\nlevel = "cm"\ntarget = "ged_sb"\nalgorithm = "zero"\n'
            'status = "deployed"\nowner = "tests"\ndescription = "Zeros."\nfeatures = []\n')
    chorus = (world.repo / "ensembles" / "small_chorus.toml").read_text()
    commit_on(world.repo, "feature/worse", "development", {
        "models/zero_guess.toml": zero,
        "ensembles/small_chorus.toml": chorus.replace(
            '["small_ridge", "small_tree"]', '["small_ridge", "small_tree", "zero_guess"]')},
        "feat: a zero member in the chorus")
    report = stage(world.repo, world.settings, candidate="feature/worse",
                   skip_tests_reason="tested on the good change")
    gate = report.gate("performance")
    assert gate.status == "FAIL" and "performance" in report.failed_gates()
    judged = gate.evidence["run_types"]["calibration"]["judged"]["small_chorus"]
    vs = judged["vs_production"]
    assert vs["relative"] > world.settings.release.tolerance
    assert vs["verdict"] == "A better" and vs["p_value"] < 0.05
    assert "small_chorus" in gate.summary and "Diebold-Mariano" in gate.summary
    assert report.gate("tests").status == "SKIP"
    assert report.gate("tests").evidence["reason"] == "tested on the good change"


def _locf_patched(world: World, first_unit: str) -> dict[str, str | None]:
    """The files of a candidate carrying its own ewspipe whose LOCF baseline forecasts
    ``first_unit`` (a Python expression) for the first unit."""
    import shutil

    package = copy_package(world.repo)
    try:
        source = (package / "models" / "baselines.py").read_text()
        old = ("        return _per_step(np.bincount(group, values, len(counts)), "
               "len(steps)), None\n")
        assert source.count(old) == 1
        patched = source.replace(old, "        out = np.bincount(group, values, len(counts))\n"
                                 f"        out[0] = {first_unit}\n"
                                 "        return _per_step(out, len(steps)), None\n")
        files: dict[str, str | None] = {
            str(p.relative_to(world.repo)): p.read_text() for p in package.rglob("*")
            if p.is_file() and p.suffix in (".py", ".typed")}
        files["src/ewspipe/models/baselines.py"] = patched
    finally:
        shutil.rmtree(world.repo / "src")
    return files


def test_broken_model_fails_inference(world: World) -> None:
    """A repository carrying its own code whose LOCF baseline emits NaN for one unit: the
    candidate's code runs (not the installed package) and the gate catches the NaN."""
    files = _locf_patched(world, "np.nan")
    commit_on(world.repo, "feature/nan", "development", files, "fix: a faster LOCF")
    report = stage(world.repo, world.settings, candidate="feature/nan",
                   skip_tests_reason="the suite is the package's own")
    gate = report.gate("inference")
    assert gate.status == "FAIL"
    # the candidate's own pipeline refuses the NaN forecast; the gate names the task and why
    assert any("last_value" in t for t in gate.evidence["failed_tasks"])
    assert "non-finite" in gate.evidence["error"]
    assert "last_value" in gate.summary


def test_behind_production_fails_sync_and_drift_flags_named_snapshot(world: World) -> None:
    """A hotfix on production not back-ported: sync FAILS and the pipeline gates are not run;
    staged on the drifted snapshot by name, the drift gate fails on it."""
    readme = "hotfix note\n"
    hotfix = commit_on(world.repo, "hotfix/note", "production", {"NOTES.md": readme},
                       "fix: a production note")
    git(world.repo, "merge", "-q", "--ff-only", "hotfix/note")  # production now ahead
    try:
        report = stage(world.repo, world.settings, snapshot=world.drifted,
                       skip_tests_reason="not needed")
    finally:
        git(world.repo, "reset", "-q", "--hard", "HEAD~1")  # the test's own repository
    sync = report.gate("sync")
    assert sync.status == "FAIL"
    assert any(hotfix[:7] in c for c in sync.evidence["missing_production_commits"])
    for gate in ("inference", "performance", "forecast_diff"):
        assert report.gate(gate).status == "SKIP"
    assert report.snapshots["cm"] == world.drifted
    drift = report.gate("drift")
    assert drift.status == "FAIL"
    cm = drift.evidence["levels"]["cm"]
    assert cm["snapshot"] == world.drifted and cm["alerts_at_or_above"] > 0


def test_invalid_model_file_fails_integrity(world: World) -> None:
    bad = ('name = "Bad-Name"\nlevel = "cm"\ntarget = "ged_sb"\nalgorithm = "zero"\n'
           'status = "deployed"\nowner = "tests"\ndescription = "x"\nfeatures = []\n')
    commit_on(world.repo, "feature/bad", "development", {"models/bad_name.toml": bad},
              "feat: a bad model")
    report = stage(world.repo, world.settings, candidate="feature/bad",
                   skip_tests_reason="not needed")
    gate = report.gate("integrity")
    assert gate.status == "FAIL"
    assert "bad_name.toml" in json.dumps(gate.evidence)
    assert report.gate("inference").status == "SKIP"
    assert not report.passed and report.failed_gates() == ["integrity"]


def test_malformed_inputs_raise_input_error(world: World, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no-such-branch"):
        stage(world.repo, world.settings, candidate="no-such-branch")
    with pytest.raises(InputError, match="cm-ffff"):
        stage(world.repo, world.settings, snapshot="cm-ffffffffffff")
    with pytest.raises(InputError, match="not inside a git repository"):
        stage(tmp_path, world.settings)
    with pytest.raises(InputError, match="does not exist"):
        stage(tmp_path / "missing", world.settings)
    with pytest.raises(InputError, match="-x"):
        stage(world.repo, world.settings, candidate="-x")


def test_production_never_ran_stages_on_the_latest_snapshot_with_a_warning(
        world: World, tmp_path: Path) -> None:
    settings = workspace_settings(world.repo, tmp_path / "state")  # no production run here
    snapshots = import_demo(settings)
    bad = ('name = "worse_name"\nlevel = "xx"\ntarget = "ged_sb"\nalgorithm = "zero"\n'
           'status = "deployed"\nowner = "tests"\ndescription = "x"\nfeatures = []\n')
    commit_on(world.repo, "feature/level", "development", {"models/worse_name.toml": bad},
              "feat: a model of no level")  # integrity fails: the pipeline gates are skipped
    report = stage(world.repo, settings, candidate="feature/level",
                   skip_tests_reason="not needed")
    assert report.snapshots == snapshots
    drift = report.gate("drift")
    assert drift.status in ("WARN", "FAIL")
    assert "production never ran" in drift.evidence["snapshot_note"]
    assert Path(report.json_path).is_relative_to(tmp_path / "state" / "staging")


def test_wild_candidate_fails_and_cannot_be_released(world: World) -> None:
    """A candidate carrying its own code whose LOCF baseline forecasts a billion deaths for
    one unit: finite and non-negative, so only the plausibility ceiling catches it. The
    inference gate (the pipeline's QA) and the performance gate (calibration forecasts) FAIL,
    and `release promote`, even with the performance gate overridden, exits 1 with nothing
    released."""
    import contextlib
    import io

    from ewspipe.cli.main import main

    files = _locf_patched(world, "1e9")
    sha = commit_on(world.repo, "feature/wild", "development", files, "perf: a bolder LOCF")

    def cli(*args: str) -> tuple[int, dict]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(world.repo / "ewspipe.toml"), "--state-dir",
                         str(world.settings.state_dir), "release", *args, "--json"])
        return code, json.loads(out.getvalue())

    code, report = cli("stage", "--candidate", "feature/wild", "--skip-tests",
                       "the suite is the package's own")
    assert code == 1, report
    assert report["engine"]["source"] == "tree"  # the candidate's own code validated it
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["inference"]["status"] == "FAIL"
    assert "last_value" in gates["inference"]["summary"]
    assert gates["performance"]["status"] == "FAIL"
    assert "last_value" in gates["performance"]["summary"]
    assert "ceiling" in gates["performance"]["summary"]
    before = git(world.repo, "tag", "--list"), git(world.repo, "rev-parse", "production")
    code, doc = cli("promote", "--candidate", sha, "--allow", "performance", "--reason",
                    "it is only a baseline")
    assert code == 1 and "inference" in doc["error"], doc
    assert (git(world.repo, "tag", "--list"), git(world.repo, "rev-parse", "production")) \
        == before


def test_snapshots_are_named_one_per_level_as_a_list_or_comma_separated(world: World) -> None:
    """``release stage --snapshot`` repeats (a list); one comma-separated string, its old
    form, still names several."""
    store = SnapshotStore(world.settings.snapshot_dir)
    one_each = {str(m.level): m.id for m in store.list()}
    assert len(one_each) >= 1
    ids = list(one_each.values())
    assert _named_snapshots(store, ids) == one_each
    assert _named_snapshots(store, ",".join(ids)) == one_each
    assert _named_snapshots(store, None) == {}
    with pytest.raises(InputError, match="two snapshots given for level"):
        _named_snapshots(store, [ids[0], ids[0][:10]])
    with pytest.raises(InputError, match="names no snapshot"):
        _named_snapshots(store, [" ", ""])
