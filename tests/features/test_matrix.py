"""FeatureMatrix reads exactly like the float64 matrix it stores more compactly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ewspipe.features.matrix import FeatureMatrix

_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**30), 2**30).map(float),
    st.sampled_from([0.0, -0.0, 0.25, 1e-310, 3.4e38, 3.5e38, 1 / 3, 16_777_217.0]),
)


@settings(max_examples=60, deadline=None)
@given(X=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                    elements=_VALUES),
       data=st.data())
def test_reads_are_bit_identical_to_the_float64_matrix(X: np.ndarray, data) -> None:
    M = FeatureMatrix.from_array(X)
    assert M.shape == X.shape and len(M) == len(X)
    whole = np.asarray(M)
    assert whole.dtype == np.float64
    assert whole.tobytes() == X.tobytes()  # bit for bit: -0.0 and NaN payloads kept
    n, k = X.shape
    rows = data.draw(st.one_of(
        st.lists(st.integers(0, n - 1), max_size=20).map(lambda r: np.array(r, dtype=np.int64)),
        st.builds(slice, st.integers(0, n), st.integers(0, n)),
        hnp.arrays(np.bool_, n),
    ))
    assert M[rows].tobytes() == X[rows].tobytes()
    if k:
        j = data.draw(st.integers(0, k - 1))
        assert M[rows, j].tobytes() == X[rows, j].tobytes()
        cols = data.draw(hnp.arrays(np.bool_, k))
        assert M[rows, cols].tobytes() == X[rows][:, cols].tobytes()  # outer, as np.ix_
    for j, dtype in enumerate(M.column_dtypes):  # float32 only where it is exact
        if dtype == np.float32:
            assert np.array_equal(X[:, j].astype(np.float32), X[:, j], equal_nan=True)


def test_exact_columns_take_half_the_bytes_and_the_rest_stay_float64() -> None:
    counts = np.arange(1_000, dtype=np.float64)
    means = counts / 3
    M = FeatureMatrix.from_array(np.column_stack([counts, means, np.full(1_000, np.nan)]))
    assert M.column_dtypes == (np.float32, np.float64, np.float32)
    assert M.nbytes == 1_000 * (4 + 8 + 4)
    assert pickle.loads(pickle.dumps(M))[:].tobytes() == M[:].tobytes()
    assert M.head(10)[:].tobytes() == M[:10].tobytes() and len(M.head(5_000)) == 1_000


def test_malformed_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="column 1"):
        FeatureMatrix([np.zeros(3), np.zeros(4)], 3)
    with pytest.raises(ValueError, match="float32/float64"):
        FeatureMatrix([np.zeros(3, dtype=np.int64)], 3)
    with pytest.raises(ValueError, match="2-D"):
        FeatureMatrix.from_array(np.zeros(3))
    with pytest.raises(IndexError):
        FeatureMatrix.from_array(np.zeros((3, 2)))[0, 0, 0]
