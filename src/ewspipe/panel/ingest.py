"""Import = read, validate, snapshot: the one path every source goes through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ewspipe.errors import PanelError
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.months import month_label
from ewspipe.panel.schema import Level, MissingPolicy, Panel, ValidationReport, validate_panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore, file_sha256
from ewspipe.panel.sources.ged import aggregate_events, load_events
from ewspipe.panel.sources.table import check_parquet_file, check_path, read_table
from ewspipe.panel.stream import NotStreamable, PgmStreamWriter, parquet_blocks

__all__ = [
    "ImportResult",
    "check_months",
    "check_span",
    "import_frame",
    "import_ged_file",
    "import_panel_file",
    "import_stream",
]
_SHOW_IDS = 20


@dataclass(frozen=True)
class ImportResult:
    manifest: Manifest
    report: ValidationReport
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.manifest.id,
            "created": self.created,
            "manifest": self.manifest.to_dict(),
        }


def import_frame(
    frame: pd.DataFrame,
    level: Level | str,
    store: SnapshotStore,
    *,
    source: dict[str, Any],
    source_name: str,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
    fetched_at: str | None = None,
    extra: dict[str, Any] | None = None,
    limits: InputLimits | None = None,
) -> ImportResult:
    """Validate a table already in memory and store it as a snapshot."""
    limits = limits or InputLimits()
    panel, report = validate_panel(
        frame, level, source=source_name, count_columns=count_columns, missing=missing,
        max_count=limits.max_deaths_per_row,
    )
    check_span(panel, report, source_name, limits)
    source = {**source, "missing_policy": MissingPolicy(missing).value}
    manifest, created = store.write(
        panel, report, source=source, fetched_at=fetched_at, extra=extra
    )
    return ImportResult(manifest, report, created)


def import_stream(
    blocks: Callable[[], Iterable[pa.RecordBatch | pa.Table]],
    store: SnapshotStore,
    *,
    source: dict[str, Any],
    source_name: str,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
    fetched_at: str | None = None,
    extra: dict[str, Any] | None = None,
    limits: InputLimits | None = None,
) -> ImportResult | None:
    """Validate and store a pgm panel block by block in bounded memory
    (:mod:`ewspipe.panel.stream`); the same snapshot as :func:`import_frame` would store.

    Returns None, having stored nothing, when the table needs the in-memory validation
    (unsorted, missing values, a value to refuse, unreadable): the caller then imports it
    with :func:`import_frame`, which accepts it or names the row at fault.
    """
    limits = limits or InputLimits()
    staged = store.staging(Level.PGM)
    writer = PgmStreamWriter(staged, source=source_name, count_columns=count_columns,
                             missing=missing, max_count=limits.max_deaths_per_row)
    try:
        for block in blocks():
            writer.feed(block)
        facts, report = writer.finish()
        check_months(facts.first_month, facts.last_month, facts.rows, report, source_name,
                     limits)
    except (NotStreamable, pa.ArrowException, OSError):
        writer.close()
        store.discard(staged)
        return None
    except BaseException:
        writer.close()
        store.discard(staged)
        raise
    source = {**source, "missing_policy": MissingPolicy(missing).value}
    manifest, created = store.write_staged(staged, facts, report, source=source,
                                           fetched_at=fetched_at, extra=extra)
    return ImportResult(manifest, report, created)


def import_panel_file(
    path: Path,
    level: Level | str,
    store: SnapshotStore,
    *,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
    limits: InputLimits | None = None,
) -> ImportResult:
    """Import an aggregated table (Parquet or CSV) such as the VIEWS cm/pgm files."""
    level = Level.parse(str(level))
    path = Path(path)
    if level is Level.PGM and check_parquet_file(path, limits=limits):
        # a Parquet pgm table is streamed (bounded memory); in memory if it must be
        streamed = import_stream(
            lambda: parquet_blocks(path), store, source=_file_source(path),
            source_name=str(path), count_columns=count_columns, missing=missing,
            limits=limits,
        )
        if streamed is not None:
            return streamed
    frame = read_table(path, limits=limits)
    source = _file_source(path)
    return import_frame(
        frame, level, store, source=source, source_name=str(path),
        count_columns=count_columns, missing=missing, limits=limits,
    )


def _file_source(path: Path) -> dict[str, Any]:
    return {"kind": "panel", "file": path.name, "file_sha256": file_sha256(path)}


def check_span(panel: Panel, report: ValidationReport, source: str, limits: InputLimits) -> None:
    """Refuse a panel too short to train and forecast on (``[data] min_months``), unless the
    user asked for a partial snapshot: the latest snapshot is what the next run uses."""
    check_months(panel.first_month, panel.last_month, len(panel.frame), report, source, limits)


def check_months(first: int, last: int, rows: int, report: ValidationReport, source: str,
                 limits: InputLimits) -> None:
    """:func:`check_span` on a panel's first and last month and row count."""
    months = last - first + 1
    span = f"{first}..{last} = {month_label(first)}..{month_label(last)}"
    if months >= limits.min_months:
        report.add("span", f"{months} months >= the minimum {limits.min_months}")
        return
    if limits.allow_short:
        report.add("span", f"only {months} month{'s' if months != 1 else ''}, below the "
                   f"minimum {limits.min_months}; "
                   "stored anyway (--allow-short): a run on it will refuse or be unreliable")
        return
    raise PanelError(
        f"{source}: the table spans only {months} month{'s' if months != 1 else ''} ({span}, "
        f"{rows:,} rows); a snapshot needs at least {limits.min_months} months "
        f"to train and forecast on ([data] min_months, default [partitions] steps + 1) and "
        "would become the latest snapshot the next run uses\n"
        "  Fix: import a longer history, or pass --allow-short to store a partial snapshot "
        "anyway"
    )


