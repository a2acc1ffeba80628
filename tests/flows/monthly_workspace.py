"""A small workspace for monthly-run tests (tests/flows and tests/cli): a few quick models,
two ensembles (a cm one and a pgm one reconciled with it), a small demo world (30 countries,
100 cells, last month 520) imported on the first run."""

from __future__ import annotations

from pathlib import Path

MODEL = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "{algorithm}"
status = "{status}"
owner = "tests"
description = "A quick test model."
features = {features}
{hyper}
"""

RIDGE = """
[hyperparameters]
learner = "ridge"
log_target = true
seed = 7
"""

TREE = """
[hyperparameters]
learner = "lightgbm"
seed = 7

[hyperparameters.learner_params]
n_estimators = 10
"""

ENSEMBLE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
members = {members}
aggregation = "mean"
status = "deployed"
owner = "tests"
description = "A test ensemble."
{extra}
"""


def write_monthly_workspace(root: Path) -> Path:
    """Models, ensembles and ewspipe.toml below ``root``; returns the settings file."""
    models, ensembles = root / "models", root / "ensembles"
    models.mkdir(parents=True)
    ensembles.mkdir()
    cm_feats = '["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]'
    specs = [
        ("small_tree", "cm", "stepshifter", "deployed", cm_feats, TREE),
        ("small_ridge", "cm", "stepshifter", "deployed", cm_feats, RIDGE),
        ("last_value", "cm", "locf", "shadow", "[]", ""),
        ("grid_ridge", "pgm", "stepshifter", "deployed",
         '["ged_sb", "lag(ged_sb, 1)", "splag(ged_sb)"]', RIDGE),
        ("old_guess", "cm", "locf", "deprecated", "[]", ""),
    ]
    for name, level, algorithm, status, features, hyper in specs:
        (models / f"{name}.toml").write_text(MODEL.format(
            name=name, level=level, algorithm=algorithm, status=status, features=features,
            hyper=hyper))
    (ensembles / "small_chorus.toml").write_text(ENSEMBLE.format(
        name="small_chorus", level="cm", members='["small_ridge", "small_tree"]', extra=""))
    (ensembles / "grid_chorus.toml").write_text(ENSEMBLE.format(
        name="grid_chorus", level="pgm", members='["grid_ridge"]',
        extra='reconcile_with = "small_chorus"'))
    cfg = root / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n\n'
                   "[demo]\ncountries = 30\npgm_cells = 100\nlast_month = 520\n\n"
                   # the demo world ends in 520: that is the month production expects here
                   "[qa]\nexpected_last_month = 520\n")
    return cfg


GATES = ("sync", "integrity", "tests", "inference", "drift", "performance", "forecast_diff")


def staging_report(commit: str, production: str | None = None, *, ref: str = "development",
                   failed: tuple[str, ...] = (), snapshots: dict[str, str] | None = None,
                   ) -> dict:
    """A staging report dict as ``StagingReport.to_dict()`` makes it (every gate PASS except
    ``failed``), for tests that release without running the gates."""
    gates = [{"gate": g, "status": "FAIL" if g in failed else "PASS",
              "summary": f"{g} {'failed' if g in failed else 'ok'} (test report)",
              "evidence": {"performance": {"msle": {"candidate": 0.5, "production": 0.6}}}
              if g == "performance" else {}} for g in GATES]
    return {"candidate_commit": commit, "candidate_ref": ref, "production_commit": production,
            "snapshots": snapshots or {"cm": "cm-test"}, "passed": not failed,
            "failed_gates": list(failed), "gates": gates,
            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z",
            "json_path": "report.json", "html_path": "report.html"}


def release_workspace(cfg: Path, state_dir: Path) -> str:
    """Make the workspace of ``cfg`` a released product repository: a git repository with
    everything committed on ``development``, promoted (``ewspipe.release``) to ``production``
    as the first release, checked out on production. Returns the release tag. Only a clean
    production release may publish, so every test that publishes calls this first."""
    import subprocess

    from ewspipe.release.context import ReleaseContext
    from ewspipe.release.promote import promote
    from ewspipe.settings import load_settings

    root = cfg.parent

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)

    (root / ".gitignore").write_text("state/\n")
    if not (root / ".git").exists():
        git("init", "-q", "-b", "development")
        git("config", "user.name", "ewspipe tests")
        git("config", "user.email", "tests@example.org")
        git("config", "commit.gpgsign", "false")
    git("add", "-A")
    git("commit", "-q", "-m", "feat: the test workspace")
    ctx = ReleaseContext.open(load_settings(cfg, state_dir=state_dir))
    ctx.ledger.record_staging(staging_report(ctx.git.resolve("development")))
    result = promote(ctx)
    git("checkout", "-q", "production")
    return str(result["tag"])
