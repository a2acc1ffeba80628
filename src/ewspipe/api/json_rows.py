"""Rows of an Arrow table as a JSON array of objects, built column by column.

One global pgm month is 66,205 rows of ~16 fields: pandas' ``to_json`` takes ~250 ms for it
and a loop over row dicts several times that. Here each column is formatted once by Arrow
compute (numbers in their shortest round-trip form: a float32 quantile reads ``0.1``, not
``0.10000000149011612``), the pieces of each row are joined element-wise, and the rows'
bytes are the joined array's data buffer as it is: no Python object per row or value.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PARTS", "json_rows", "pool"]

_NULL = "null"
PARTS = max(1, min(4, os.cpu_count() or 1))  # threads (and blocks of rows) per answer
PARALLEL_ROWS = 20_000  # from here on a table is written in PARTS blocks
_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _text(column: pa.Array) -> pa.Array | None:
    """The JSON text of each value (null -> ``null``); None for a type handled elsewhere."""
    kind = column.type
    if pa.types.is_null(kind):
        return pa.array([_NULL] * len(column), pa.string())
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_floating(kind):  # JSON has no NaN or infinity: null, as pandas writes
        text = pc.if_else(pc.is_finite(column), pc.cast(column, pa.string()), _NULL)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if pc.any(pc.match_substring_regex(column, r"[\x00-\x1f]")).as_py():
            return None  # control characters: leave the escaping to a JSON library
        escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped.cast(pa.string()), '"', "")
    else:
        return None
    return pc.fill_null(text, _NULL)


def _constant(column: pa.Array) -> bool:
    """One value in every row (e.g. the origin, step and month of a one-month answer)."""
    if column.null_count == len(column):
        return True
    if column.null_count or not (pa.types.is_integer(column.type)
                                 or pa.types.is_floating(column.type)):
        return False
    if pa.types.is_floating(column.type) and not pc.all(pc.is_finite(column)).as_py():
        return False  # min_max skips NaN
    low, high = pc.min_max(column).values()
    return bool(low == high)


def json_rows(table: pa.Table, prefix: bytes = b"", suffix: bytes = b"") -> bytes | None:
    """``prefix``, then ``table`` as ``[{"col": value, ...}, ...]`` (UTF-8), then ``suffix``
    (one copy of the rows); None when a column's type (e.g. the samples' lists) is not
    covered: the caller then serialises another way. A large table is written in blocks of
    rows on parallel threads (Arrow compute releases the GIL)."""
    if table.num_rows == 0:
        return prefix + b"[]" + suffix
    parts = PARTS if table.num_rows >= PARALLEL_ROWS else 1
    size = -(-table.num_rows // parts)
    blocks = [table.slice(i, size) for i in range(0, table.num_rows, size)]
    bodies = list(pool().map(_rows, blocks)) if len(blocks) > 1 else [_rows(blocks[0])]
    joined: list[bytes | memoryview] = [prefix, b"["]
    for i, body in enumerate(bodies):
        if body is None:
            return None
        joined += [b",", body] if i else [body]
    return b"".join([*joined, b"]", suffix])


def pool() -> ThreadPoolExecutor:
    """The threads that share the CPU-heavy part of one large answer (one pool per process)."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(PARTS, thread_name_prefix="ewspipe-answer")
        return _POOL


def _rows(table: pa.Table) -> memoryview | None:
    """The rows ``{...},{...}`` of a non-empty ``table`` (no brackets), or None."""
    pieces: list[pa.Array | str] = []
    for i, name in enumerate(table.column_names):
        column = table.column(i).combine_chunks()
        if _constant(column):  # joined into the text around it: the join's cost is per piece
            column = column.slice(0, 1)
        text = _text(column)
        if text is None:
            return None
        key = ("{" if i == 0 else ",") + json.dumps(name) + ":"
        pieces += [key, text[0].as_py()] if len(text) == 1 < table.num_rows else [key, text]
    pieces.append("},")
    merged: list[pa.Array | str] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    if len(merged) == 1:  # every column constant
        merged = [pa.array([merged[0]] * table.num_rows, pa.string())]
    rows = pc.binary_join_element_wise(*merged, "")  # the last argument: the separator
    wide = pa.types.is_large_string(rows.type)
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64 if wide else np.int32)[
        rows.offset:rows.offset + len(rows) + 1]
    return memoryview(rows.buffers()[2])[int(offsets[0]):int(offsets[-1]) - 1]  # no last ","
