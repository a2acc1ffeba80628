"""ModelSpec (frozen, typed, config hash) and the naming and status rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ewspipe.catalog.rules import (
    Status,
    check_ensemble_member,
    check_name,
    check_target,
    require_runnable,
)
from ewspipe.catalog.spec import SEMANTIC_KEYS, ModelSpec, canonical_json
from ewspipe.errors import SpecError
from ewspipe.panel.schema import Level


def _raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "amber_tree",
        "level": "cm",
        "target": "ged_sb",
        "algorithm": "stepshifter",
        "features": ["lag(ged_sb, 1)", "msum(ged_sb, 12)"],
        "status": "shadow",
        "owner": "ann@example.org",
        "description": "Per-step learner on conflict history.",
        "hyperparameters": {"n_estimators": 300, "learner_params": {"max_depth": 6}},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def _spec(**overrides: Any) -> ModelSpec:
    return ModelSpec.model_validate(_raw(**overrides))


def test_valid_spec_is_typed() -> None:
    spec = _spec()
    assert spec.level is Level.CM
    assert spec.status is Status.SHADOW
    assert spec.features == ("lag(ged_sb, 1)", "msum(ged_sb, 12)")
    assert spec.hyperparameters["learner_params"]["max_depth"] == 6


def test_hyperparameters_default_to_empty() -> None:
    spec = _spec(hyperparameters=None, features=[])
    assert dict(spec.hyperparameters) == {}
    assert spec.features == ()


def test_spec_is_frozen_all_the_way_down() -> None:
    spec = _spec()
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other_name"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.hyperparameters["n_estimators"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.hyperparameters["learner_params"]["max_depth"] = 1  # type: ignore[index]


def test_hyperparameters_dict_is_a_mutable_copy() -> None:
    spec = _spec(hyperparameters={"a": {"b": [1, 2]}})
    copy = spec.hyperparameters_dict()
    assert copy == {"a": {"b": [1, 2]}}
    copy["a"]["b"].append(3)
    assert spec.hyperparameters_dict() == {"a": {"b": [1, 2]}}


def test_json_dump_round_trips() -> None:
    spec = _spec()
    dumped = spec.model_dump(mode="json")
    assert dumped["hyperparameters"] == {"n_estimators": 300, "learner_params": {"max_depth": 6}}
    assert dumped["level"] == "cm" and dumped["status"] == "shadow"
    assert ModelSpec.model_validate(dumped) == spec


def test_extra_keys_are_forbidden() -> None:
    with pytest.raises(ValidationError) as exc:
        ModelSpec.model_validate({**_raw(), "n_estimators": 3})
    assert exc.value.errors()[0]["type"] == "extra_forbidden"
    assert exc.value.errors()[0]["loc"] == ("n_estimators",)


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", "AmberTree"), ("level", "cmm"), ("status", "live"), ("target", "ln_ged_sb"),
     ("owner", "  "), ("description", ""), ("features", "lag(ged_sb, 1)"), ("owner", 3),
     ("hyperparameters", 3)],
)
def test_bad_values_fail_on_their_key(key: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        _spec(**{key: value})
    assert exc.value.errors()[0]["loc"][0] == key


def test_config_hash_ignores_metadata() -> None:
    base = _spec()
    assert tuple(base.semantic_dict()) == SEMANTIC_KEYS
    assert len(base.config_hash) == 64
    same = _spec(owner="bob@example.org", description="Reworded.", status="deployed")
    assert same.config_hash == base.config_hash


@pytest.mark.parametrize(
    "change",
    [{"features": ["lag(ged_sb, 1)"]}, {"features": ["msum(ged_sb, 12)", "lag(ged_sb, 1)"]},
     {"hyperparameters": {"n_estimators": 301, "learner_params": {"max_depth": 6}}},
     {"hyperparameters": {"n_estimators": 300, "learner_params": {"max_depth": 7}}},
     {"target": "ged_ns"}, {"level": "pgm"}, {"algorithm": "hurdle"}, {"name": "amber_leaf"}],
)
def test_config_hash_follows_semantics(change: dict[str, Any]) -> None:
    assert _spec(**change).config_hash != _spec().config_hash


def test_config_hash_ignores_table_key_order() -> None:
    a = _spec(hyperparameters={"x": 1, "y": {"p": 1, "q": 2}})
    b = _spec(hyperparameters={"y": {"q": 2, "p": 1}, "x": 1})
    assert a.config_hash == b.config_hash


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == '{"a":[1,{"c":3,"d":2}],"b":1}'


@pytest.mark.parametrize("name", ["amber_tree", "a_b", "purple_alien"])
def test_good_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("AmberTree", "amber_tree"), ("amber-tree", "amber_tree"), ("amber_tree_2", "amber_tree"),
     ("ambertree", None), ("amber__tree", "amber_tree"), ("amber_tree_x", None)],
)
def test_bad_names_say_how_to_fix(name: str, suggestion: str | None) -> None:
    with pytest.raises(SpecError, match="adjective_noun") as exc:
        check_name(name)
    assert repr(name) in str(exc.value)
    if suggestion:
        assert f"try {suggestion!r}" in str(exc.value)
    else:
        assert "try" not in str(exc.value)


def test_target_must_be_a_count_column() -> None:
    check_target("ged_sb")
    with pytest.raises(SpecError, match=r"'ln_ged_sb' is not a count column.*ged_sb"):
        check_target("ln_ged_sb")


def test_deprecated_model_refuses_to_run() -> None:
    require_runnable(_spec(status="baseline"))
    with pytest.raises(SpecError) as exc:
        require_runnable(_spec(status="deprecated"))
    msg = str(exc.value)
    assert "model 'amber_tree' is deprecated and refuses to run" in msg
    assert "models/amber_tree.toml" in msg and 'status = "shadow"' in msg
    with pytest.raises(SpecError, match=r"elsewhere/amber_tree\.toml"):
        require_runnable(_spec(status="deprecated"), path=Path("elsewhere/amber_tree.toml"))


@pytest.mark.parametrize(
    ("ensemble", "member", "ok"),
    [("deployed", "deployed", True), ("deployed", "shadow", False),
     ("shadow", "shadow", True), ("shadow", "deployed", True), ("shadow", "baseline", False),
     ("baseline", "deprecated", False), ("deployed", "baseline", False)],
)
def test_ensemble_member_status(ensemble: str, member: str, ok: bool) -> None:
    spec = _spec(status=member)
    if ok:
        check_ensemble_member("bright_choir", Status(ensemble), spec)
    else:
        with pytest.raises(SpecError, match=f"cannot contain model 'amber_tree'.*{member}"):
            check_ensemble_member("bright_choir", Status(ensemble), spec)
