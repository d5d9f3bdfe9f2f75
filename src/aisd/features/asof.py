"""Vectorised as-of matching (the in-memory point-in-time engine): for every left row, the last right row with the same
key and time <= the left row's time, found with one sort of the right side and one binary search per left row.

Keys of any type become dense integer ids (Arrow ``dictionary_encode`` over both sides, so equal values get equal ids;
several key columns are combined pairwise and re-ranked). Times are int64 epoch microseconds. The pair (key id, time
rank) is packed into one int64 - time ranks come from the union of both sides' times, so the packing is exact and
order-preserving - the right side is sorted once by it (``np.argsort``), and ``np.searchsorted(..., side="right") - 1``
finds, for each left row, the last right row at or before it; the match counts only if its key id is the same. This is
the "backward" search of pandas ``merge_asof(by=...)`` without sorting the left side at all, so the result comes out
in the left side's order. Cost: O((n + m) log m) for n left and m right rows, all in C loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_MAX_PACKED = 2**62


def key_ids(left: Sequence[Any], right: Sequence[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Dense int64 ids of the key tuples of both sides (equal tuples -> equal ids; a NULL anywhere -> -1).

    ``left`` and ``right`` hold one Arrow array per key column, in the same column order. None when the two sides'
    column types cannot be compared (the caller then uses the SQL engine).
    """
    import pyarrow as pa

    n = len(left[0])
    if len(left) == 1:  # one integer key without NULLs: the values themselves, shifted to start at 0 (no hashing)
        lcol, rcol = _as_array(left[0]), _as_array(right[0])
        if (pa.types.is_integer(lcol.type) and pa.types.is_integer(rcol.type) and lcol.null_count == 0
                and rcol.null_count == 0 and len(lcol) and len(rcol)):
            lv, rv = lcol.to_numpy().astype(np.int64), rcol.to_numpy().astype(np.int64)
            low = min(int(lv.min()), int(rv.min()))
            if max(int(lv.max()), int(rv.max())) - low < 2**40:
                return lv - low, rv - low
    combined: np.ndarray | None = None
    width = 1
    for lcol, rcol in zip(left, right, strict=True):
        lcol, rcol = _as_array(lcol), _as_array(rcol)
        if lcol.type != rcol.type:
            try:  # an all-NULL column has Arrow's null type: give it the other side's
                if pa.types.is_null(lcol.type):
                    lcol = lcol.cast(rcol.type)
                else:
                    rcol = rcol.cast(lcol.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        enc = pa.concat_arrays([lcol, rcol]).dictionary_encode()
        ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
        ids = np.where(np.isnan(ids), -1, ids).astype(np.int64)
        size = len(enc.dictionary)
        if combined is None:
            combined, width = ids, size
            continue
        if width * size >= _MAX_PACKED:  # re-rank before packing another column
            _, combined = np.unique(combined, return_inverse=True)
            width = int(combined.max()) + 1 if len(combined) else 1
        both = (combined >= 0) & (ids >= 0)
        combined = np.where(both, combined * size + ids, -1)
        width *= size
    assert combined is not None
    return combined[:n], combined[n:]


def asof_match(left_keys: np.ndarray, left_ts: np.ndarray, left_valid: np.ndarray, right_keys: np.ndarray,
               right_ts: np.ndarray, right_tie: np.ndarray | None = None,
               left_order: np.ndarray | None = None) -> np.ndarray | None:
    """Index into the right side of each left row's match (-1: none): same key id, the largest right time <= the
    left time; among equal (key, time) right rows the last in input order. ``left_valid`` masks left rows with a
    NULL time. Right rows with key id -1 (a NULL key) never match. ``right_tie`` (e.g. created time) orders right
    rows with the same key and time, so the match is the one with the largest tie value: the newest-created row
    wins without a separate dedupe pass. ``left_order`` (``np.lexsort((left_ts, left_keys))``) may be passed when
    several views share the left side: it only speeds the search up, any order gives the same answer. None if the
    packing would overflow int64."""
    top = max(int(left_keys.max(initial=0)), int(right_keys.max(initial=0))) + 1
    valid_ts = left_ts[left_valid]
    both = [a for a in (valid_ts, right_ts) if len(a)]
    low = min(int(a.min()) for a in both) if both else 0
    span = (max(int(a.max()) for a in both) - low + 1) if both else 1
    if packable(top, span):  # times offset from the earliest fit beside the key id: no ranking needed
        m, left_rank, right_rank = span, np.where(left_valid, left_ts - low, 0), right_ts - low
    else:  # dense time ranks from the union of both sides' times (a sort + dedupe; np.unique hashes, slower)
        times = np.sort(np.concatenate([left_ts[left_valid], right_ts]))
        if len(times):
            times = times[np.concatenate(([True], times[1:] != times[:-1]))]
        m = max(len(times), 1)
        if not packable(top, m):
            return None
        left_rank = np.searchsorted(times, left_ts)  # exact for valid rows: every left time is in ``times``
        right_rank = np.searchsorted(times, right_ts)
    right_packed = right_keys * m + right_rank  # order-preserving: key id major, time rank minor
    left_packed = left_keys * m + left_rank
    order = np.argsort(right_packed, kind="stable") if right_tie is None else np.lexsort((right_tie, right_packed))
    # Queries in sorted order: NumPy's binary search then starts from the previous answer and stays in cache
    # (~4x faster than random order at 1M x 500k); answers are scattered back to the left rows' order.
    query_order = np.argsort(left_packed, kind="stable") if left_order is None else left_order
    pos = np.empty(len(left_packed), np.int64)
    pos[query_order] = np.searchsorted(right_packed[order], left_packed[query_order], side="right") - 1
    idx = order[np.clip(pos, 0, None)] if len(order) else np.zeros(len(left_keys), np.int64)
    ok = left_valid & (left_keys >= 0) & (pos >= 0)
    if len(order):
        ok &= right_keys[idx] == left_keys
    return np.where(ok, idx, -1)


def packable(n_keys: int, n_times: int) -> bool:
    """Whether (key id, time rank) fits the int64 packing (else the caller uses the SQL engine)."""
    return n_keys * n_times < _MAX_PACKED


def _as_array(col: Any) -> Any:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col
