"""Loading models/*.toml: every error path names the file and the key and says how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit

from ewspipe.catalog.loader import Catalog, check_models, feature_parser, load_catalog
from ewspipe.catalog.rules import Status
from ewspipe.errors import SpecError
from ewspipe.models import registry
from ewspipe.panel.schema import Level


@pytest.fixture
def registry_ready() -> None:
    """Skip (with the reason) while algorithm modules the registry imports are unwritten."""
    try:
        registry.names()
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("ewspipe.models."):
            pytest.skip(f"algorithm registry incomplete: {exc.name} does not exist yet")
        raise


@pytest.fixture
def features_ready() -> None:
    if feature_parser()[0] is None:
        pytest.skip("ewspipe.features.expressions does not exist yet")


needs_registry = pytest.mark.usefixtures("registry_ready")
needs_features = pytest.mark.usefixtures("registry_ready", "features_ready")

AMBER = """\
# a handwritten model file
name = "amber_tree"
level = "cm"
target = "ged_sb"
algorithm = "average"
features = []
status = "deployed"
owner = "ann@example.org"
description = "Mean of the last six months."

[hyperparameters]
w = 6
"""

DULL = """\
name = "dull_zero"
level = "pgm"
target = "ged_sb"
algorithm = "zero"
features = []
status = "baseline"
owner = "bob@example.org"
description = "All zeros: the yardstick."
"""

OLD = """\
name = "old_river"
level = "cm"
target = "ged_ns"
algorithm = "conflictology"
features = []
status = "deprecated"
owner = "cy@example.org"
description = "Retired."

