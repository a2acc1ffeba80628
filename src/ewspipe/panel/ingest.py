"""Import = read, validate, snapshot: the one path every source goes through."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ewspipe.panel.schema import Level, MissingPolicy, ValidationReport, validate_panel
from ewspipe.panel.snapshot import Manifest, SnapshotStore, file_sha256
from ewspipe.panel.sources.ged import aggregate_events, read_events
from ewspipe.panel.sources.table import read_table

__all__ = ["ImportResult", "import_frame", "import_ged_file", "import_panel_file"]


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
) -> ImportResult:
    """Validate a table already in memory and store it as a snapshot."""
    panel, report = validate_panel(
        frame, level, source=source_name, count_columns=count_columns, missing=missing
    )
    source = {**source, "missing_policy": MissingPolicy(missing).value}
    manifest, created = store.write(
        panel, report, source=source, fetched_at=fetched_at, extra=extra
    )
    return ImportResult(manifest, report, created)


def import_panel_file(
    path: Path,
    level: Level | str,
    store: SnapshotStore,
    *,
    count_columns: list[str] | None = None,
    missing: MissingPolicy | str = MissingPolicy.ERROR,
) -> ImportResult:
    """Import an aggregated table (Parquet or CSV) such as the VIEWS cm/pgm files."""
    level = Level.parse(str(level))
    frame = read_table(path)
    source = {"kind": "panel", "file": Path(path).name, "file_sha256": file_sha256(Path(path))}
    return import_frame(
        frame, level, store, source=source, source_name=str(path),
        count_columns=count_columns, missing=missing,
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
) -> dict[str, ImportResult]:
    """Aggregate a UCDP GED event file and store one snapshot per level.

    Every level is aggregated and validated before any is written, so a failure leaves the
    store as it was.
    """
    path = Path(path)
    events = read_events(path)
    table = read_table(countries) if countries is not None else None
    base = {
        "kind": "ucdp_ged",
        "file": path.name,
        "file_sha256": file_sha256(path),
        "events": len(events),
        **({"countries_file": countries.name, "countries_sha256": file_sha256(countries)}
           if countries is not None else {}),
        **(source or {}),
    }
    validated = {}
    for level in levels:
        frame = aggregate_events(
            events, level, countries=table if level is Level.CM else None,
            first_month=first_month, last_month=last_month, source=str(path),
        )
        validated[level] = validate_panel(frame, level, source=f"{path} (aggregated to {level})")
    results: dict[str, ImportResult] = {}
    for level, (panel, report) in validated.items():
        manifest, created = store.write(
            panel, report, source={**base, "missing_policy": "error"}, fetched_at=fetched_at
        )
        results[level.value] = ImportResult(manifest, report, created)
    return results
