"""`ewspipe data ...`: import, generate, download and inspect data snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ewspipe.cli.choices import DuplicatesPolicy, GedLevel, LevelName, MissingName
from ewspipe.cli.drift import drift_lines
from ewspipe.cli.output import (
    JSON_OPTION,
    NO_ALERTS_OPTION,
    QUIET_OPTION,
    emit,
    progress_on_stderr,
    validation_lines,
)
from ewspipe.flows.ingest import (
    CheckedImport,
    checked_import,
    import_demo_checked,
    import_panel_checked,
    input_limits,
)
from ewspipe.panel.ingest import ImportResult, import_ged_file
from ewspipe.panel.schema import Level
from ewspipe.panel.snapshot import Manifest, SnapshotStore
from ewspipe.panel.sources.ucdp import download, extract_events, ged_url
from ewspipe.panel.summary import summarise_snapshot
from ewspipe.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Import, generate, download and inspect data snapshots.",
                  no_args_is_help=True,
                  rich_markup_mode=None)
import_app = typer.Typer(help="Import a file as a validated snapshot.", no_args_is_help=True,
                         rich_markup_mode=None)
pull_app = typer.Typer(help="Download a data release and import it.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(import_app, name="import")
app.add_typer(pull_app, name="pull")

LEVEL_OPTION = typer.Option(..., "--level", help="Level of analysis: cm or pgm.")
SHORT_OPTION = typer.Option(
    False, "--allow-short",
    help="Store a snapshot shorter than [data] min_months anyway (a partial snapshot).",
)
DUPLICATES_OPTION = typer.Option(
    "refuse", "--duplicates",
    help="Repeated event ids: 'refuse' (default) or 'drop' (keep the first row of each id).",
)


def _store(ctx: typer.Context) -> SnapshotStore:
    settings: Settings = ctx.obj
    return SnapshotStore(settings.snapshot_dir)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _manifest_lines(m: Manifest) -> list[str]:
    totals = ", ".join(f"{k} {v:,}" for k, v in m.totals.items())
    return [
        f"snapshot {m.id}  ({m.level}, source {m.source.get('kind')}: "
        f"{m.source.get('file') or m.source.get('url') or m.source.get('name', '')})",
        f"  rows {m.rows:,}  units {m.units:,} ({m.units_last_month:,} in the last month)  "
        f"months {m.span}",
        f"  totals: {totals}",
        f"  sha256 {m.sha256}  imported {m.imported_at}  fetched {m.fetched_at}",
    ]


def _result_lines(result: ImportResult, checked: CheckedImport | None = None) -> list[str]:
    verb = "created" if result.created else "already present (identical content)"
    drift = drift_lines(checked.drift_summary(result.manifest.level)) if checked else []
    return [*_manifest_lines(result.manifest), f"  {verb}", *validation_lines(result.report),
            *drift]


@import_app.command("panel")
def import_panel(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Parquet or CSV table with month_id, unit and counts."),
    level: LevelName = LEVEL_OPTION,
    counts: str | None = typer.Option(
        None, "--counts", help="Comma-separated count columns (default: every ged_* column)."
    ),
    missing: MissingName = typer.Option(
        "error", "--missing", help="Missing counts: 'error' (refuse) or 'zero' (fill with 0)."
    ),
    allow_short: bool = SHORT_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate an aggregated cm/pgm table and store it as an immutable snapshot; its drift
    alarms are delivered as alerts unless --no-alerts."""
    settings: Settings = ctx.obj
    checked = import_panel_checked(
        settings, file, level, count_columns=_split(counts), missing=missing,
        allow_short=allow_short, alerts=not no_alerts,
    )
    lvl, result = next(iter(checked.results.items()))
    emit(checked.to_dict(lvl), as_json, lambda: "\n".join(_result_lines(result, checked)))


@app.command("list")
def list_snapshots(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List stored snapshots, oldest first."""
    manifests = _store(ctx).list()
    data = {"snapshots": [m.to_dict() for m in manifests]}

    def human() -> str:
        if not manifests:
            return "no snapshots yet; try `ewspipe data demo`"
        rows = [f"{'id':<22} {'level':<5} {'rows':>10} {'units':>6}  months        source"]
        for m in manifests:
            src = m.source.get("file") or m.source.get("url") or m.source.get("kind")
            rows.append(
                f"{m.id:<22} {m.level:<5} {m.rows:>10,} {m.units:>6}  "
                f"{m.first_month}..{m.last_month}  {src}"
            )
        return "\n".join(rows)

    emit(data, as_json, human)


@app.command("show")
def show_snapshot(
    ctx: typer.Context,
    snapshot: str = typer.Argument(..., help="Snapshot id or a unique prefix of it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a snapshot's manifest, validation report and data summary."""
    store = _store(ctx)
    manifest = store.get(snapshot)
    summary = summarise_snapshot(store, manifest.id)
    data: dict[str, Any] = {"manifest": manifest.to_dict(), "summary": summary}

    def human() -> str:
        return "\n".join(
            [*_manifest_lines(manifest), *_summary_lines(summary),
             *validation_lines(manifest.validation)]
        )

    emit(data, as_json, human)


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"  summary ({summary['level']}, {summary['span']}):"]
    for col, s in summary["counts"].items():
        lines.append(
            f"    {col:<8} total {s['total']:>12,}  zero share {s['zero_share']:.3f}  "
            f"max {s['max']:>8,}  units ever > 0 {s['units_ever_nonzero']:>6,}  "
            f"last month {s['last_month_total']:>8,}"
        )
    return lines


