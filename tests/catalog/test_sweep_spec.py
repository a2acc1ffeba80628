"""The [sweep] table of a model file: validation (errors name file and key), identity (the
config hash ignores it) and writing a sweep's winner back with formatting kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ewspipe.catalog.loader import check_model_text, feature_parser
from ewspipe.catalog.rewrite import write_result
from ewspipe.catalog.sweep import (
    OBJECTIVES,
    SAMPLE_METRICS,
    SweepSpec,
    apply_values,
    flatten_space,
    untuned,
)
from ewspipe.errors import SpecError
from ewspipe.evaluation.metrics import get_metric, names

BASE = """\
name = "amber_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "A LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
seed = 7

[hyperparameters.learner_params]
n_estimators = 100
num_leaves = 15
"""

SWEEP = """
[sweep]
trials = 12
seed = 5

[sweep.space]
learner_params.num_leaves = { int = [7, 63], log = true }
"learner_params.learning_rate" = { float = [0.01, 0.2], log = true }
learner_params.n_estimators = { int = [50, 200], step = 50 }
"""


def _check(text: str, name: str = "amber_tree"):
    check_feature, _ = feature_parser()
    return check_model_text(Path(f"models/{name}.toml"), text, check_feature=check_feature)


def _problems(text: str) -> list[str]:
    return [str(p) for p in _check(text).problems]


def test_sweep_table_parses_into_a_frozen_spec():
    report = _check(BASE + SWEEP)
    assert report.ok, report.problems
    sweep = report.spec.sweep
    assert isinstance(sweep, SweepSpec)
    assert list(sweep.space) == ["learner_params.learning_rate", "learner_params.n_estimators",
                                 "learner_params.num_leaves"]  # sorted
    leaves = sweep.space["learner_params.num_leaves"]
    assert leaves.kind == "int" and leaves.bounds == (7, 63) and leaves.log
    assert sweep.space["learner_params.learning_rate"].kind == "float"
    assert sweep.space["learner_params.n_estimators"].step == 50
    assert (sweep.trials, sweep.seed, sweep.scheme, sweep.sampler, sweep.batch_size) == \
        (12, 5, "pooled", "tpe", 4)
    assert sweep.objective(1) == ("msle", "minimize")
    assert sweep.objective(100) == ("crps", "minimize")
    with pytest.raises(TypeError):
        sweep.space["x"] = leaves  # type: ignore[index]
    dumped = report.spec.model_dump(mode="json")["sweep"]["space"]
    assert dumped["learner_params.num_leaves"] == {"int": [7, 63], "log": True}


def test_sweep_does_not_change_the_config_hash():
    without = _check(BASE).spec
    with_sweep = _check(BASE + SWEEP).spec
    assert with_sweep.config_hash == without.config_hash
    assert "sweep" not in with_sweep.semantic_dict()


def test_flatten_space_accepts_both_forms_and_refuses_overlaps():
    flat = flatten_space({"a": {"b": {"int": [1, 2]}}, "c.d": {"choices": [1]}})
    assert set(flat) == {"a.b", "c.d"}
    with pytest.raises(ValueError, match="given twice"):
        flatten_space({"a": {"b": {"int": [1, 2]}}, "a.b": {"int": [1, 2]}})
    with pytest.raises(ValueError, match="lies inside"):
        flatten_space({"a": {"int": [1, 2]}, "a.b": {"int": [1, 2]}})
    with pytest.raises(ValueError, match="not a dimension"):
        flatten_space({"a": 3})


@pytest.mark.parametrize(("table", "key", "fragment"), [
    ("[sweep]\ntrails = 3\n[sweep.space]\nseed = { int = [0, 9] }\n", "sweep.trails",
     "Did you mean 'trials'?"),
    ("[sweep]\n[sweep.space]\nseed = { ints = [0, 9] }\n", "sweep.space.seed.ints",
     "Did you mean 'int'?"),
    ("[sweep]\n[sweep.space]\nseed = { int = [9, 0] }\n", "sweep.space.seed", "low < high"),
    ("[sweep]\n[sweep.space]\nlearner_params.learning_rate = { float = [0, 1], log = true }\n",
     "sweep.space.learner_params.learning_rate", "low > 0"),
    ("[sweep]\n[sweep.space]\nseed = { int = [0, 9], step = 2 }\n", "sweep.space.seed",
     "multiple of step"),
    ("[sweep]\n[sweep.space]\nlearner = { choices = [] }\n", "sweep.space.learner",
     "must not be empty"),
    ("[sweep]\n[sweep.space]\nlearner = { choices = [\"ridge\"], int = [1, 2] }\n",
     "sweep.space.learner", "exactly one of"),
    ("[sweep]\n[sweep.space]\n", "sweep.space", "empty"),
    ("[sweep]\nseed = 1\n", "sweep.space", "required key is missing"),
    ("[sweep]\nmetric = \"msl\"\n[sweep.space]\nseed = { int = [0, 9] }\n", "sweep.metric",
     "Did you mean 'msle'?"),
    ("[sweep]\nscheme = \"steps\"\n[sweep.space]\nseed = { int = [0, 9] }\n", "sweep.scheme",
     "'pooled'"),
    ("[sweep]\ntrials = 0\n[sweep.space]\nseed = { int = [0, 9] }\n", "sweep.trials",
     "greater than or equal to 1"),
    ("[sweep]\nmetric = \"crps\"\n[sweep.space]\nseed = { int = [0, 9] }\n", "sweep.metric",
     "n_samples > 1"),
    ("[sweep]\n[sweep.space]\nn_estimators = { int = [50, 200] }\n", "sweep.space.n_estimators",
     "unknown hyperparameter 'n_estimators'"),
    ("[sweep]\n[sweep.space]\nlearner_params.num_leavez = { int = [7, 63] }\n",
     "sweep.space.learner_params.num_leavez", "Did you mean 'num_leaves'?"),
    ("[sweep]\n[sweep.space]\nlearner_params.num_leaves = { int = [0, 63] }\n",
     "sweep.space.learner_params.num_leaves", "value 0 of the search space is rejected"),
])
def test_bad_sweep_tables_name_file_and_key(table, key, fragment):
    problems = _problems(BASE + "\n" + table)
    assert problems, "expected a problem"
    assert any(p.startswith(f"models/amber_tree.toml: key '{key}':") and fragment in p
               for p in problems), problems


def test_sample_metric_is_allowed_for_sample_models():
    text = BASE.replace("seed = 7\n", "seed = 7\nn_samples = 20\n") + (
        "\n[sweep]\nmetric = \"crps\"\n[sweep.space]\nseed = { int = [0, 9] }\n")
    assert _check(text).ok


def test_objectives_are_registered_metrics_with_the_right_input():
    assert set(OBJECTIVES) <= set(names())
    assert {m for m in OBJECTIVES if get_metric(m).input == "samples"} == SAMPLE_METRICS


def test_apply_values_and_untuned():
    hyper = {"learner": "lightgbm", "learner_params": {"num_leaves": 15, "max_bin": 63}}
    applied = apply_values(hyper, {"learner_params.num_leaves": 31, "seed": 4,
                                   "classifier_params.x": 1})
    assert applied == {"learner": "lightgbm", "seed": 4, "classifier_params": {"x": 1},
                       "learner_params": {"num_leaves": 31, "max_bin": 63}}
    assert hyper["learner_params"]["num_leaves"] == 15  # not modified
    assert untuned(hyper, ["learner_params.num_leaves", "seed"]) == {
        "learner": "lightgbm", "learner_params": {"max_bin": 63}}


COMMENTED = """\
# amber_tree: the deployed cm model.
name = "amber_tree"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
status = "shadow"
owner = "tests"
description = "A LightGBM stepshifter."
features = [
    "ged_sb",
    "lag(ged_sb, 1)",  # last month
]