def import_ged_file(
    path: Path,
    store: SnapshotStore,
    *,
    levels: tuple[Level, ...] = (Level.CM, Level.PGM),
    countries: Path | None = None,
    first_month: int | None = None,
    last_month: int | None = None,
    source: dict[str, Any] | None = None,
    fetched_at: str | None = None,
    limits: InputLimits | None = None,
    duplicates: str = "refuse",
) -> dict[str, ImportResult]:
    """Aggregate a UCDP GED event file and store one snapshot per level.

    Every level is aggregated and validated before any is written, so a failure leaves the
    store as it was. ``duplicates="drop"`` keeps the first row of a repeated event id (the
    ids are recorded in the report) instead of refusing the file.
    """
    path = Path(path)
    limits = limits or InputLimits()
    if countries is not None:
        check_path(Path(countries))
    events, dropped = load_events(path, limits=limits, duplicates=duplicates)
    table = read_table(countries, limits=limits) if countries is not None else None
    if table is not None:  # messages about the table name its file
        table.attrs["source"] = f"{countries} (the countries table)"
    base = {
        "kind": "ucdp_ged",
        "file": path.name,
        "file_sha256": file_sha256(path),
        "events": len(events),
        **({"countries_file": countries.name, "countries_sha256": file_sha256(countries)}
           if countries is not None else {}),
        **(source or {}),
        **({"duplicates": "drop", "dropped_duplicate_ids": dropped[:_SHOW_IDS],
            "dropped_duplicates": len(dropped)} if dropped else {}),
    }
    validated = {}
    for level in levels:
        frame = aggregate_events(
            events, level, countries=table if level is Level.CM else None,
            first_month=first_month, last_month=last_month, source=str(path),
        )
        name = f"{path} (aggregated to {level})"
        panel, report = validate_panel(frame, level, source=name,
                                       max_count=limits.max_deaths_per_row)
        check_span(panel, report, name, limits)
        if dropped:
            more = f" and {len(dropped) - _SHOW_IDS} more" if len(dropped) > _SHOW_IDS else ""
            report.add("duplicates", f"WARNING: dropped the repeated rows of {len(dropped)} "
                       f"event ids (--duplicates drop): {', '.join(dropped[:_SHOW_IDS])}{more}")
        validated[level] = (panel, report)
    results: dict[str, ImportResult] = {}
    for level, (panel, report) in validated.items():
        manifest, created = store.write(
            panel, report, source={**base, "missing_policy": "error"}, fetched_at=fetched_at
        )
        results[level.value] = ImportResult(manifest, report, created)
    return results
