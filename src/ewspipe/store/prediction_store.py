"""The prediction store: immutable Parquet partitions ``level=<l>/run=<r>/model=<m>``.

Each partition holds one file, ``part-0.parquet``, in the one forecast format
(:mod:`ewspipe.store.predictions`), compact: the index columns (``origin``, ``step``,
``month_id``, the unit column), ``point`` as float32 and ``samples`` as a list of float32 (one
row per prediction, never one row per sample; a point model's list holds its one value) and,
for a sample forecast, one float32 column per stored quantile level (``q0.05`` .. ``q0.95``,
computed from the stored draws as they are written chunk by chunk). Every
partition has the same types, so the folder reads as one Hive-partitioned dataset
(``pandas.read_parquet(folder)``, DuckDB ``read_parquet('folder/**/*.parquet',
hive_partitioning=true, union_by_name=true)``); partitions of earlier versions (fixed-size
lists) are still read here. A partition is written into a
temporary folder next to its final place and renamed, so a reader sees it whole or not at
all; once written it is never changed (writing the same partition again keeps the first,
unless the first no longer matches its hash: then the fresh copy replaces it, so a re-run
heals a damaged partition). Its sha256 is recorded beside it (``_part-0.parquet.sha256``,
a name dataset readers skip;
committed with it) and every read verifies the file first (:mod:`ewspipe.store.integrity`:
once per process and change of the file), so a flipped bit is a clear
:class:`~ewspipe.errors.IntegrityError` naming the file, never a DuckDB or Arrow traceback
or silently wrong numbers. Queries run through DuckDB over the Hive-style layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.atomic import TMP_DIR_PREFIX, atomic_dir
from ewspipe.errors import InputError, IntegrityError
from ewspipe.models.forecast import Forecast
from ewspipe.store.integrity import record_sha256, verify_file
from ewspipe.store.predictions import (
    META_KEY,
    STORED_QUANTILES,
    forecast_writer,
    quantile_column,
    table_forecast,
)

__all__ = ["PartitionInfo", "PredictionStore", "partition_fix"]

PART_FILE = "part-0.parquet"
_TMP = TMP_DIR_PREFIX
_MIN_GROUP_ROWS = 8_192


@dataclass(frozen=True)
class PartitionInfo:
    level: str
    run: str
    model: str
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "run": self.run, "model": self.model,
                "path": str(self.path)}


def _check_name(kind: str, value: str) -> str:
    if not value or "/" in value or "=" in value or value.startswith("."):
        raise InputError(f"prediction store: {kind} {value!r} is not a valid partition name; "
                         "use letters, digits, '_' and '-'")
    return value


def _row_group_rows(forecast: Forecast) -> int:
    """Rows per Parquet row group: whole (origin, step) blocks (the frame is sorted by origin,
    step, unit), at least ``_MIN_GROUP_ROWS``. A query for one month then decompresses only
    the groups whose month_id statistics cover it: at pgm scale one month's 13,110 rows and
    their samples instead of the whole run."""
    frame = forecast.frame
    blocks = max(1, len(frame[["origin", "step"]].drop_duplicates()))
    block = max(1, -(-len(frame) // blocks))
    return block * max(1, -(-_MIN_GROUP_ROWS // block))


def partition_fix(path: Path) -> str:
    """How to repair a damaged partition (the tail of its IntegrityError)."""
    return (f"re-run `ewspipe run` for its environment on the snapshot it was made from (a "
            f"run of the same snapshot and models replaces the damaged copy), restore "
            f"{Path(path).parent} from a backup, or, when it is an earlier run's forecast no "
            "longer published, delete that folder")


class PredictionStore:
    """Forecasts of every run below one folder; the only code that reads or writes them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def partition_path(self, level: str, run: str, model: str) -> Path:
        return (self.root / f"level={_check_name('level', level)}"
                / f"run={_check_name('run', run)}" / f"model={_check_name('model', model)}")

    def write(
        self, forecast: Forecast, *, level: str, run: str, model: str,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[PartitionInfo, bool]:
        """Store one model's forecast of one run; returns the partition and whether it was
        created (False: it existed already and was left untouched)."""
        return self.write_chunks([forecast], rows=len(forecast), level=level, run=run,
                                 model=model, metadata=metadata)

    def write_chunks(
        self, chunks: Iterable[Forecast], *, rows: int, level: str, run: str, model: str,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[PartitionInfo, bool]:
        """:meth:`write` of the forecast made of ``chunks`` (whole rows, in order, ``rows``
        in all), one chunk in memory at a time; a sample forecast's partition carries the
        :data:`~ewspipe.store.predictions.STORED_QUANTILES` columns. ``chunks`` is not
        consumed when the partition exists already."""
        final = self.partition_path(level, run, model)
        info = PartitionInfo(level, run, model, final / PART_FILE)
        replace = False
        if (final / PART_FILE).is_file():
            try:
                self.verify(info.path)
                return info, False
            except IntegrityError:
                replace = True  # damaged: this run's copy heals it
        try:
            with atomic_dir(final, replace=replace) as tmp:
                meta = {"level": level, "run": run, "model": model, **(metadata or {})}
                with forecast_writer(tmp / PART_FILE, metadata=meta, rows=rows, compact=True,
                                     quantiles=True, row_group_rows=_row_group_rows) as out:
                    for chunk in chunks:
                        out.write(chunk)
                record_sha256(tmp / PART_FILE)
        except FileExistsError:
            if not (final / PART_FILE).is_file():
                raise
            return info, False  # a concurrent writer won: keep theirs
        return info, True

    # ------------------------------------------------------------------ read
    @staticmethod
    def verify(path: Path) -> Path:
        """``path`` (a partition file) after checking it against its recorded sha256.

        Raises:
            IntegrityError: missing, unreadable or damaged; the message says how to repair.
        """
        verify_file(path, fix=partition_fix(path))
        return path

    def checked_path(self, level: str, run: str, model: str) -> Path:
        """The partition file, verified: what a reader hands to DuckDB."""
        return self.verify(self.partition_path(level, run, model) / PART_FILE)

    def damaged(self, paths: list[Path] | None = None) -> list[dict[str, str]]:
        """The partitions (default: all) that fail their hash check, each with the problem:
        what ``/api/v1/health`` lists."""
        found = []
        for path in paths if paths is not None else [p.path for p in self.partitions()]:
            try:
                self.verify(path)
            except IntegrityError as exc:
                found.append({"file": str(path), "problem": str(exc)})
        return found

    def partitions(self, level: str | None = None, run: str | None = None,
                   model: str | None = None) -> list[PartitionInfo]:
        """Complete partitions, filtered; temporary folders are never listed."""
        pattern = (f"level={level or '*'}/run={run or '*'}/model={model or '*'}/{PART_FILE}")
        found = []
        for path in sorted(self.root.glob(pattern)):
            lvl, rn, mdl = (p.split("=", 1)[1] for p in path.relative_to(self.root).parts[:3])
            found.append(PartitionInfo(lvl, rn, mdl, path))
        return found

    def runs(self, level: str, model: str | None = None) -> list[str]:
        """Runs holding ``model`` (any model when None), oldest first (by write time)."""
        parts = self.partitions(level=level, model=model)
        newest: dict[str, float] = {}
        for p in parts:
            newest[p.run] = max(newest.get(p.run, 0.0), p.path.stat().st_mtime)
        return sorted(newest, key=lambda r: (newest[r], r))

    def read(self, level: str, run: str, model: str, *,
             samples: bool = True) -> tuple[Forecast, dict[str, Any]]:
        """One partition as a :class:`Forecast` (int64 index, float64 values widened from the
        stored float32, so a score of it is a score of what was stored) and its metadata;
        ``samples=False`` lets the point stand in for the draws."""
        path = self.checked_path(level, run, model)
        meta = self.metadata(level, run, model)
        unit = str(meta.get("unit_column", "country_id"))
        columns = ["origin", "step", "month_id", unit, "point", *(["samples"] if samples
                                                                 else [])]
        try:
            table = pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                                 f"{partition_fix(path)}") from exc
        return table_forecast(table, meta, samples=samples), meta

    def origins(self, level: str, run: str, model: str) -> list[int]:
        """The distinct origins (last observed months) of one partition, ascending: a
        monthly run's forecast has exactly one."""
        path = self.checked_path(level, run, model)
        try:
            column = pq.read_table(path, columns=["origin"]).column("origin").to_numpy()
        except (OSError, pa.ArrowException) as exc:
            raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                                 f"{partition_fix(path)}") from exc
        return [int(o) for o in np.unique(column)]

    def metadata(self, level: str, run: str, model: str) -> dict[str, Any]:
        path = self.checked_path(level, run, model)
        try:
            raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
            meta = json.loads(raw) if raw else {}
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                                 f"{partition_fix(path)}") from exc
        if not isinstance(meta, dict):
            raise IntegrityError(f"{path}: unreadable partition (its metadata is not a JSON "
                                 f"object); {partition_fix(path)}")
        return meta

    def stored_quantiles(self, level: str, run: str, model: str) -> tuple[float, ...]:
        """The levels of :data:`~ewspipe.store.predictions.STORED_QUANTILES` whose column
        (``q0.05``...) the partition carries: computed when it was written, so a reader takes
        them from there instead of decompressing the draws (partitions of earlier versions
        carry none)."""
        path = self.checked_path(level, run, model)
        try:
            names = set(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as exc:
            raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                                 f"{partition_fix(path)}") from exc
        return tuple(q for q in STORED_QUANTILES if quantile_column(q) in names)

    def query(
        self,
        level: str,
        model: str,
        *,
        month: int | None = None,
        run: str | None = None,
        samples: bool = False,
    ) -> pd.DataFrame:
        """One model's predictions of one run (default: the latest run holding the model),
        optionally only for target month ``month``; read with DuckDB.

        Returns:
            A frame with ``run``, ``model``, origin, step, month_id, the unit column, point
            (float32) and, with ``samples=True``, ``samples`` (a float32 array per row).

        Raises:
            InputError: no partition for this level, model and run.
        """
        import duckdb

        runs = self.runs(level, model)
        if not runs:
            known = sorted({p.model for p in self.partitions(level=level)})
            raise InputError(
                f"no stored forecasts of model {model!r} at level {level} in {self.root}; "
                f"stored models: {', '.join(known) or 'none'} (run `ewspipe run` first)"
            )
        chosen = run if run is not None else runs[-1]
        if chosen not in runs:
            raise InputError(f"run {chosen!r} holds no forecasts of {model!r} at level {level}; "
                             f"runs: {', '.join(runs)}")
        path = self.checked_path(level, chosen, model)
        unit = self.metadata(level, chosen, model).get("unit_column", "country_id")
        cols = f"origin, step, month_id, {unit}, point" + (", samples" if samples else "")
        sql = f"SELECT ? AS run, ? AS model, {cols} FROM read_parquet(?)"
        params: list[Any] = [chosen, model, str(path)]
        if month is not None:
            sql += " WHERE month_id = ?"
            params.append(int(month))
        sql += f" ORDER BY origin, step, {unit}"
        try:
            with duckdb.connect() as con:
                table = con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:  # damaged although its hash matched, or unhashed
            raise IntegrityError(f"{path}: unreadable partition ({exc}); "
                                 f"{partition_fix(path)}") from exc
        frame = table.select([c for c in table.column_names if c != "samples"]).to_pandas()
        if samples:
            col = table.column("samples").combine_chunks()
            s = int(self.metadata(level, chosen, model).get("n_samples", 1))
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False),
                                dtype=np.float32).reshape(-1, s)
            frame["samples"] = list(values)
        return frame
