"""Fault-and-abuse cases of `ewspipe models ...` (issue 18, cases 5 and 9): impossible feature
expressions and hostile model files are refused with exit 2, one JSON document naming the
file, the expression and the bound with a fix, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.abuse.harness import Outcome, assert_refused, tree_digest
from tests.flows.monthly_workspace import write_monthly_workspace

from ewspipe.errors import SpecError
from ewspipe.features import build_design
from ewspipe.models.stepshifter import Stepshifter
from ewspipe.panel.schema import validate_panel

MODEL = """\
name = "amber_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "ann@example.org"
description = "A model with one hostile feature."
features = {features}
"""

DEEP = "log1p(" * 10_000 + "ged_sb" + ")" * 10_000  # the deeply nested expression
NESTED = "log1p(" * 100 + "ged_sb" + ")" * 100  # short enough, nested too deep

# (id, feature expression, what the message must name besides the file and the expression)
IMPOSSIBLE = [
    ("lag-1e9", "lag(ged_sb, 1000000000)", ["<= 1200 months", "fix"]),
    ("lag-600", "lag(ged_sb, 600)", ["600 months back", "121..444", "at most 322", "fix"]),
    ("mmean-1e12", "mmean(ged_sb, 1e12)", ["<= 1200 months", "fix"]),
    ("msum-1201", "msum(ged_sb, 1201)", ["<= 1200 months", "fix"]),
    ("msum-0", "msum(ged_sb, 0)", [">= 1", "fix"]),
    ("mmean-negative", "mmean(ged_sb, -12)", [">= 1", "fix"]),
    ("lag-negative", "lag(ged_sb, -1)", [">= 0", "future"]),
    ("window-float", "mmean(ged_sb, 2.5)", ["whole number", "fix"]),
    ("decay-huge-halflife", "decay(ged_sb, 1e12)", ["<= 1200 months", "fix"]),
    ("decay-zero-halflife", "decay(ged_sb, 0)", ["> 0", "fix"]),
    ("not-finite", "lag(ged_sb, 1e400)", ["not finite", "fix"]),
    ("nested-reach", "lag(msum(ged_sb, 300), 30)", ["329 months back", "fix"]),
    ("window-beyond-train", "mmean(ged_sb, 400)", ["399 months back", "fix"]),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Callable[[str], Path]:
    """``workspace(features_toml)``: models/amber_tree.toml holding those features."""

    def write(features: str) -> Path:
        models = tmp_path / "models"
        models.mkdir(exist_ok=True)
        (models / "amber_tree.toml").write_text(MODEL.format(features=features))
        return tmp_path

    return write


def _check(ewspipe: Callable[..., Outcome], root: Path, *args: str) -> Outcome:
    return ewspipe("models", *args, "--models-dir", root / "models", "--json")


def _refused_feature(ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path],
                     features: str, key: str, mentions: list[str]) -> dict:
    """``models check`` on amber_tree with ``features``: exit 2 naming the file and ``key``,
    nothing written; returns the JSON document."""
    root = workspace(features)
    before = tree_digest(root)
    return assert_refused(_check(ewspipe, root, "check"), code=2, before=before,
                          after=tree_digest(root),
                          mentions=["models/amber_tree.toml", key, *mentions])


@pytest.mark.parametrize(("expr", "mentions"), [c[1:] for c in IMPOSSIBLE],
                         ids=[c[0] for c in IMPOSSIBLE])
def test_models_check_refuses_an_impossible_feature(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path], expr: str,
    mentions: list[str],
) -> None:
    doc = _refused_feature(ewspipe, workspace, f'["ged_sb", "{expr}"]', "features[1]",
                           [expr, *mentions])
    assert doc["files_invalid"] == 1 and doc["problem_count"] == 1


def test_models_check_refuses_a_learner_without_features(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path],
) -> None:
    """A stepshifter with `features = []` passed the check, then every run failed with exit 1
    and scikit-learn's "Found array with 0 feature(s)"."""
    doc = _refused_feature(ewspipe, workspace, "[]", "key 'features'",
                           ["'stepshifter' learns from features", "list at least one"])
    assert doc["files_invalid"] == 1 and doc["problem_count"] == 1


@pytest.mark.parametrize(("expr", "mentions"), [
    (DEEP, [f"{len(DEEP)} characters", "more than the 1000", "fix"]),
    (NESTED, ["nested 100 deep", "more than the 20", "fix"]),
    ("(" * 900, ["nested 900 deep", "fix"]),
], ids=["deep-10000", "nested-100", "parentheses"])
def test_models_check_refuses_deep_nesting_without_a_traceback(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path], expr: str,
    mentions: list[str],
) -> None:
    doc = _refused_feature(ewspipe, workspace, f'["{expr}"]', "features[0]",
                           [expr[:40], *mentions])
    assert len(doc["error"]) < 2000  # the expression is quoted as an excerpt, not in full