@app.command("demo")
def demo(
    ctx: typer.Context,
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: [demo] seed)."),
    countries: int | None = typer.Option(None, "--countries", help="Number of countries."),
    pgm_cells: str | None = typer.Option(
        None, "--pgm-cells", "--cells",
        help="Grid cells in the pgm region (50..13110), or 'global': every cell of the "
        "PRIO-GRID table ($EWSPIPE_SHARED_DIR/data/priogrid_country) with its real country.",
    ),
    last_month: int | None = typer.Option(
        None, "--last-month", help="Last month_id (default: the last complete month)."
    ),
    no_alerts: bool = NO_ALERTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Build the synthetic demo world and import it as cm and pgm snapshots."""
    settings: Settings = ctx.obj
    checked = import_demo_checked(
        settings, seed=seed, countries=countries, pgm_cells=pgm_cells, last_month=last_month,
        alerts=not no_alerts,
    )
    results = checked.results
    store = _store(ctx)
    summaries = {lvl: summarise_snapshot(store, r.manifest.id) for lvl, r in results.items()}
    data = {
        lvl: {**checked.to_dict(lvl), "summary": summaries[lvl]} for lvl in results
    }

    def human() -> str:
        lines = ["Demo world (synthetic; deterministic by seed)"]
        for lvl, r in results.items():
            lines += ["", *_manifest_lines(r.manifest), *_summary_lines(summaries[lvl]),
                      *validation_lines(r.report),
                      *drift_lines(checked.drift_summary(lvl))]
        return "\n".join(lines)

    emit(data, as_json, human)


def _levels(value: str) -> tuple[Level, ...]:
    if value == "both":
        return (Level.CM, Level.PGM)
    return (Level.parse(value),)


GED_LEVEL_OPTION = typer.Option("both", "--level", help="cm, pgm or both.")
COUNTRIES_OPTION = typer.Option(
    None, "--countries",
    help="Table mapping Gleditsch-Ward codes to your country ids: columns gwcode, country_id "
    "and optionally first_month, last_month (cm only).",
)
FIRST_OPTION = typer.Option(None, "--first-month", help="First month_id of the skeleton.")
LAST_OPTION = typer.Option(None, "--last-month", help="Last month_id of the skeleton.")


def _ged_lines(checked: CheckedImport) -> str:
    lines: list[str] = []
    for r in checked.results.values():
        lines += [*_result_lines(r, checked), ""]
    return "\n".join(lines).rstrip()


@import_app.command("ged")
def import_ged(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="UCDP GED event file (CSV or Parquet)."),
    level: GedLevel = GED_LEVEL_OPTION,
    countries: Path | None = COUNTRIES_OPTION,
    first_month: int | None = FIRST_OPTION,
    last_month: int | None = LAST_OPTION,
    duplicates: DuplicatesPolicy = DUPLICATES_OPTION,
    allow_short: bool = SHORT_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Aggregate UCDP GED events to ged_sb/ged_ns/ged_os counts and store the snapshots."""
    settings: Settings = ctx.obj
    limits = input_limits(settings, allow_short=allow_short)
    checked = checked_import(settings, lambda store: import_ged_file(
        file, store, levels=_levels(level), countries=countries, first_month=first_month,
        last_month=last_month, limits=limits, duplicates=duplicates), alerts=not no_alerts)
    emit({lvl: checked.to_dict(lvl) for lvl in checked.results}, as_json,
         lambda: _ged_lines(checked))


@pull_app.command("ucdp")
def pull_ucdp(
    ctx: typer.Context,
    version: str = typer.Option(..., "--version", help="GED release, e.g. 24.1 (or 23.0.10)."),
    url: str | None = typer.Option(
        None, "--url", help="Download this URL instead of [sources.ucdp] ged_url."
    ),
    level: GedLevel = GED_LEVEL_OPTION,
    countries: Path | None = COUNTRIES_OPTION,
    first_month: int | None = FIRST_OPTION,
    last_month: int | None = LAST_OPTION,
    duplicates: DuplicatesPolicy = DUPLICATES_OPTION,
    allow_short: bool = SHORT_OPTION,
    no_alerts: bool = NO_ALERTS_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Download a UCDP GED release and import it like `data import ged`."""
    settings: Settings = ctx.obj
    levels = _levels(level)
    limits = input_limits(settings, allow_short=allow_short)
    target = url or ged_url(version, settings.sources.ucdp.ged_url)
    with progress_on_stderr(quiet):
        fetched = download(target, settings.download_dir,
                           timeout=settings.sources.ucdp.timeout_seconds)
    events = extract_events(fetched.path, max_bytes=limits.max_decompressed_bytes)
    source = {"kind": "ucdp_ged_download", "version": version, "url": fetched.url,
              "download_sha256": fetched.sha256, "download_bytes": fetched.bytes}
    checked = checked_import(settings, lambda store: import_ged_file(
        events, store, levels=levels, countries=countries, first_month=first_month,
        last_month=last_month, source=source, fetched_at=fetched.fetched_at, limits=limits,
        duplicates=duplicates), alerts=not no_alerts)
    data = {"download": fetched.to_dict(),
            **{lvl: checked.to_dict(lvl) for lvl in checked.results}}
    emit(data, as_json, lambda: f"downloaded {fetched.url} ({fetched.bytes:,} bytes, sha256 "
         f"{fetched.sha256})\n" + _ged_lines(checked))