[hyperparameters]
w = 24
n_samples = 50
"""


def _model(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "amber_tree", "level": "cm", "target": "ged_sb", "algorithm": "average",
        "features": [], "status": "shadow", "owner": "ann@example.org",
        "description": "Mean of the last months.", "hyperparameters": {"w": 6},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def _write(directory: Path, stem: str, content: str | dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.toml"
    path.write_text(content if isinstance(content, str) else tomlkit.dumps(content))
    return path


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory, with models/ and ensembles/ inside."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "ensembles").mkdir()
    return tmp_path


def _problems(workspace: Path) -> list[str]:
    report = check_models(workspace / "models")
    assert not report.ok
    return [str(p) for p in report.problems]


def _one(workspace: Path) -> str:
    problems = _problems(workspace)
    assert len(problems) == 1, problems
    return problems[0]


def _model_problem(workspace: Path, stem: str) -> str:
    """The one problem reported for models/<stem>.toml (ensemble files report their own)."""
    mine = [p for p in _problems(workspace) if p.startswith(f"models/{stem}.toml")]
    assert len(mine) == 1, mine
    return mine[0]


# --- a valid catalog ----------------------------------------------------------------------------


@needs_registry
def test_valid_catalog(workspace: Path) -> None:
    models = workspace / "models"
    _write(models, "old_river", OLD)
    _write(models, "amber_tree", AMBER)
    _write(models, "dull_zero", DULL)
    (models / "README.md").write_text("not a model")
    (models / ".amber_tree.toml.123.tmp").write_text("garbage")
    (models / ".hidden.toml").write_text("garbage = ")
    catalog = load_catalog(models)
    assert isinstance(catalog, Catalog)
    assert catalog.names() == ["amber_tree", "dull_zero", "old_river"]
    assert len(catalog) == 3 and "dull_zero" in catalog
    amber = catalog.get("amber_tree")
    assert amber.hyperparameters == {"w": 6} and amber.status is Status.DEPLOYED
    assert catalog.path("amber_tree") == models / "amber_tree.toml"
    assert [s.name for s in catalog.filter(level="cm")] == ["amber_tree", "old_river"]
    assert [s.name for s in catalog.filter(level=Level.PGM)] == ["dull_zero"]
    assert [s.name for s in catalog.filter(status="baseline")] == ["dull_zero"]
    assert catalog.filter(level="pgm", status="deployed") == []


@needs_registry
def test_default_models_dir_is_the_working_directory(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", AMBER)
    assert load_catalog().names() == ["amber_tree"]


@needs_registry
def test_lookup_suggests_close_names(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", AMBER)
    _write(workspace / "ensembles", "bright_choir", (
        'name = "bright_choir"\nlevel = "cm"\ntarget = "ged_sb"\nmembers = ["amber_tree"]\n'
        'aggregation = "mean"\nstatus = "shadow"\nowner = "tests"\n'
        'description = "An ensemble of one."\n'))
    catalog = load_catalog(workspace / "models")
    with pytest.raises(SpecError, match=r"no model named 'amber_tre'.*Did you mean 'amber_tree'"):
        catalog.get("amber_tre")
    with pytest.raises(SpecError, match="'bright_choir' is an ensemble, not a model"):
        catalog.get("bright_choir")


@needs_registry
def test_deprecated_model_loads_but_refuses_to_run(workspace: Path) -> None:
    _write(workspace / "models", "old_river", OLD)
    catalog = load_catalog(workspace / "models")
    assert catalog.get("old_river").status is Status.DEPRECATED
    with pytest.raises(SpecError) as exc:
        catalog.require_runnable("old_river")
    assert "model 'old_river' is deprecated and refuses to run" in str(exc.value)
    assert "models/old_river.toml" in str(exc.value)


@needs_registry
def test_runnable_model_is_returned(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", AMBER)
    assert load_catalog(workspace / "models").require_runnable("amber_tree").name == "amber_tree"


def test_missing_models_dir(workspace: Path) -> None:
    with pytest.raises(SpecError, match=r"models directory nowhere does not exist.*models new"):
        check_models(workspace / "nowhere")


def test_empty_models_dir_is_valid_with_a_note(workspace: Path) -> None:
    report = check_models(workspace / "models")
    assert report.ok and report.files == ()
    assert any("no model files" in n for n in report.notes)


# --- one error path each -------------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", 'name = "amber_tree"\nlevel = "cm"\nlevel = cm\n')
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: line 3: invalid TOML")
    assert "fix the syntax" in msg


def test_duplicate_key_is_a_syntax_error(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", 'owner = "again"\n' + AMBER)
    msg = _one(workspace)  # the second 'owner' is on line 9
    assert msg.startswith("models/amber_tree.toml: line 9: invalid TOML: Cannot overwrite")


def test_syntax_error_at_the_end(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", 'name = "amber_tree"\nfeatures = [\n')
    assert _one(workspace).startswith("models/amber_tree.toml: line 2: invalid TOML")


@needs_registry
def test_top_level_key_below_the_hyperparameters_table(workspace: Path) -> None:
    """The classic TOML trap: a key after [hyperparameters] belongs to that table."""
    text = AMBER.replace('owner = "ann@example.org"\n', "") + 'owner = "ann@example.org"\n'
    _write(workspace / "models", "amber_tree", text)
    problems = _problems(workspace)
    assert any(p.startswith("models/amber_tree.toml: key 'owner': required key is missing")
               for p in problems)
    assert any(p.startswith("models/amber_tree.toml: key 'hyperparameters.owner': unknown "
                            "hyperparameter 'owner'") and "move it above the [hyperparameters]"
               in p for p in problems)


@needs_registry
@pytest.mark.parametrize("key", ["name", "level", "target", "algorithm", "features", "status",
                                 "owner", "description"])
def test_missing_key(workspace: Path, key: str) -> None:
    _write(workspace / "models", "amber_tree", _model(**{key: None}))
    msg = _one(workspace)
    assert msg.startswith(f"models/amber_tree.toml: key '{key}': required key is missing")
    assert f"add `{key} = " in msg


@needs_registry
@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"owner": 3}, "owner", "expected a string, got 3 (integer)"),
        ({"description": True}, "description", "expected a string, got True (boolean)"),
        ({"features": "lag(ged_sb, 1)"}, "features", "expected an array of strings"),
        ({"features": ["lag(ged_sb, 1)", 7]}, "features[1]", "expected a string, got 7"),
        ({"hyperparameters": 3}, "hyperparameters", "expected a table"),
        ({"level": "country"}, "level", "got 'country' (string); expected one of 'cm' or 'pgm'"),
        ({"status": "live"}, "status", "expected one of 'deployed', 'shadow', 'baseline' or"),
        ({"target": "ln_ged_sb"}, "target", "not a count column"),
        ({"owner": "   "}, "owner", "must not be blank"),
        ({"description": ""}, "description", "must not be empty"),
    ],
)
def test_wrong_type_or_value(workspace: Path, change: dict[str, Any], key: str,
                             fragment: str) -> None:
    _write(workspace / "models", "amber_tree", _model(**change))
    msg = _one(workspace)
    assert msg.startswith(f"models/amber_tree.toml: key '{key}': "), msg
    assert fragment in msg


@needs_registry
def test_unknown_top_level_key_suggests_the_right_one(workspace: Path) -> None:
    raw = _model(hyperparameters=None)
    raw["hyperparameter"] = {"w": 3}
    _write(workspace / "models", "amber_tree", raw)
    msg = _one(workspace)
    assert "key 'hyperparameter': unknown key" in msg and "Did you mean 'hyperparameters'" in msg


@needs_registry
def test_algorithm_parameter_at_top_level_points_to_hyperparameters(workspace: Path) -> None:
    raw = _model()
    raw["window"] = 3
    _write(workspace / "models", "amber_tree", raw)
    assert "key 'window': unknown key" in _one(workspace)
    assert "belong in the [hyperparameters] table" in _one(workspace)


@needs_registry
def test_bad_name(workspace: Path) -> None:
    _write(workspace / "models", "AmberTree", _model(name="AmberTree"))
    msg = _one(workspace)
    assert msg.startswith("models/AmberTree.toml: key 'name': 'AmberTree' is not an "
                          "adjective_noun name")
    assert "try 'amber_tree'" in msg


@needs_registry
def test_name_must_equal_file_stem(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(name="amber_trees"))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'name': 'amber_trees' does not match "
                          "the file name amber_tree.toml")
    assert 'set name = "amber_tree"' in msg and "amber_trees.toml" in msg


@needs_registry
def test_duplicate_model_names(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model())
    _write(workspace / "models", "amber_leaf", _model())  # name says amber_tree
    problems = _problems(workspace)
    assert ("models/amber_leaf.toml: key 'name': 'amber_tree' does not match the file name "
            "amber_leaf.toml") in "\n".join(problems)
    dup = [p for p in problems if "also the name of" in p]
    assert len(dup) == 2
    assert dup[1].startswith("models/amber_tree.toml: key 'name': 'amber_tree' is also the name "
                             "of models/amber_leaf.toml; names must be unique across models and "
                             "ensembles")


@needs_registry
def test_name_taken_by_an_ensemble(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model())
    _write(workspace / "ensembles", "amber_tree", 'name = "amber_tree"\nmembers = ["x_y"]\n')
    msg = _model_problem(workspace, "amber_tree")
    assert msg.startswith("models/amber_tree.toml: key 'name': 'amber_tree' is also the name of "
                          "ensembles/amber_tree.toml")
    assert "rename one of them" in msg


@needs_registry
def test_broken_ensemble_file_reserves_its_stem(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model())
    _write(workspace / "ensembles", "amber_tree", "name = [")
    assert "also the name of ensembles/amber_tree.toml" in _model_problem(workspace, "amber_tree")


@needs_registry
def test_ensembles_dir_can_be_given(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model())
    _write(workspace / "other", "amber_tree", 'name = "amber_tree"\n')
    assert check_models(workspace / "models").ok
    report = check_models(workspace / "models", ensembles_dir=workspace / "other")
    assert "also the name of other/amber_tree.toml" in str(report.problems[0])


@needs_registry
def test_unknown_algorithm_suggests(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(algorithm="averag", hyperparameters=None))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'algorithm': unknown algorithm 'averag'")
    assert "Did you mean 'average'?" in msg and "set algorithm to one of them" in msg


@needs_registry
def test_every_unknown_hyperparameter_is_reported(workspace: Path) -> None:
    _write(workspace / "models", "old_river",
           _model(name="old_river", algorithm="conflictology",
                  hyperparameters={"ww": 12, "n_sample": 10, "seed": 1}))
    problems = _problems(workspace)
    assert len(problems) == 2, problems
    joined = "\n".join(problems)
    assert ("models/old_river.toml: key 'hyperparameters.ww': unknown hyperparameter 'ww' for "
            "algorithm 'conflictology'") in joined
    assert "key 'hyperparameters.n_sample'" in joined and "Did you mean 'n_samples'?" in joined
    assert "remove or rename it in [hyperparameters]" in joined


@needs_registry
def test_hyperparameters_are_checked_against_the_algorithm(workspace: Path) -> None:
    _write(workspace / "models", "dull_zero", _model(name="dull_zero", algorithm="zero",
                                                      hyperparameters={"w": 3}))
    msg = _one(workspace)
    assert msg.startswith("models/dull_zero.toml: key 'hyperparameters.w': unknown "
                          "hyperparameter 'w' for algorithm 'zero'")


@needs_registry
def test_nested_hyperparameter_typo(workspace: Path) -> None:
    """The example of the model-file format: a typo inside [hyperparameters.learner_params]."""
    _write(workspace / "models", "amber_tree", _model(
        algorithm="stepshifter", features=["ged_sb"],
        hyperparameters={"learner_params": {"n_estimatorz": 10}}))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key "
                          "'hyperparameters.learner_params.n_estimatorz': ")
    assert "n_estimatorz" in msg


@needs_registry
def test_hyperparameter_values_are_checked_by_the_algorithm(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(hyperparameters={"w": 0}))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'hyperparameters.w': hyperparameter 'w' "
                          "of algorithm 'average' must be")
    assert "got 0" in msg and "change its value in [hyperparameters]" in msg


@needs_registry
def test_hurdle_nested_learner_parameter(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(
        algorithm="hurdle", features=["ged_sb"],
        hyperparameters={"classifier_params": {"n_estimatorz": 10}}))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key "
                          "'hyperparameters.classifier_params.n_estimatorz': ")
    assert "remove or rename it in [hyperparameters.classifier_params]" in msg


@needs_registry
def test_learner_rejecting_a_value_points_at_its_table(workspace: Path) -> None:
    pytest.importorskip("lightgbm")
    _write(workspace / "models", "amber_tree", _model(
        algorithm="stepshifter", features=["ged_sb"],
        hyperparameters={"learner_params": {"num_leaves": 0}}))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'hyperparameters.learner_params': ")
    assert "num_leaves" in msg


@needs_features
def test_unparseable_feature(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree",
           _model(features=["lag(ged_sb, 1)", "lagg(ged_sb, 2)"]))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'features[1]': feature 'lagg(ged_sb, 2)'")
    assert "did you mean 'lag'" in msg and "Fix:" in msg


@needs_features
def test_feature_of_the_wrong_level(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(features=["splag(ged_sb)"]))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'features[0]': feature 'splag(ged_sb)'")
    assert "pgm" in msg


@needs_features
def test_same_feature_twice_in_another_spelling(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree",
           _model(features=["decay(ged_sb, 12)", "lag(ged_sb, 1)", "decay( ged_sb,12.0 )"]))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'features[2]': 'decay( ged_sb,12.0 )' is "
                          "the same feature as features[0]")


@needs_features
def test_valid_features_pass(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree", _model(
        algorithm="stepshifter", hyperparameters=None,
        features=["lag(ged_sb, 1)", "msum(ged_sb, 12)", "decay(ged_sb, 12)"]))
    assert check_models(workspace / "models").ok


@needs_registry
@pytest.mark.parametrize("algorithm", ["stepshifter", "hurdle"])
def test_a_learner_needs_features(workspace: Path, algorithm: str) -> None:
    """Without features a learner has nothing to learn from: refused by the check, not by
    scikit-learn in every run ("Found array with 0 feature(s)")."""
    _write(workspace / "models", "amber_tree", _model(algorithm=algorithm, hyperparameters=None))
    msg = _one(workspace)
    assert msg.startswith("models/amber_tree.toml: key 'features': algorithm "
                          f"'{algorithm}' learns from features")


# --- all problems, not just the first ---------------------------------------------------------


@needs_registry
def test_check_reports_every_problem_of_every_file(workspace: Path) -> None:
    models = workspace / "models"
    _write(models, "amber_tree", AMBER)
    _write(models, "broken_one", "name = \n")
    _write(models, "BadName", {"name": "BadName", "level": "cmm", "algorithm": "zeroo",
                               "features": [], "status": "live", "owner": 3})
    _write(models, "dull_zero", _model(name="dull_zero", algorithm="zero",
                                       hyperparameters={"w": 1}))
    report = check_models(models)
    by_file = {f.path.name: f for f in report.files}
    assert by_file["amber_tree.toml"].ok and by_file["amber_tree.toml"].spec is not None
    assert not by_file["broken_one.toml"].ok
    bad_keys = sorted(p.key for p in by_file["BadName.toml"].problems)
    assert bad_keys == sorted(["name", "level", "target", "algorithm", "status", "owner",
                               "description"])
    assert [p.key for p in by_file["dull_zero.toml"].problems] == ["hyperparameters.w"]
    doc = report.to_dict()
    assert doc["ok"] is False and doc["files_checked"] == 4 and doc["files_invalid"] == 3
    assert doc["problem_count"] == len(report.problems) == 1 + 7 + 1


@needs_registry
def test_load_catalog_lists_all_problems_in_one_error(workspace: Path) -> None:
    models = workspace / "models"
    _write(models, "amber_tree", _model(owner=3))
    _write(models, "dull_zero", _model(name="dull_zero", algorithm="zero", hyperparameters=None,
                                       status="retired"))
    with pytest.raises(SpecError) as exc:
        load_catalog(models)
    msg = str(exc.value)
    assert msg.startswith("2 problem(s) in 2 model file(s) under models:")
    assert "models/amber_tree.toml: key 'owner'" in msg
    assert "models/dull_zero.toml: key 'status'" in msg
    assert "ewspipe models check" in msg


def test_not_utf8(workspace: Path) -> None:
    (workspace / "models" / "amber_tree.toml").write_bytes(b'name = "\xff\xfe"\n')
    assert "models/amber_tree.toml: not UTF-8" in _one(workspace)


def test_paths_outside_the_working_directory_are_shown_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "ws" / "models"
    _write(models, "amber_tree", "x = ]")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    report = check_models(models)
    assert str(report.problems[0]).startswith(f"{models / 'amber_tree.toml'}: line 1")


# --- bounds of hostile files (issue 18) ----------------------------------------------------------


def test_deeply_nested_toml_is_a_problem_not_a_recursion_error(workspace: Path) -> None:
    _write(workspace / "models", "amber_tree",
           'name = "amber_tree"\nfeatures = ' + "[" * 5000 + "]" * 5000 + "\n")
    assert "arrays or inline tables nested too deeply" in _one(workspace)


@needs_registry
def test_features_are_bounded_by_the_partitions_only_when_given(workspace: Path) -> None:
    from ewspipe.settings import PartitionSettings

    _write(workspace / "models", "amber_tree",
           _model(algorithm="stepshifter", hyperparameters=None,
                  features=["lag(ged_sb, 330)", "mmean(ged_sb, 24)"]))
    assert check_models(workspace / "models").ok  # no settings: only the absolute bounds
    report = check_models(workspace / "models", partitions=PartitionSettings().scheme())
    assert [p.key for p in report.problems] == ["features[0]"]
    assert "at most 322 months back" in report.problems[0].message
    with pytest.raises(SpecError, match="lag\\(ged_sb, 330\\)"):
        load_catalog(workspace / "models", partitions=PartitionSettings().scheme())
