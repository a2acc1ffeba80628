"""Read a table file (Parquet or CSV) with errors that say which file and what is wrong.

Before a file is parsed its cost is bounded (:class:`~ewspipe.panel.limits.InputLimits`):
the number of columns, the longest line and the decompressed size of a CSV are measured in
one streamed pass in constant memory, a Parquet file's from its footer. A 400 KB gzip bomb or
a header of 200,000 columns is refused in well under a second instead of costing gigabytes.
"""

from __future__ import annotations

import csv
import errno
import gzip
import os
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ewspipe.errors import PanelError
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.messages import excerpt

__all__ = ["check_parquet_file", "check_path", "index_as_columns", "read_table"]

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv", ".txt")
_MAGIC = b"PAR1"
_CHUNK = 1 << 20


def check_path(path: Path) -> None:
    """Refuse a path that is not a readable, non-empty regular file, saying which case it is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise PanelError(
                f"{path}: broken symlink (it points to {os.readlink(path)}, which does not "
                "exist)\n  Fix: point the link at the real file, or pass the file itself"
            ) from None
        raise PanelError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PanelError(
                f"{path}: symlink loop (the link points, directly or through other links, back "
                "to itself)\n  Fix: point the link at the real file, or pass the file itself"
            ) from None
        raise PanelError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    if path.is_dir():
        raise PanelError(f"{path}: is a directory; pass a Parquet or CSV file")
    if st.st_size == 0:
        raise PanelError(f"{path}: file is empty (0 bytes); was the download or export cut off?")
    if not os.access(path, os.R_OK):
        raise PanelError(f"{path}: permission denied; make the file readable (chmod u+r)")


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


def check_parquet_file(path: Path | str, *, limits: InputLimits | None = None) -> bool:
    """Whether ``path`` is a Parquet file within ``limits`` (False for CSV); the checks
    :func:`read_table` runs before reading, for a reader that streams the file instead."""
    path = Path(path)
    check_path(path)
    if _kind(path) != "parquet":
        return False
    _check_parquet(path, limits or InputLimits())
    return True


def read_table(
    path: Path | str, columns: list[str] | None = None, *, limits: InputLimits | None = None
) -> pd.DataFrame:
    """The whole table as a DataFrame; Parquet keeps its dtypes, CSV is type-inferred."""
    path = Path(path)
    limits = limits or InputLimits()
    check_path(path)
    kind = _kind(path)
    if kind == "parquet":
        _check_parquet(path, limits)
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise PanelError(
                f"{path}: not a readable Parquet file (truncated or corrupt?): "
                f"{excerpt(str(exc), 200)}\n  Fix: re-export or re-download the file"
            ) from exc
        return index_as_columns(table.to_pandas(), path)
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    _scan_csv(path, sep, limits)
    try:
        with warnings.catch_warnings():
            # index_col=False: a data row longer than the header is an error, not an implicit
            # index that shifts every column name one to the right (a trailing delimiter on
            # every row is still read as the export meant it)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=sep, usecols=columns, low_memory=False,
                               index_col=False)
    except pd.errors.ParserWarning as exc:
        raise PanelError(
            f"{path}: the data rows have more fields than the header ({excerpt(str(exc), 120)})"
            "\n  Fix: give every column a name in the header line, or remove the extra field"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise PanelError(f"{path}: the CSV has no header and no rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, EOFError, OSError) as exc:
        raise PanelError(
            f"{path}: the CSV cannot be parsed: {excerpt(str(exc), 200)}\n"
            "  Fix: check the delimiter (comma), quoting and that the file is complete"
        ) from exc


def index_as_columns(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Named index levels become columns: VIEWS keeps month_id x unit in the index, and
    pandas writes it into Parquet files and restores it on reading."""
    names = [n for n in frame.index.names if n is not None]
    if not names:
        return frame
    clash = [n for n in names if n in frame.columns]
    if clash:
        raise PanelError(f"{source}: column '{clash[0]}': it is both an index level and a "
                         "column; drop one of them")
    return frame.reset_index(level=names)


def _too_many_columns(path: Path, found: str, limits: InputLimits) -> PanelError:
    return PanelError(
        f"{path}: {found} columns, more than the limit of {limits.max_columns:,}\n"
        "  Fix: keep only month_id, the unit column and the count columns (a panel needs a "
        f"handful), or raise {limits.describe('max_columns')} in ewspipe.toml"
    )


def _too_big(path: Path, found: str, limits: InputLimits) -> PanelError:
    return PanelError(
        f"{path}: {found}, more than the limit of {limits.max_decompressed_bytes:,} bytes "
        "decompressed\n  Fix: check the file is the table you meant (a small compressed file "
        f"that expands this much is damaged or hostile), or raise "
        f"{limits.describe('max_decompressed_bytes')} in ewspipe.toml"
    )


