"""``ewspipe models new NAME``: write a valid, commented model file, atomically.

The file is rendered, checked with the same code as ``ewspipe models check`` and only then
written; an existing or reserved name is refused and nothing is written.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from ewspipe.atomic import write_text
from ewspipe.catalog.files import declared_names, display_path
from ewspipe.catalog.loader import check_model_text, default_models_dir, feature_parser
from ewspipe.catalog.rules import Status, check_name, check_target
from ewspipe.catalog.spec import toml_value
from ewspipe.errors import SpecError
from ewspipe.models import registry
from ewspipe.panel.schema import Level

__all__ = ["render_model", "scaffold_model"]

_DESCRIPTION = "TODO: what this model adds and why, in a sentence or two."


def _default_lines(algorithm: str) -> list[str]:
    defaults = registry.default_params(algorithm)
    if not defaults:
        return [f"# ({algorithm} has no hyperparameters)"]
    lines = []
    for key, value in sorted(defaults.items()):
        rendered = toml_value(value)
        if rendered is None:
            lines.append(f"# {key} = ...   (default: unset)")
        else:
            lines.append(f"# {key} = {rendered}")
    return lines


def _example_features(target: str, level: Level) -> list[str]:
    examples = [f"lag({target}, 1)", f"msum({target}, 12)", f"decay({target}, 12)"]
    if level is Level.PGM:
        examples.append(f"splag(lag({target}, 1))")
    return examples


def _feature_lines(algorithm: str, target: str, level: Level) -> list[str]:
    """A learner starts with the examples (it needs at least one feature); a baseline with
    them commented out (it reads only the target's history)."""
    examples = _example_features(target, level)
    try:
        learns = registry.get(algorithm).needs_features
    except ValueError:  # an unknown algorithm: the check names it
        learns = False
    if learns:
        return ["# Feature expressions, one string each (see docs/models.md for the language):",
                "features = [", *(f"    {toml_value(e)}," for e in examples), "]"]
    return ["# Feature expressions, one string each; empty for baselines that only read the",
            "# target's history. Examples to uncomment (see docs/models.md for the language):",
            "features = [", *(f"    # {toml_value(e)}," for e in examples), "]"]


def render_model(
    name: str,
    *,
    level: Level | str = Level.CM,
    algorithm: str = "stepshifter",
    owner: str,
    target: str = "ged_sb",
    status: Status | str = Status.SHADOW,
    description: str | None = None,
) -> str:
    """The commented TOML text of a new model (not checked; see :func:`scaffold_model`)."""
    lvl, sts = Level(level), Status(status)
    known = ", ".join(registry.names())
    s = toml_value
    return "\n".join([
        f"# Model {name}: one algorithm + one set of hyperparameters + one feature set",
        "# + one target + one level. Format reference: docs/models.md.",
        "# Validate with `ewspipe models check`; see all models with `ewspipe models list`.",
        "",
        "# adjective_noun, unique across models and ensembles; must equal the file name.",
        f"name = {s(name)}",
        '# Level of analysis: "cm" (country-month) or "pgm" (PRIO-GRID-month).',
        f"level = {s(lvl.value)}",
        "# The count column to forecast, in raw counts (ged_sb, ged_ns or ged_os).",
        f"target = {s(target)}",
        f"# A registered algorithm: {known}.",
        f"algorithm = {s(algorithm)}",
        "# deployed (published) | shadow (run, stored, compared, never published)",
        "# | baseline (reference yardstick) | deprecated (refuses to run).",
        f"status = {s(sts.value)}",
        f"owner = {s(owner)}",
        f"description = {s(description or _DESCRIPTION)}",
        "",
        *_feature_lines(algorithm, target, lvl),
        "",
        "# Algorithm parameters. Omitted keys take the algorithm's defaults, listed below",
        "# commented out; uncomment a line to change it. Nested tables are allowed, e.g.",
        "# [hyperparameters.learner_params].",
        "[hyperparameters]",
        *_default_lines(algorithm),
        "",
    ])


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:
        raise SpecError(
            "cannot tell who owns the new model (no user name in the environment); "
            "pass --owner NAME"
        ) from exc


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; refuse if ``path`` exists (even in a race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_text(path, text, mode=0o644, exclusive=True)  # no clobbering, even in a race
    except FileExistsError:
        raise SpecError(
            f"{display_path(path)} already exists; pick another name or edit that file"
        ) from None


def scaffold_model(
    name: str,
    *,
    models_dir: Path | None = None,
    ensembles_dir: Path | None = None,
    level: Level | str = Level.CM,
    algorithm: str = "stepshifter",
    owner: str | None = None,
    target: str = "ged_sb",
    status: Status | str = Status.SHADOW,
    description: str | None = None,
) -> Path:
    """Create ``<models_dir>/<name>.toml``: a valid, commented model definition.

    Args:
        name: adjective_noun, not yet used by a model or an ensemble.
        models_dir: where model files live (default ``./models``; created if missing).
        ensembles_dir: ensemble files whose names are reserved (default: beside models_dir).
        level: ``cm`` (default) or ``pgm``.
        algorithm: a registered algorithm (default ``stepshifter``).
        owner: who answers for the model (default: the current user name).
        target: the count column (default ``ged_sb``).
        status: deployment status (default ``shadow``).
        description: one or two sentences (default: a TODO placeholder).

    Returns:
        The path written.

    Raises:
        SpecError: bad or taken name, unknown level, algorithm, status or target; nothing is
            written then.
    """
    check_name(name)
    check_target(target)
    try:
        lvl = Level(level)
    except ValueError:
        raise SpecError(f"unknown level {level!r}; use 'cm' or 'pgm'") from None
    try:
        sts = Status(status)
    except ValueError:
        raise SpecError(
            f"unknown status {status!r}; use one of {', '.join(s.value for s in Status)}"
        ) from None
    try:
        registry.get(algorithm)
    except ValueError as exc:
        raise SpecError(str(exc), parameter="algorithm") from None

    models = models_dir if models_dir is not None else default_models_dir()
    ensembles = ensembles_dir if ensembles_dir is not None else models.parent / "ensembles"
    path = models / f"{name}.toml"
    if path.exists():
        raise SpecError(f"{display_path(path)} already exists; pick another name or edit it")
    taken = {**declared_names(ensembles), **declared_names(models)}
    if name in taken:
        where = ", ".join(display_path(p) for p in taken[name])
        raise SpecError(
            f"name {name!r} is already used by {where}; names are unique across models and "
            "ensembles, pick another adjective_noun"
        )

    text = render_model(
        name, level=lvl, algorithm=algorithm, owner=owner or _default_owner(), target=target,
        status=sts, description=description,
    )
    check_feature, _ = feature_parser()
    report = check_model_text(path, text, check_feature=check_feature)
    if not report.ok:  # a bug in the template or the registry: never write an invalid file
        raise SpecError(
            "the generated model file would be invalid:\n"
            + "\n".join(f"  {p}" for p in report.problems)
            + "\nPlease report this; pass other options meanwhile."
        )
    _write_new(path, text)
    return path
