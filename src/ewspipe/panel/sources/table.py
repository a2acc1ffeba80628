"""Read a table file (Parquet or CSV) with errors that say which file and what is wrong."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.errors import PanelError

__all__ = ["read_table"]

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_MAGIC = b"PAR1"


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_CSV):
        return "csv"
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == _MAGIC:
        return "parquet"
    raise PanelError(
        f"{path}: unknown file type; use a Parquet (.parquet) or CSV (.csv, .csv.gz) file"
    )


def read_table(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    """The whole table as a DataFrame; Parquet keeps its dtypes, CSV is type-inferred."""
    path = Path(path)
    if not path.exists():
        raise PanelError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise PanelError(f"{path}: is a directory; pass a Parquet or CSV file")
    if path.stat().st_size == 0:
        raise PanelError(f"{path}: file is empty (0 bytes); was the download or export cut off?")
    kind = _kind(path)
    if kind == "parquet":
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise PanelError(
                f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}\n"
                "  Fix: re-export or re-download the file"
            ) from exc
        return table.to_pandas()
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    _check_csv_header(path, sep)
    try:
        return pd.read_csv(path, sep=sep, usecols=columns, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise PanelError(f"{path}: the CSV has no header and no rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, EOFError, OSError) as exc:
        raise PanelError(
            f"{path}: the CSV cannot be parsed: {exc}\n"
            "  Fix: check the delimiter (comma), quoting and that the file is complete"
        ) from exc


def _check_csv_header(path: Path, sep: str) -> None:
    """pandas silently renames a repeated header to 'x.1'; refuse it instead."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
            header = next(csv.reader(fh, delimiter=sep), [])
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise PanelError(f"{path}: the CSV header cannot be read: {exc}") from exc
    repeated = [name for name, n in Counter(header).items() if n > 1]
    if repeated:
        raise PanelError(
            f"{path}: column '{repeated[0]}': the name appears {header.count(repeated[0])} times "
            "in the header\n  Fix: rename or drop the duplicate column"
        )
