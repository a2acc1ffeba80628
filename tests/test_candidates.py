"""The issue-20 candidate models kept in benchmarks/candidates/ stay valid model files, each a
shadow variant whose name the shipped catalog does not use (the ``candidates`` benchmark scores
them beside the shipped models)."""

from __future__ import annotations

from pathlib import Path

from ewspipe.catalog.loader import load_catalog

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = REPO / "benchmarks" / "candidates"


def test_candidates_are_valid_shadow_models_with_their_own_names(tmp_path: Path) -> None:
    files = sorted(CANDIDATES.glob("*.toml"))
    assert files, "benchmarks/candidates/ holds no model file"
    candidates = load_catalog(CANDIDATES, ensembles_dir=tmp_path)
    shipped = load_catalog(REPO / "models", ensembles_dir=REPO / "ensembles")
    assert candidates.names() == sorted(p.stem for p in files)
    assert not set(candidates.names()) & set(shipped.names())
    for name in candidates.names():
        spec = candidates.get(name)
        assert spec.status.value == "shadow", name
        assert spec.level.value == "cm", name


def test_candidate_ensembles_are_shadow_and_their_members_exist(tmp_path: Path) -> None:
    """Each candidate sample ensemble loads with the shipped catalog plus the candidate
    models (what the benchmark's temporary workspace holds) and takes no shipped name."""
    import shutil

    ensembles = sorted((CANDIDATES / "ensembles").glob("*.toml"))
    assert ensembles, "benchmarks/candidates/ensembles/ holds no ensemble file"
    models, ens = tmp_path / "models", tmp_path / "ensembles"
    shutil.copytree(REPO / "models", models)
    shutil.copytree(REPO / "ensembles", ens)
    for path in CANDIDATES.glob("*.toml"):
        shutil.copy(path, models / path.name)
    for path in ensembles:
        assert not (ens / path.name).exists(), f"{path.stem} takes a shipped ensemble's name"
        shutil.copy(path, ens / path.name)
    catalog = load_catalog(models, ensembles_dir=ens)
    for path in ensembles:
        spec = catalog.get_ensemble(path.stem)
        assert spec.status.value == "shadow", path.stem
        assert spec.level.value == "cm", path.stem
