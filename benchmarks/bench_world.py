"""`world`: the global demo world (66,205 PRIO-GRID cells x 443 months, ~29 M pgm rows).

Two cases with the issue's import target (at most 60 s and 4 GiB peak on the 2-core
reference machine): ``ewspipe data demo --cells global`` (generate the world month by month
and stream both snapshots in), and ``ewspipe data import panel`` of the same pgm panel as a
Parquet file (written once before the runs, not measured). Each run's JSON is checked: every
cell in every month, and pgm totals equal to the cm totals (the cells reconcile with their
countries).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Benchmark,
    Case,
    SetupError,
    Target,
    VerificationError,
    ewspipe_command,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

CELLS = 66_205
COUNTRIES = 187
FIRST_MONTH = 121  # [demo] first_month: 1990-01
LAST_MONTH = 563  # 2026-11, fixed so the figures do not grow with the calendar
MONTHS = LAST_MONTH - FIRST_MONTH + 1
ROWS = CELLS * MONTHS
TARGET = Target(wall_s=60.0, peak_rss_mib=4096.0)
_TABLE = "data/priogrid_country/priogrid.parquet"


def _problems(manifest: dict[str, Any], level: str, rows: int, units: int) -> list[str]:
    found = []
    for key, want in (("level", level), ("rows", rows), ("units", units),
                      ("first_month", FIRST_MONTH), ("last_month", LAST_MONTH)):
        if manifest.get(key) != want:
            found.append(f"{level} {key} {manifest.get(key)!r}, expected {want!r}")
    if not manifest.get("validation", {}).get("passed"):
        found.append(f"{level} validation report did not pass")
    return found


def _verify_demo(stdout: str) -> str:
    try:
        doc = json.loads(stdout)
        cm, pgm = doc["cm"]["manifest"], doc["pgm"]["manifest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"no demo manifests in the output ({exc})") from exc
    problems = [*_problems(cm, "cm", COUNTRIES * MONTHS, COUNTRIES),
                *_problems(pgm, "pgm", ROWS, CELLS)]
    if pgm.get("totals") != cm.get("totals"):
        problems.append(f"pgm totals {pgm.get('totals')} differ from cm {cm.get('totals')}")
    if problems:
        raise VerificationError("; ".join(problems))
    return (f"pgm snapshot {ROWS:,} rows = {CELLS:,} cells x {MONTHS} months; cm {COUNTRIES} "
            f"countries; pgm totals = cm totals {pgm['totals']}")


def _import_verifier(totals: dict[str, int]) -> Callable[[str], str]:
    def verify(stdout: str) -> str:
        try:
            manifest = json.loads(stdout)["manifest"]
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"no import manifest in the output ({exc})") from exc
        problems = _problems(manifest, "pgm", ROWS, CELLS)
        if manifest.get("totals") != totals:
            problems.append(f"totals {manifest.get('totals')}, expected the cm totals {totals}")
        if problems:
            raise VerificationError("; ".join(problems))
        return f"pgm snapshot {ROWS:,} rows, {CELLS:,} cells; totals = cm totals {totals}"
    return verify


def _global_input() -> tuple[Path, dict[str, int], float]:
    """The global pgm panel as a Parquet file (cached beside the system temp files), the cm
    totals it must reconcile with, and how long generating it took (0 when cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ewspipe.panel.demo import BLOCK_MONTHS
    from ewspipe.panel.synthetic import COUNT_COLUMNS, demo_world
    from ewspipe.settings import DemoSettings

    settings = DemoSettings(pgm_cells="global", first_month=FIRST_MONTH, last_month=LAST_MONTH)
    started = time.perf_counter()
    world = demo_world(settings)
    totals = {c: int(world.cm[c].sum()) for c in COUNT_COLUMNS}
    folder = Path(tempfile.gettempdir()) / "ewspipe-bench-world"
    path = folder / f"pgm-global-{settings.seed}-{FIRST_MONTH}-{LAST_MONTH}.parquet"
    if path.is_file():
        return path, totals, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer: pq.ParquetWriter | None = None
    for block in world.pgm_blocks(BLOCK_MONTHS):
        table = pa.Table.from_pandas(block, preserve_index=False)
        writer = writer or pq.ParquetWriter(partial, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    partial.rename(path)
    return path, totals, time.perf_counter() - started


def _cases() -> list[Case]:
    table = shared_dir() / _TABLE
    if not table.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{_TABLE} ({table})")
    ewspipe = ewspipe_command()
    last = ["--last-month", str(LAST_MONTH)]

    def demo(run_dir: Path) -> list[str]:
        return [*ewspipe, "--state-dir", str(run_dir / "state"), "data", "demo", "--cells",
                "global", *last, "--no-alerts", "--json"]

    source, totals, generated = _global_input()

    def import_file(run_dir: Path) -> list[str]:
        return [*ewspipe, "--state-dir", str(run_dir / "state"), "data", "import", "panel",
                str(source), "--level", "pgm", "--no-alerts", "--json"]

    made = (f"generated in {generated:.1f} s before the runs (not measured)" if generated
            else "reused from an earlier run (not measured)")
    return [
        Case(label="global demo world generate+import",
             display=("ewspipe --state-dir <fresh tmp dir> data demo --cells global "
                      f"--last-month {LAST_MONTH} --no-alerts --json"),
             argv=demo, verify=_verify_demo, target=TARGET,
             note=(f"{COUNTRIES} countries, {CELLS:,} cells x {MONTHS} months = {ROWS:,} pgm "
                   "rows generated twelve months at a time and streamed into the snapshot, "
                   "with validation, drift check and summaries.")),
        Case(label="global pgm import",
             display=("ewspipe --state-dir <fresh tmp dir> data import panel "
                      "<TMP>/pgm-global.parquet --level pgm --no-alerts --json"),
             argv=import_file, verify=_import_verifier(totals), target=TARGET,
             note=(f"the same {ROWS:,}-row panel as a Parquet file ({made}): read, validated "
                   "and written block by block, hashed, drift-checked.")),
    ]


BENCHMARKS = [
    Benchmark(
        name="world",
        title="global demo world: generate and import ~29 M pgm rows",
        description=(
            "The global demo world on every cell of the PRIO-GRID table (`<SHARED>/"
            f"{_TABLE}`): `ewspipe data demo --cells global` and `ewspipe data import panel` of "
            f"its pgm panel ({ROWS:,} rows). Target from the issue: import at most 60 s and "
            "4 GiB (4,096 MiB) peak memory on the 2-core reference machine."
        ),
        cases=_cases,
    )
]
