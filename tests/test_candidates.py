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
