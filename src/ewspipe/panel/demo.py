"""Generate the demo world and import it through the same path as real data.

The global world's pgm panel (~29 million rows) is generated and imported twelve months at a
time (:func:`ewspipe.panel.ingest.import_stream`), never whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from ewspipe.errors import InputError
from ewspipe.panel.global_grid import GLOBAL
from ewspipe.panel.ingest import ImportResult, import_frame, import_stream
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.messages import excerpt
from ewspipe.panel.months import current_month_id, month_label
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.synthetic import DemoWorld, demo_world
from ewspipe.settings import DemoSettings

__all__ = ["BLOCK_MONTHS", "import_demo_world", "pgm_cells_value"]

BLOCK_MONTHS = 12  # months per streamed block of the global world: ~800,000 rows


def pgm_cells_value(value: int | str | None) -> int | str | None:
    """``--pgm-cells`` as given on the command line: a number of cells or ``global``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lstrip("+-").isdigit():
        return int(text)
    if text.lower() == GLOBAL:
        return GLOBAL
    raise InputError(
        f"demo world: grid cells {excerpt(text, 40)!r} is neither a number of cells "
        "(50..13110, a disc) nor 'global' (every PRIO-GRID cell); pass e.g. --cells 2000 or "
        "--cells global", parameter="pgm_cells")


def _arrow_blocks(world: DemoWorld) -> Iterator[pa.Table]:
    for block in world.pgm_blocks(BLOCK_MONTHS):
        yield pa.Table.from_pandas(block, preserve_index=False)


def import_demo_world(
    demo: DemoSettings,
    store: SnapshotStore,
    *,
    seed: int | None = None,
    countries: int | None = None,
    pgm_cells: int | str | None = None,
    last_month: int | None = None,
    limits: InputLimits | None = None,
) -> dict[str, ImportResult]:
    """Build the world (options override ``[demo]``) and store cm and pgm snapshots.

    ``pgm_cells`` is a number of cells (a disc) or ``"global"`` (every PRIO-GRID cell, the pgm
    panel streamed into its snapshot twelve months at a time).
    """
    limits = limits or InputLimits()
    pgm_cells = pgm_cells_value(pgm_cells)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"seed": seed, "countries": countries, "pgm_cells": pgm_cells,
                     "last_month": last_month}.items()
        if v is not None
    }
    try:
        settings = DemoSettings.model_validate({**demo.model_dump(), **overrides})
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])} (argument or [demo] setting): "
            f"{err['msg']}, got {err.get('input')!r}"
            for err in errors
        )
        # one bad argument: the CLI names the option that gave it
        names = {str(err["loc"][0]) for err in errors if err["loc"]}
        parameter = names.pop() if len(names) == 1 and names <= set(overrides) else None
        raise InputError(f"demo world: {problems}", parameter=parameter) from exc
    given = "last month" if last_month is not None else "[demo] last_month in ewspipe.toml"
    if settings.last_month is not None and settings.last_month < settings.first_month:
        raise InputError(
            f"{given} {settings.last_month} is before the first month "
            f"{settings.first_month}; pass a later month_id",
            parameter="last_month" if last_month is not None else None,
        )
    newest = current_month_id()
    if settings.last_month is not None and settings.last_month > newest:
        # refused before the world is built: a future month would be generated, then refused
        # by the import's future check with a message about the data, not the setting
        raise InputError(
            f"{given} {settings.last_month} ({month_label(settings.last_month)}) is in the "
            f"future: the newest possible month is {newest} ({month_label(newest)}); pass "
            "an earlier month_id, or leave it out for the last complete month",
            parameter="last_month" if last_month is not None else None,
        )
    if settings.last_month is not None and \
            settings.last_month - settings.first_month + 1 < limits.min_months:
        need = settings.first_month + limits.min_months - 1
        raise InputError(
            f"{given} {settings.last_month} gives a demo world of only "
            f"{settings.last_month - settings.first_month + 1} months from the first month "
            f"{settings.first_month}; a snapshot needs at least {limits.min_months} months "
            f"([data] min_months); use a month_id >= {need}",
            parameter="last_month" if last_month is not None else None,
        )
    world = demo_world(settings)
    params = {
        "seed": settings.seed, "countries": settings.countries,
        "pgm_cells": settings.pgm_cells, "first_month": world.first_month,
        "last_month": world.last_month,
    }
    source = {"kind": "demo", "name": f"demo world seed {settings.seed}", **params}
    results = {"cm": import_frame(world.cm, "cm", store, source=source, limits=limits,
                                  source_name=f"demo world (cm, seed {settings.seed})")}
    name = f"demo world (pgm, seed {settings.seed})"
    streamed = None
    if settings.pgm_cells == GLOBAL:
        streamed = import_stream(lambda: _arrow_blocks(world), store, source=source,
                                 source_name=name, limits=limits)
    # the disc world (and a global one the fast checks refuse) is imported in memory
    results["pgm"] = streamed or import_frame(world.pgm, "pgm", store, source=source,
                                              source_name=name, limits=limits)
    return results
