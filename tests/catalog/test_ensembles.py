"""Ensemble definitions: the spec, and every validation error naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit

from ewspipe.catalog import check_models, load_catalog
from ewspipe.catalog.ensembles import EnsembleSpec
from ewspipe.errors import SpecError
from ewspipe.panel.schema import Level


def _model(name: str, *, level: str = "cm", status: str = "deployed",
           target: str = "ged_sb") -> dict[str, Any]:
    return {"name": name, "level": level, "target": target, "algorithm": "log_average",
            "features": [], "status": status, "owner": "ann", "description": "a model"}


MODELS = [
    _model("amber_tree"), _model("amber_ridge"), _model("twin_gate", status="shadow"),
    _model("log_mean", status="baseline"), _model("old_guess", status="deprecated"),
    _model("copper_mesh", level="pgm"), _model("grid_guess", level="pgm", status="shadow"),
    _model("other_target", target="ged_ns"),
]

BASE = {"name": "steady_chorus", "level": "cm", "target": "ged_sb",
        "members": ["amber_tree", "amber_ridge"], "aggregation": "mean", "status": "deployed",
        "owner": "ann", "description": "mean of the deployed cm models"}
GRID = {"name": "copper_chorus", "level": "pgm", "target": "ged_sb",
        "members": ["copper_mesh"], "aggregation": "mean", "reconcile_with": "steady_chorus",
        "status": "deployed", "owner": "ann", "description": "reconciled grid"}


def _write(directory: Path, stem: str, content: str | dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.toml"
    path.write_text(content if isinstance(content, str) else tomlkit.dumps(content))
    return path


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for spec in MODELS:
        _write(tmp_path / "models", spec["name"], spec)
    (tmp_path / "ensembles").mkdir()
    return tmp_path


def _problems(ws: Path, *, models_ok: bool = True) -> list[str]:
    report = check_models(ws / "models", ensembles_dir=ws / "ensembles")
    assert not report.ok
    assert all(f.ok for f in report.files) or not models_ok, "model files stay valid"
    return [str(p) for p in report.problems]


def test_valid_ensembles_load_into_the_catalog(ws: Path) -> None:
    _write(ws / "ensembles", "steady_chorus", BASE)
    _write(ws / "ensembles", "copper_chorus", GRID)
    _write(ws / "ensembles", "cloudy_chorus", {
        **BASE, "name": "cloudy_chorus", "status": "shadow", "samples": "pool", "seed": 3,
        "members": ["amber_tree", "twin_gate"], "weights": {"amber_tree": 3, "twin_gate": 1}})
    catalog = load_catalog(ws / "models", ensembles_dir=ws / "ensembles")
    assert list(catalog.ensembles) == ["cloudy_chorus", "copper_chorus", "steady_chorus"]
    cloudy = catalog.get_ensemble("cloudy_chorus")
    assert cloudy.weight_of("amber_tree") == 0.75 and cloudy.samples == "pool"
    assert catalog.get_ensemble("copper_chorus").level is Level.PGM
    assert catalog.ensemble_files["steady_chorus"] == ws / "ensembles" / "steady_chorus.toml"
    with pytest.raises(SpecError, match="'amber_tree' is a model, not an ensemble"):
        catalog.get_ensemble("amber_tree")
    with pytest.raises(SpecError, match="Did you mean 'steady_chorus'"):
        catalog.get_ensemble("steady_chorsu")


def test_config_hash_ignores_metadata() -> None:
    a = EnsembleSpec.model_validate(BASE)
    b = EnsembleSpec.model_validate({**BASE, "status": "shadow", "owner": "bob"})
    c = EnsembleSpec.model_validate({**BASE, "aggregation": "median"})
    assert a.config_hash == b.config_hash != c.config_hash
    with pytest.raises(ValueError, match="key 'weights'"):
        EnsembleSpec.model_validate({**BASE, "weights": {"amber_tree": 1}})
    logmean = EnsembleSpec.model_validate({**BASE, "aggregation": "logmean",
                                           "weights": {"amber_tree": 3, "amber_ridge": 1}})
    assert logmean.weight_of("amber_tree") == 0.75 and logmean.config_hash != a.config_hash


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing key", {"aggregation": None}, "aggregation", "required key is missing"),
    ("unknown key", {"member": ["amber_tree"]}, "member", "Did you mean 'members'?"),
    ("members not an array", {"members": "amber_tree"}, "members", "expected an array"),
    ("no members", {"members": []}, "members", "at least one member"),
    ("member twice", {"members": ["amber_tree", "amber_tree"]}, "members[1]",
     "listed twice"),
    ("member name rule", {"members": ["amber_tree", "AmberRidge"]}, "members[1]",
     "not an adjective_noun name"),
    ("unknown member", {"members": ["amber_tree", "amber_tre"]}, "members[1]",
     "no model named 'amber_tre'"),
    ("member of another level", {"members": ["amber_tree", "copper_mesh"]}, "members[1]",
     "'copper_mesh' is a pgm model but this ensemble is cm"),
    ("member of another target", {"members": ["amber_tree", "other_target"]}, "members[1]",
     "'other_target' forecasts ged_ns but this ensemble's target is ged_sb"),
    ("deployed with a shadow member", {"members": ["amber_tree", "twin_gate"]}, "members[1]",
     "members of a deployed ensemble must be deployed"),
    ("deprecated member", {"status": "shadow", "members": ["amber_tree", "old_guess"]},
     "members[1]", "whose status is 'deprecated'"),
    ("baseline member", {"status": "shadow", "members": ["amber_tree", "log_mean"]},
     "members[1]", "whose status is 'baseline'"),
    ("unknown aggregation", {"aggregation": "meen"}, "aggregation",
     "unknown aggregation 'meen'; valid: logmean, mean, median. Did you mean 'mean'?"),
    ("weights with median", {"aggregation": "median",
                             "weights": {"amber_tree": 1, "amber_ridge": 1}},
     "weights", "aggregation 'median' takes no weights"),
    ("weight for a non-member", {"weights": {"amber_tree": 1, "amber_ridge": 1,
                                             "amber_ridg": 2}},
     "weights.amber_ridg", "is not a member"),
    ("weight missing", {"weights": {"amber_tree": 1}}, "weights",
     "no weight for member(s) 'amber_ridge'"),
    ("weight not positive", {"weights": {"amber_tree": 0, "amber_ridge": 1}},
     "weights.amber_tree", "a weight must be a finite number > 0"),
    ("bad samples option", {"samples": "pooled"}, "samples", "expected one of 'none' or 'pool'"),
    ("bad status", {"status": "live"}, "status", "expected one of"),
    ("reconcile on a cm ensemble", {"reconcile_with": "other_chorus"}, "reconcile_with",
     "only a pgm ensemble is reconciled"),
    ("shrinkage out of range", {"stacking": {"shrinkage": 1.5}}, "stacking.shrinkage",
     "shrinkage must be a number in [0, 1]"),
    ("unknown key in [stacking]", {"stacking": {"shrinkag": 0.5}}, "stacking.shrinkag",
     "unknown key in [stacking]; allowed: shrinkage, combine, windows"),
    ("fitted weights of other members", {"stacking": {"fitted_weights": {"amber_tree": 1.0}}},
     "stacking.fitted_weights", "re-run `ewspipe models stack steady_chorus --apply`"),
    ("name mismatch", {"name": "steady_choir"}, "name",
     "'steady_choir' does not match the file name steady_chorus.toml"),
    ("name taken by a model", {"name": "amber_tree"}, "name",
     "'amber_tree' is also the name of models/amber_tree.toml"),
]


@pytest.mark.parametrize(("change", "key", "needle"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_names_file_and_key(ws: Path, change: dict[str, Any], key: str,
                                         needle: str) -> None:
    content = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    stem = "amber_tree" if change.get("name") == "amber_tree" else "steady_chorus"
    _write(ws / "ensembles", stem, content)
    problems = [p for p in _problems(ws, models_ok=stem != "amber_tree")
                if p.startswith(f"ensembles/{stem}.toml: ")]
    wanted = f"ensembles/{stem}.toml: key '{key}': "
    hits = [p for p in problems if p.startswith(wanted) and needle in p]
    assert hits, problems


GRID_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("unknown ensemble", {"reconcile_with": "steady_chorsu"}, None,
     "no ensemble named 'steady_chorsu'; cm ensembles: steady_chorus. Did you mean"),
    ("a model", {"reconcile_with": "amber_tree"}, None, "'amber_tree' is a model"),
    ("a pgm ensemble", {"reconcile_with": "grid_chorus"},
     {**GRID, "name": "grid_chorus", "reconcile_with": None, "status": "shadow"},
     "'grid_chorus' is a pgm ensemble; reconcile with a cm ensemble"),
    ("another target", {"reconcile_with": "other_chorus"},
     {**BASE, "name": "other_chorus", "target": "ged_ns", "members": ["other_target"]},
     "'other_chorus' forecasts ged_ns but this ensemble forecasts ged_sb"),
    ("deployed with a shadow cm ensemble", {"reconcile_with": "shady_chorus"},
     {**BASE, "name": "shady_chorus", "status": "shadow"},
     "a deployed ensemble is reconciled only with a deployed cm ensemble"),
    ("a deprecated cm ensemble", {"reconcile_with": "old_chorus", "status": "shadow"},
     {**BASE, "name": "old_chorus", "status": "deprecated"}, "is deprecated"),
    ("itself", {"reconcile_with": "copper_chorus"}, None, "cannot be reconciled with itself"),
]


@pytest.mark.parametrize(("change", "other", "needle"), [c[1:] for c in GRID_CASES],
                         ids=[c[0] for c in GRID_CASES])
def test_reconcile_with_problems_name_file_and_key(ws: Path, change: dict[str, Any],
                                                   other: dict[str, Any] | None,
                                                   needle: str) -> None:
    _write(ws / "ensembles", "steady_chorus", BASE)
    if other is not None:
        _write(ws / "ensembles", other["name"],
               {k: v for k, v in other.items() if v is not None})
    _write(ws / "ensembles", "copper_chorus", {**GRID, **change})
    problems = _problems(ws)
    wanted = "ensembles/copper_chorus.toml: key 'reconcile_with': "
    assert any(p.startswith(wanted) and needle in p for p in problems), problems


def test_invalid_toml_names_the_line(ws: Path) -> None:
    _write(ws / "ensembles", "steady_chorus", 'name = "steady_chorus"\nmembers = [\n')
    problems = _problems(ws)
    assert len(problems) == 1
    assert problems[0].startswith("ensembles/steady_chorus.toml: line ")
    assert "invalid TOML" in problems[0]


def test_member_with_an_invalid_model_file(ws: Path) -> None:
    _write(ws / "models", "amber_ridge", {**_model("amber_ridge"), "algorithm": "averag"})
    _write(ws / "ensembles", "steady_chorus", BASE)
    report = check_models(ws / "models", ensembles_dir=ws / "ensembles")
    problems = [str(p) for p in report.problems]
    assert any(p.startswith("ensembles/steady_chorus.toml: key 'members[1]': member "
                            "'amber_ridge' is defined in models/amber_ridge.toml, which has "
                            "problems") for p in problems), problems


def test_member_that_is_an_ensemble_and_duplicate_ensemble_names(ws: Path) -> None:
    _write(ws / "ensembles", "steady_chorus", BASE)
    _write(ws / "ensembles", "meta_chorus", {**BASE, "name": "meta_chorus",
                                             "members": ["steady_chorus"]})
    _write(ws / "ensembles", "twin_chorus", {**BASE, "name": "steady_chorus"})
    problems = _problems(ws)
    assert any(p.startswith("ensembles/meta_chorus.toml: key 'members[0]': 'steady_chorus' is "
                            "an ensemble; members are models") for p in problems), problems
    assert any(p.startswith("ensembles/steady_chorus.toml: key 'name': 'steady_chorus' is also "
                            "the name of ensembles/twin_chorus.toml") for p in problems), problems


def test_load_catalog_refuses_invalid_ensembles_listing_all(ws: Path) -> None:
    _write(ws / "ensembles", "steady_chorus", {**BASE, "members": ["amber_tree", "twin_gate"],
                                               "aggregation": "meen"})
    with pytest.raises(SpecError) as exc:
        load_catalog(ws / "models", ensembles_dir=ws / "ensembles")
    msg = str(exc.value)
    assert msg.startswith("2 problem(s) in 1 ensemble file(s) under ensembles:")
    assert "ensembles/steady_chorus.toml: key 'aggregation'" in msg
    assert "ensembles/steady_chorus.toml: key 'members[1]'" in msg


def test_deprecated_ensemble_skips_the_member_status_rule(ws: Path) -> None:
    _write(ws / "ensembles", "steady_chorus", {**BASE, "status": "deprecated",
                                               "members": ["amber_tree", "old_guess"]})
    assert check_models(ws / "models", ensembles_dir=ws / "ensembles").ok
