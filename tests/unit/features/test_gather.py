"""``Gather`` (the memory engine's column pick) equals Arrow ``take`` with NULL for -1, on every column shape: the
NumPy fast path (fixed-width numbers without NULLs, single or multi-chunk) and the Arrow path (NULLs, strings, bools,
timestamps)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from aisd.features.memory_join import Gather


def reference(col: pa.ChunkedArray | pa.Array, idx: np.ndarray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.take(pa.array(idx, mask=idx < 0))


COLUMNS = {
    "float64": pa.array([0.5, 1.5, -2.0, 3.25, 4.0]),
    "int32 chunked": pa.chunked_array([pa.array([1, 2], pa.int32()), pa.array([3, 4, 5], pa.int32())]),
    "int64 with nulls": pa.array([1, None, 3, None, 5], pa.int64()),
    "float32": pa.array([1, 2, 3, 4, 5], pa.float32()),
    "string": pa.array(["a", "b", None, "d", "e"]),
    "bool": pa.array([True, False, True, None, False]),
    "timestamp": pa.array([1, 2, 3, 4, 5], pa.timestamp("us", tz="UTC")),
}
PICKS = {
    "mixed": np.array([4, -1, 0, 0, 2, -1, 3, 1], np.int64),
    "all found": np.array([0, 1, 2, 3, 4, 4], np.int64),
    "none found": np.array([-1, -1, -1], np.int64),
    "empty": np.array([], np.int64),
}


@pytest.mark.parametrize("pick", list(PICKS))
@pytest.mark.parametrize("kind", list(COLUMNS))
def test_gather_equals_arrow_take(kind: str, pick: str) -> None:
    col, idx = COLUMNS[kind], PICKS[pick]
    got = Gather(idx).take(col)
    want = reference(col, idx)
    got.validate(full=True)
    assert got.type == want.type
    assert got.to_pylist() == want.to_pylist()
    assert got.null_count == want.null_count


def test_one_gather_serves_many_columns() -> None:
    idx = PICKS["mixed"]
    g = Gather(idx)
    for kind in COLUMNS:
        assert g.take(COLUMNS[kind]).to_pylist() == reference(COLUMNS[kind], idx).to_pylist()