def test_models_check_refuses_deeply_nested_toml(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path],
) -> None:
    root = workspace("[" * 10_000 + "]" * 10_000)
    before = tree_digest(root)
    assert_refused(_check(ewspipe, root, "check"), code=2, before=before,
                   after=tree_digest(root),
                   mentions=["models/amber_tree.toml", "nested too deeply", "fix"])


def test_the_look_back_bound_follows_the_settings_partitions(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path],
) -> None:
    """lag 200 fits the default calibration window (121..444) but not one from 301."""
    root = workspace('["lag(ged_sb, 200)"]')
    assert ewspipe("models", "check", "--models-dir", root / "models", "--json").code == 0
    config = root / "ewspipe.toml"
    config.write_text("[partitions.calibration]\ntrain = [301, 444]\ntest = [445, 492]\n")
    before = tree_digest(root)
    assert_refused(ewspipe("--config", config, "models", "check", "--models-dir",
                           root / "models", "--json"),
                   code=2, before=before, after=tree_digest(root),
                   mentions=["models/amber_tree.toml", "lag(ged_sb, 200)", "301..444",
                             "at most 142", "[partitions]"])


@pytest.mark.parametrize("command", [["list"], ["show", "amber_tree"], ["catalog"]],
                         ids=["list", "show", "catalog"])
def test_commands_reading_model_files_refuse_impossible_features(
    ewspipe: Callable[..., Outcome], workspace: Callable[[str], Path], command: list[str],
) -> None:
    root = workspace('["lag(ged_sb, 600)", "mmean(ged_sb, 1e12)"]')
    before = tree_digest(root)
    assert_refused(_check(ewspipe, root, *command), code=2, before=before,
                   after=tree_digest(root),
                   mentions=["models/amber_tree.toml", "lag(ged_sb, 600)", "at most 322",
                             "mmean(ged_sb, 1e12)", "<= 1200", "fix"])


# --------------------------------------------------------------------------- fit time


def _panel(months: int = 40, units: int = 6):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame([
        {"month_id": 121 + m, "country_id": u, "ged_sb": int(rng.poisson(2)),
         "ged_ns": 0, "ged_os": 0, "pop": np.nan}
        for m in range(months) for u in range(1, units + 1)])
    return validate_panel(frame, "cm", source="test")[0]


@pytest.mark.parametrize("features", [["ged_sb", "lag(ged_sb, 60)"], ["ged_sb", "pop"]],
                         ids=["lag-beyond-history", "all-missing-column"])
def test_fit_refuses_a_feature_missing_for_every_training_row(features: list[str]) -> None:
    """The issue's run trained on an all-missing feature and forecast one constant for every
    country; now the fit (and a run's design, which names the model) refuses it."""
    panel = _panel()
    design = build_design(panel, "ged_sb", features)
    with pytest.raises(SpecError, match=r"missing \(NaN\) for every training row") as exc:
        Stepshifter(learner="ridge", steps=2, n_jobs=1).fit(design, train_last=150)
    assert repr(features[1]) in str(exc.value) and "Fix:" in str(exc.value)
    with pytest.raises(SpecError, match="model 'amber_tree'"):
        from ewspipe.features.design import check_training_features
        check_training_features(design, train_last=150, model="amber_tree")
    with pytest.raises(SpecError, match=repr(features[1]).replace("(", r"\(").replace(")", r"\)")):
        build_design(panel, "ged_sb", features, train_last=150)


def test_fit_accepts_a_feature_defined_in_the_last_training_months() -> None:
    """Missing early (a long lag) is fine while some training row has the feature."""
    design = build_design(_panel(), "ged_sb", ["lag(ged_sb, 25)"], train_last=150)
    model = Stepshifter(learner="ridge", steps=2, n_jobs=1).fit(design, train_last=150)
    assert model.trained_steps_ == (1, 2)


def test_a_run_refuses_a_feature_missing_for_every_training_row(
    ewspipe: Callable[..., Outcome], tmp_path: Path,
) -> None:
    """The issue's run: a model file the catalog accepts (no partitions are checked when a
    run loads it) whose lag outreaches the whole history; the run used to forecast a constant
    for every country and pass QA. Now it stops at the model's design, naming both."""
    config = write_monthly_workspace(tmp_path)
    models = tmp_path / "models"
    for name in ("small_tree", "grid_ridge", "old_guess"):
        (models / f"{name}.toml").unlink()
    (tmp_path / "ensembles" / "grid_chorus.toml").unlink()
    chorus = tmp_path / "ensembles" / "small_chorus.toml"
    chorus.write_text(chorus.read_text().replace('"small_ridge", "small_tree"', '"small_ridge"'))
    ridge = models / "small_ridge.toml"
    ridge.write_text(ridge.read_text().replace('"mmean(ged_sb, 12)"', '"lag(ged_sb, 600)"'))
    result = ewspipe("--config", config, "run", "--json")
    assert_refused(result, code=2, mentions=[
        "model 'small_ridge'", "'lag(ged_sb, 600)'", "missing (NaN) for every training row",
        "fix"])
