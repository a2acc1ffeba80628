"""Generate the demo world and import it through the same path as real data."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ewspipe.errors import InputError
from ewspipe.panel.ingest import ImportResult, import_frame
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.snapshot import SnapshotStore
from ewspipe.panel.synthetic import demo_world
from ewspipe.settings import DemoSettings

__all__ = ["import_demo_world"]


def import_demo_world(
    demo: DemoSettings,
    store: SnapshotStore,
    *,
    seed: int | None = None,
    countries: int | None = None,
    pgm_cells: int | None = None,
    last_month: int | None = None,
    limits: InputLimits | None = None,
) -> dict[str, ImportResult]:
    """Build the world (options override ``[demo]``) and store cm and pgm snapshots."""
    limits = limits or InputLimits()
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
    if settings.last_month is not None and settings.last_month < settings.first_month:
        raise InputError(
            f"last month {settings.last_month} is before the first month "
            f"{settings.first_month}; pass a later month_id", parameter="last_month"
        )
    if settings.last_month is not None and \
            settings.last_month - settings.first_month + 1 < limits.min_months:
        need = settings.first_month + limits.min_months - 1
        given = "last month" if last_month is not None else "[demo] last_month in ewspipe.toml"
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
    results: dict[str, ImportResult] = {}
    for level, frame in (("cm", world.cm), ("pgm", world.pgm)):
        results[level] = import_frame(
            frame, level, store,
            source={"kind": "demo", "name": f"demo world seed {settings.seed}", **params},
            source_name=f"demo world ({level}, seed {settings.seed})", limits=limits,
        )
    return results
