"""A catalog as a plain record: what a release manifest stores and a production run compares.

One entry per model and ensemble: kind, level, target, status and config hash. Two catalogs
describe the same models exactly when their records are equal.
"""

from __future__ import annotations

from typing import Any

from ewspipe.catalog.loader import Catalog

__all__ = ["catalog_differences", "describe_catalog"]


def describe_catalog(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """``name -> {kind, level, target, status, config_hash}`` for every model and ensemble."""
    found: dict[str, dict[str, Any]] = {}
    for spec in catalog.models.values():
        found[spec.name] = {"kind": "model", "level": spec.level.value, "target": spec.target,
                            "status": spec.status.value, "config_hash": spec.config_hash}
    for ens in catalog.ensembles.values():
        found[ens.name] = {"kind": "ensemble", "level": ens.level.value, "target": ens.target,
                           "status": ens.status.value, "config_hash": ens.config_hash}
    return dict(sorted(found.items()))


def catalog_differences(expected: dict[str, dict[str, Any]],
                        actual: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences between two records (empty: the same models)."""
    out = [f"{actual[n]['kind']} {n} is not in the release" for n in sorted(actual.keys()
                                                                              - expected.keys())]
    out += [f"{expected[n]['kind']} {n} of the release is missing" for n in
            sorted(expected.keys() - actual.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        a, b = expected[name], actual[name]
        changed = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
        if changed:
            out.append(f"{a.get('kind', 'model')} {name} differs from the release in "
                       + ", ".join(f"{k} ({a.get(k)} -> {b.get(k)})" if k != "config_hash"
                                   else "its definition (config hash)" for k in changed))
    return out