def _check_parquet(path: Path, limits: InputLimits) -> None:
    """Columns and uncompressed size from the footer, before any column is read."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise PanelError(
            f"{path}: not a readable Parquet file (truncated or corrupt?): "
            f"{excerpt(str(exc), 200)}\n  Fix: re-export or re-download the file"
        ) from exc
    if meta.num_columns > limits.max_columns:
        raise _too_many_columns(path, f"{meta.num_columns:,}", limits)
    encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    # run-length encoding makes a billion zeros tiny on disk: 8 bytes a cell in memory
    size = max(encoded, meta.num_rows * meta.num_columns * 8)
    if size > limits.max_decompressed_bytes:
        raise _too_big(path, f"its {meta.num_rows:,} rows x {meta.num_columns} columns take "
                       f"at least {size:,} bytes once read", limits)


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _scan_csv(path: Path, sep: str, limits: InputLimits) -> None:
    """One streamed pass: header (repeated names, column count), longest row, total size.

    A row ends at a newline outside quotes (an even number of ``"`` before it), so a huge
    quoted cell spread over many short lines is one long row too."""
    cap = limits.max_line_bytes
    try:
        with _open(path) as fh:
            first = fh.read(max(cap + 1, _CHUNK))
            end = first.find(b"\n")
            head = first if end < 0 else first[:end]
            found = head.count(sep.encode()) + 1
            if found > limits.max_columns:
                raise _too_many_columns(path, f"the header has at least {found:,}", limits)
            if (end < 0 and len(first) > cap) or end > cap:
                raise _long_line(path, 1, None, limits)
            _check_header(path, head, sep)
            total, row, tail, quotes = len(first), 1, 0, 0
            chunk = first
            while chunk:
                row, tail, quotes = _rows_in(chunk, row, tail, quotes, path, limits)
                chunk = fh.read(_CHUNK)
                total += len(chunk)
                if total > limits.max_decompressed_bytes:
                    raise _too_big(path, "it decompresses to more bytes", limits)
    except PanelError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise PanelError(
            f"{path}: cannot be read ({excerpt(str(exc), 200)}); a .gz file must be complete "
            "gzip data\n  Fix: re-export or re-download the file"
        ) from exc


def _rows_in(chunk: bytes, row: int, tail: int, quotes: int, path: Path,
             limits: InputLimits) -> tuple[int, int, int]:
    """Check the rows ending in ``chunk``; returns (next row number, bytes of the unfinished
    row, quote parity so far). Vectorised: a few milliseconds per MiB."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    newline = data == 10
    # uint8 wraps around at 256, which keeps the parity: 1 byte per input byte, not 8
    parity = (np.cumsum(data == 34, dtype=np.uint8) + np.uint8(quotes)) & 1
    ends = np.flatnonzero(newline & (parity == 0))
    cap = limits.max_line_bytes
    if len(ends):
        sizes = np.diff(ends, prepend=-1)
        sizes[0] += tail
        worst = int(sizes.argmax())
        if sizes[worst] - 1 > cap:
            raise _long_line(path, row + worst, int(sizes[worst] - 1), limits)
        tail = len(chunk) - int(ends[-1]) - 1
        row += len(ends)
    else:
        tail += len(chunk)
    if tail > cap:
        raise _long_line(path, row, None, limits)
    return row, tail, int(parity[-1]) if len(parity) else quotes


def _long_line(path: Path, line: int, size: int | None, limits: InputLimits) -> PanelError:
    found = f"{size:,} bytes" if size is not None else "longer"
    return PanelError(
        f"{path}: line {line:,} is {found}, more than the limit of {limits.max_line_bytes:,} "
        "bytes per line (a row or cell this long is not a count or an id; line = CSV row, "
        "header = 1)\n  Fix: check the file is the table you meant and that its quoting is "
        "intact (a stray \" makes one row of the rest of the file), or raise "
        f"{limits.describe('max_line_bytes')} in ewspipe.toml"
    )


def _check_header(path: Path, head: bytes, sep: str) -> None:
    """pandas silently renames a repeated header to 'x.1'; refuse it instead."""
    try:
        text = head.decode("utf-8").lstrip("\ufeff").rstrip("\r")
        header = (text.split(sep) if '"' not in text  # no field-size limit on plain names
                  else next(csv.reader([text], delimiter=sep), []))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PanelError(
            f"{path}: the CSV header cannot be read: {excerpt(str(exc), 200)}\n"
            "  Fix: save the file as UTF-8 CSV"
        ) from exc
    repeated = [name for name, n in Counter(header).items() if n > 1]
    if repeated:
        raise PanelError(
            f"{path}: column '{excerpt(repeated[0], 40)}': the name appears "
            f"{header.count(repeated[0])} times in the header\n"
            "  Fix: rename or drop the duplicate column"
        )
