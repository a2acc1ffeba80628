"""Markdown catalog pages, one per level: ``models_cm.md`` and ``models_pgm.md``.

Pages are deterministic (no timestamps), so regenerating them after a change to
``models/*.toml`` gives a reviewable diff. Hyperparameters are shown only where they differ
from the algorithm's defaults (``registry.default_params``), as dotted keys for nested tables.

With stored backtest evaluations (``ewspipe evaluate --run-type backtest``), a page also
shows every model's and ensemble's pooled MSLE on each backtest window and its rank stability
(mean and worst rank among the level's models on the windows): only scores of the current
definitions are shown, so the pages change when a model or its scores do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ewspipe.atomic import write_text
from ewspipe.catalog.loader import Catalog
from ewspipe.catalog.rules import Status
from ewspipe.catalog.spec import ModelSpec, thaw, toml_value
from ewspipe.evaluation.stability import rank_stability
from ewspipe.models import registry
from ewspipe.panel.schema import Level

__all__ = ["PAGE_NAMES", "BacktestScores", "non_default_hyperparameters", "render_level_page",
           "write_pages"]

#: model or ensemble -> backtest window -> pooled MSLE (None: not scored on that window)
BacktestScores = Mapping[str, Mapping[str, float | None]]

PAGE_NAMES: Mapping[Level, str] = {Level.CM: "models_cm.md", Level.PGM: "models_pgm.md"}
_LEVEL_TITLES = {Level.CM: "country-month (cm)", Level.PGM: "PRIO-GRID-month (pgm)"}
_MISSING = object()


def _leaves(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_leaves(f"{prefix}.{key}", sub))
        return out or {prefix: {}}
    return {prefix: value}


def _diff(prefix: str, value: Any, default: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and isinstance(default, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_diff(f"{prefix}.{key}", sub, default.get(key, _MISSING)))
        return out
    if default is not _MISSING and thaw(value) == thaw(default):
        return {}
    return _leaves(prefix, value)


def non_default_hyperparameters(spec: ModelSpec) -> dict[str, Any]:
    """Hyperparameters whose value differs from the algorithm's default, by dotted key.

    A nested table is compared key by key with the default table; when the default is not a
    table (e.g. None), every key set in the file counts as non-default.
    """
    defaults = registry.default_params(spec.algorithm)
    out: dict[str, Any] = {}
    for key, value in spec.hyperparameters.items():
        out.update(_diff(key, value, defaults.get(key, _MISSING)))
    return dict(sorted(out.items()))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _row(spec: ModelSpec) -> str:
    features = "<br>".join(_code(f) for f in spec.features) or "none"
    hyper = non_default_hyperparameters(spec)
    params = "<br>".join(
        _code(f"{key} = {toml_value(value) or repr(value)}") for key, value in hyper.items()
    ) or "defaults"
    cells = [
        _code(spec.name), _cell(spec.algorithm), _cell(spec.target), features, params,
        spec.status.value, _cell(spec.owner), _cell(spec.description),
    ]
    return "| " + " | ".join(cells) + " |"


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _backtest_section(catalog: Catalog, lvl: Level, windows: list[str],
                      scores: BacktestScores) -> list[str]:
    """The per-window table of the level's models and ensembles that have stored scores."""
    names = [s.name for s in catalog.filter(level=lvl)] + sorted(
        e.name for e in catalog.ensembles.values() if e.level is lvl)
    ours = {n: scores[n] for n in names if n in scores}
    if not ours:
        return []
    ranked = rank_stability(ours, windows)
    order = sorted(ranked.values(), key=lambda st: (
        st.mean_rank if st.mean_rank is not None else float("inf"), st.model))
    lines = [
        "## Backtest windows",
        "",
        "Pooled MSLE on each `[partitions.backtest]` window (rank among the models and "
        "ensembles below in brackets; 1 = best), from the latest `ewspipe evaluate --run-type "
        "backtest` of each current definition; sorted by mean rank. A model that is good on "
        "average but ranks last on one window is tuned to the others.",
        "",
        "| name | " + " | ".join(windows) + " | mean | worst | mean rank | worst rank |",
        "|---|" + "---|" * (len(windows) + 4),
    ]
    for st in order:
        cells = [f"{_num(st.scores[w])} ({st.ranks[w]})" if st.ranks[w] is not None
                 else _num(st.scores[w]) for w in windows]
        lines.append("| " + " | ".join([
            _code(st.model), *cells, _num(st.mean), _num(st.worst), _num(st.mean_rank, 2),
            "n/a" if st.worst_rank is None else str(st.worst_rank)]) + " |")
    return [*lines, ""]


def render_level_page(catalog: Catalog, level: Level | str, *,
                      backtest: tuple[list[str], BacktestScores] | None = None) -> str:
    """The Markdown page listing every model of ``level`` (all statuses), sorted by name;
    with ``backtest`` (the windows, the stored scores) also the backtest table."""
    lvl = Level(level)
    specs = catalog.filter(level=lvl)
    counts = ", ".join(
        f"{sum(s.status is status for s in specs)} {status.value}" for status in Status
    )
    lines = [
        f"# Models: {_LEVEL_TITLES[lvl]}",
        "",
        "Generated by `ewspipe models catalog` from `models/*.toml`; do not edit by hand.",
        "Hyperparameters are listed only where they differ from the algorithm's defaults.",
        "",
    ]
    if not specs:
        lines += [f"No {lvl.value} models yet; create one with "
                  f"`ewspipe models new NAME --level {lvl.value}`.", ""]
        return "\n".join(lines)
    lines += [
        f"{len(specs)} model(s): {counts}.",
        "",
        "| name | algorithm | target | features | non-default hyperparameters | status "
        "| owner | description |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(spec) for spec in specs),
        "",
    ]
    if backtest is not None:
        lines += _backtest_section(catalog, lvl, *backtest)
    return "\n".join(lines)


def write_pages(catalog: Catalog, out_dir: Path, *,
                backtest: tuple[list[str], BacktestScores] | None = None) -> list[Path]:
    """Write one page per level into ``out_dir`` (created if missing); returns the paths.

    Both pages are always written, so a level whose last model was removed gets an empty page
    instead of a stale one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for level, filename in PAGE_NAMES.items():
        path = out_dir / filename
        write_text(path, render_level_page(catalog, level, backtest=backtest), mode=0o644)
        paths.append(path)
    return paths
