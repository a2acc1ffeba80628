"""The TOML rewriter: write a sweep's winner back into its model file, and stacked weights
into an ensemble file, keeping every comment.

Apart from :mod:`ewspipe.catalog.sweep` (the ``[sweep]`` table's spec) because rewriting a file
needs the whole loader to validate the result, while the loader needs the sweep spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from ewspipe.atomic import write_text
from ewspipe.catalog.ensembles import check_ensemble_text
from ewspipe.catalog.files import display_path, thaw
from ewspipe.catalog.loader import check_model_text, feature_parser
from ewspipe.catalog.sweep import apply_values, get_dotted
from ewspipe.ensembles.stacking import Stacking
from ewspipe.errors import SpecError

__all__ = ["write_result", "write_stacking"]


def _table_for(container: Any, parts: list[str]) -> Any:
    """The (possibly new) tomlkit table at ``parts`` below ``container``."""
    for part in parts:
        if part not in container:
            container[part] = tomlkit.table()
        container = container[part]
        if not isinstance(container, Mapping):
            raise SpecError(f"cannot write below {'.'.join(parts)!r}: it is not a table")
    return container


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        table.update({str(k): _toml_ready(v) for k, v in value.items()})
        return table
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return value.item()
    return value


def write_result(
    path: Path,
    *,
    values: Mapping[str, Any],
    result: Mapping[str, Any],
    expected_config_hash: str | None = None,
) -> str:
    """Write the winning ``values`` into the model file's ``[hyperparameters]`` and the
    sweep's ``result`` into ``[sweep.result]``, keeping every other line, comment and format.

    Args:
        path: the model file.
        values: dotted hyperparameter name -> value.
        result: what to record (run id, study, trial, scores ...); ``previous`` (the values
            as written before, for review) is added here.
        expected_config_hash: refuse (SpecError) when the file on disk no longer has this
            config hash, i.e. it changed while the sweep ran.

    Returns:
        The new file's config hash. The new text is validated like every model file before it
        atomically replaces the old one (temp file + rename); nothing is written on error.
    """
    shown = display_path(path)
    text = path.read_text(encoding="utf-8")
    check_feature, _ = feature_parser()
    before = check_model_text(path, text, check_feature=check_feature)
    if before.spec is None:
        raise SpecError(f"{shown} is invalid, so the sweep result is not written: "
                        + "; ".join(str(p) for p in before.problems))
    if expected_config_hash is not None and before.spec.config_hash != expected_config_hash:
        raise SpecError(
            f"{shown} changed while the sweep ran (config hash {before.spec.config_hash[:12]}, "
            f"swept {expected_config_hash[:12]}); nothing was written. Re-run the sweep on "
            "the current file")
    doc = tomlkit.parse(text)
    hyper = before.spec.hyperparameters
    previous = {}
    for dotted, value in values.items():
        found, old = get_dotted(hyper, dotted)
        previous[dotted] = thaw(old) if found else "default"
        *parents, last = dotted.split(".")
        table = _table_for(doc, ["hyperparameters", *parents])
        table[last] = _toml_ready(value)
    sweep = _table_for(doc, ["sweep"])
    record = tomlkit.table()
    for key, value in {**result, "previous": previous}.items():
        if value is not None:
            record.add(key, _toml_ready(value))
    if "result" in sweep:
        del sweep["result"]
    sweep.add("result", record)
    new_text = tomlkit.dumps(doc)

    after = check_model_text(path, new_text, check_feature=check_feature)
    expected = apply_values(hyper, values)
    if after.spec is None or after.spec.hyperparameters_dict() != expected:
        got = after.spec.hyperparameters_dict() if after.spec is not None else None
        problems = "; ".join(str(p) for p in after.problems) or (
            f"hyperparameters would read {got}, expected {expected}")
        raise SpecError(f"writing the sweep result into {shown} would not give the expected "
                        f"model ({problems}); nothing was written")
    _replace(path, new_text)
    return after.spec.config_hash


def _replace(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (temp file in the same folder + rename)."""
    write_text(path, text, mode=path.stat().st_mode & 0o777)


def write_stacking(
    path: Path, stacking: Stacking, *, fitted: str, expected_config_hash: str | None = None
) -> str:
    """Write stacked weights into an ensemble file: ``aggregation = stacking.combine`` (the
    combination the weights were learned for), ``[weights]`` and the ``[stacking]`` record
    (shrinkage, windows, date, fitted weights, pooled MSLE stacked and equal), keeping every
    other line and comment.

    Args:
        path: the ensemble file.
        stacking: the result of :func:`ewspipe.ensembles.stacking.stack` for its members.
        fitted: the date to record.
        expected_config_hash: refuse (SpecError) when the file on disk no longer has it.

    Returns:
        The new config hash. The new text is checked like every ensemble file (on its own)
        before it atomically replaces the old one; nothing is written on error.
    """
    shown = display_path(path)
    text = path.read_text(encoding="utf-8")
    before, _ = check_ensemble_text(path, text)
    if before.spec is None:
        raise SpecError(f"{shown} is invalid, so the stacked weights are not written: "
                        + "; ".join(str(p) for p in before.problems))
    if expected_config_hash is not None and before.spec.config_hash != expected_config_hash:
        raise SpecError(f"{shown} changed while the weights were learned; nothing was written. "
                        "Run the stacking again on the current file")
    if sorted(stacking.members) != sorted(before.spec.members):
        raise SpecError(f"the weights are for members {list(stacking.members)} but {shown} "
                        f"lists {list(before.spec.members)}; nothing was written")
    zero = [m for m, w in stacking.weights.items() if w <= 0]
    if zero:
        raise SpecError(
            f"member(s) {', '.join(map(repr, zero))} would get weight 0 (shrinkage "
            f"{stacking.shrinkage:g}), which an ensemble file does not take; nothing was "
            f"written. Remove them from members in {shown}, or stack with a shrinkage > 0")
    doc = tomlkit.parse(text)
    doc["aggregation"] = stacking.combine
    weights = tomlkit.table()
    for member in before.spec.members:  # the file's order
        weights.add(member, float(stacking.weights[member]))
    if "weights" in doc:
        del doc["weights"]
    doc.add("weights", weights)
    record = _table_for(doc, ["stacking"])
    values = {
        "shrinkage": stacking.shrinkage, "combine": stacking.combine,
        "windows": list(stacking.windows), "fitted": fitted,
        "fitted_weights": {m: float(stacking.fitted[m]) for m in before.spec.members},
        "stacked_msle": round(stacking.pooled_stacked, 6),
        "equal_msle": round(stacking.pooled_equal, 6),
    }
    for key, value in values.items():
        record[key] = _toml_ready(value)
    new_text = tomlkit.dumps(doc)
    after, _ = check_ensemble_text(path, new_text)
    if after.spec is None or after.spec.weights is None or any(
            abs(after.spec.weight_of(m) - stacking.weights[m]) > 1e-6 for m in stacking.members):
        problems = "; ".join(str(p) for p in after.problems) or "the weights would differ"
        raise SpecError(f"writing the stacked weights into {shown} would not give the expected "
                        f"ensemble ({problems}); nothing was written")
    _replace(path, new_text)
    return after.spec.config_hash
