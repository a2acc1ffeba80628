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