[hyperparameters]
learner   = "lightgbm"   # aligned on purpose
seed = 7

[hyperparameters.learner_params]
# trees: keep below 300 for the monthly run
n_estimators = 100  # hand-tuned in 2024
num_leaves = 15

[sweep]
trials = 12  # budget
seed = 5

[sweep.space]
learner_params.num_leaves = { int = [7, 63], log = true }
learner_params.min_child_samples = { int = [5, 100], log = true }
"""


def test_write_result_keeps_comments_and_records_the_sweep(tmp_path):
    path = tmp_path / "amber_tree.toml"
    path.write_text(COMMENTED)
    before = _check(COMMENTED).spec
    new_hash = write_result(
        path, values={"learner_params.num_leaves": 23, "learner_params.min_child_samples": 40},
        result={"study": "amber_tree-abc", "run_id": "r1", "trial": 17, "score": 0.35,
                "validation_score": None},
        expected_config_hash=before.config_hash)
    text = path.read_text()
    old_lines, new_lines = COMMENTED.splitlines(), text.splitlines()
    changed = [line for line in old_lines if line not in new_lines]
    assert changed == ["num_leaves = 15"]
    assert "num_leaves = 23" in new_lines
    for kept in ("# amber_tree: the deployed cm model.", '    "lag(ged_sb, 1)",  # last month',
                 'learner   = "lightgbm"   # aligned on purpose',
                 "# trees: keep below 300 for the monthly run",
                 "n_estimators = 100  # hand-tuned in 2024", "trials = 12  # budget"):
        assert kept in new_lines
    data = tomllib.loads(text)
    assert data["hyperparameters"]["learner_params"] == {
        "n_estimators": 100, "num_leaves": 23, "min_child_samples": 40}
    assert data["sweep"]["result"] == {
        "study": "amber_tree-abc", "run_id": "r1", "trial": 17, "score": 0.35,
        "previous": {"learner_params.num_leaves": 15,
                     "learner_params.min_child_samples": "default"}}
    after = _check(text).spec
    assert after is not None and after.config_hash == new_hash != before.config_hash
    assert not list(tmp_path.glob(".*tmp"))

    # applied again: the [sweep.result] table is replaced, not duplicated
    write_result(path, values={"learner_params.num_leaves": 31}, result={"trial": 3})
    again = tomllib.loads(path.read_text())
    assert again["sweep"]["result"] == {"trial": 3, "previous": {
        "learner_params.num_leaves": 23}}
    assert path.read_text().count("[sweep.result]") == 1


def test_write_result_creates_missing_tables(tmp_path):
    text = BASE.split("[hyperparameters]")[0] + SWEEP
    path = tmp_path / "amber_tree.toml"
    path.write_text(text)
    write_result(path, values={"learner_params.num_leaves": 9}, result={"trial": 0})
    data = tomllib.loads(path.read_text())
    assert data["hyperparameters"] == {"learner_params": {"num_leaves": 9}}
    assert _check(path.read_text()).ok


def test_write_result_refuses_a_file_changed_during_the_sweep(tmp_path):
    path = tmp_path / "amber_tree.toml"
    path.write_text(COMMENTED)
    with pytest.raises(SpecError, match="changed while the sweep ran"):
        write_result(path, values={"learner_params.num_leaves": 23}, result={},
                     expected_config_hash="0" * 64)
    assert path.read_text() == COMMENTED


def test_write_result_refuses_values_the_model_rejects(tmp_path):
    path = tmp_path / "amber_tree.toml"
    path.write_text(COMMENTED)
    with pytest.raises(SpecError, match="nothing was written"):
        write_result(path, values={"learner_params.num_leaves": 0}, result={})
    assert path.read_text() == COMMENTED
