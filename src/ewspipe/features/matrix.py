"""The feature matrix of a design, kept column by column as compactly as is lossless.

Most features hold values that float32 represents exactly (counts and their lags and sums,
months since an event, PRIO-GRID coordinates); only means and decays need float64. Keeping
each such column as float32 halves its bytes, and every read widens it back to the very same
float64 values, so models fit and predict bit for bit as on a float64 matrix. On the global
pgm grid copper_mesh's 17 features over its 240-month window are 1.4 GB instead of 2.1 GB
(11 of 17 columns exact), which is what lets its training fit a 4 GiB budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FeatureMatrix"]

_CHECK_BLOCK = 1 << 20  # values compared per pass: a bounded float64 temporary


def _exact_in_float32(values: npt.NDArray[np.float64], narrow: npt.NDArray[np.float32]) -> bool:
    """Whether widening ``narrow`` gives ``values`` back bit for bit (-0.0 and NaN too)."""
    for lo in range(0, len(values), _CHECK_BLOCK):
        hi = lo + _CHECK_BLOCK
        back = narrow[lo:hi].astype(np.float64)
        if not np.array_equal(back.view(np.uint64), values[lo:hi].view(np.uint64)):
            return False
    return True


class FeatureMatrix:
    """An (n x k) float64 matrix stored as k columns, each float32 when that is exact.

    Indexing works like a 2-D float64 array's (``X[rows]``, ``X[rows, cols]``, ``X[:, j]``;
    rows a slice, integer or boolean array, or an integer) and returns new float64 arrays.
    ``np.asarray(X)`` gives the whole float64 matrix (for small designs and tests).
    """

    __slots__ = ("_columns", "_rows")
    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, columns: Sequence[npt.NDArray[Any]], rows: int) -> None:
        for j, col in enumerate(columns):
            if col.ndim != 1 or len(col) != rows or col.dtype not in (np.float32, np.float64):
                raise ValueError(f"column {j}: expected {rows} float32/float64 values, got "
                                 f"shape {col.shape} of {col.dtype}")
        self._columns = tuple(columns)
        self._rows = rows

    @staticmethod
    def compact(values: npt.ArrayLike) -> npt.NDArray[Any]:
        """One column as stored: float32 when float32 holds every value exactly (NaN
        included), else float64; never a view of a larger array (which it would pin)."""
        wide = np.asarray(values, dtype=np.float64)
        if wide.ndim != 1:
            raise ValueError(f"a column is 1-D, got shape {wide.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            narrow = wide.astype(np.float32)
        if _exact_in_float32(wide, narrow):
            return narrow
        del narrow
        return wide if wide.base is None and wide.flags.c_contiguous else wide.copy()

    @classmethod
    def from_array(cls, X: npt.ArrayLike) -> FeatureMatrix:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"a feature matrix is 2-D, got shape {arr.shape}")
        return cls([cls.compact(arr[:, j]) for j in range(arr.shape[1])], arr.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self._rows, len(self._columns))

    @property
    def nbytes(self) -> int:
        return sum(int(c.nbytes) for c in self._columns)

    @property
    def column_dtypes(self) -> tuple[np.dtype[Any], ...]:
        return tuple(c.dtype for c in self._columns)

    def __len__(self) -> int:
        return self._rows

    def head(self, stop: int) -> FeatureMatrix:
        """The first ``stop`` rows, sharing this matrix's memory."""
        stop = max(0, min(stop, self._rows))
        return FeatureMatrix([c[:stop] for c in self._columns], stop)

    def __getitem__(self, key: Any) -> npt.NDArray[np.float64]:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"a feature matrix takes (rows, columns), got {len(key)} keys")
            rows, cols = key
        else:
            rows, cols = key, slice(None)
        if isinstance(cols, int | np.integer):
            return np.array(self._columns[cols][rows], dtype=np.float64)
        picked = np.arange(len(self._columns))[cols]
        if isinstance(rows, int | np.integer):
            return np.array([self._columns[j][rows] for j in picked], dtype=np.float64)
        n = len(np.broadcast_to(np.empty(1, dtype=np.int8), (self._rows,))[rows])
        out = np.empty((n, len(picked)), dtype=np.float64)
        for i, j in enumerate(picked):
            out[:, i] = self._columns[j][rows]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def copy(self) -> npt.NDArray[np.float64]:
        """The whole matrix as a new float64 array."""
        return self[:]

    def __repr__(self) -> str:
        narrow = sum(c.dtype == np.float32 for c in self._columns)
        return (f"FeatureMatrix({self._rows} x {len(self._columns)}, {narrow} float32 "
                f"columns, {self.nbytes:,} bytes)")
