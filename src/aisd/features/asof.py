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


class AsofIndex:
    """One view's rows prepared for as-of matching: sorted once by (key id, time, tie), then matched against any
    number of left chunks (``match``), each an independent binary search - so a long entity frame can be matched and
    written chunk by chunk. The packing (key id major, time minor) must cover every left time, so the left side's
    valid times are given up front (``left_ts``: all of them, or just their (min, max) when the span packs directly).
    ``ok`` is False when (key, time) cannot be packed into an int64 (the caller then uses the SQL engine)."""

    def __init__(self, right_keys: np.ndarray, right_ts: np.ndarray, right_tie: np.ndarray | None,
                 left_ts: np.ndarray, right_fresh: np.ndarray | None = None) -> None:
        # Left key ids above the right side's largest become ``self._cap`` in ``match`` (they cannot match), so the
        # packing only has to cover the right side's ids plus that one.
        self._cap = max(int(right_keys.max(initial=0)), 0) + 1
        top = self._cap + 1
        both = [a for a in (left_ts, right_ts) if len(a)]
        low = min(int(a.min()) for a in both) if both else 0
        span = (max(int(a.max()) for a in both) - low + 1) if both else 1
        self._times: np.ndarray | None = None
        self.ok = True
        if packable(top, span):  # times offset from the earliest fit beside the key id: no ranking needed
            self._low, self._m = low, span
            right_rank = right_ts - low
        else:  # dense time ranks from the union of both sides' times (a sort + dedupe; np.unique hashes, slower)
            times = np.sort(np.concatenate([left_ts, right_ts]))
            if len(times):
                times = times[np.concatenate(([True], times[1:] != times[:-1]))]
            self._times, self._low, self._m = times, 0, max(len(times), 1)
            self.ok = packable(top, self._m)
            right_rank = np.searchsorted(times, right_ts)
        self.n_right = len(right_keys)
        packed = right_keys * self._m + right_rank  # order-preserving: key id major, time rank minor
        self._order = sort_with_ties(packed, right_tie)  # (m,) right rows by (key, time, tie)
        self._packed = packed[self._order]  # sorted: binary-searchable
        self._keys = right_keys[self._order]  # in sorted order: the matches' keys are read sequentially
        self._fresh = right_fresh[self._order] if right_fresh is not None else None

    def _rank(self, ts: np.ndarray) -> np.ndarray:
        return ts - self._low if self._times is None else np.searchsorted(self._times, ts)

    def match(self, left_keys: np.ndarray, left_ts: np.ndarray, left_valid: np.ndarray, left_order: np.ndarray,
              min_fresh: np.ndarray | None = None) -> np.ndarray:
        """Index into the right side of each left row's match (-1: none), in the left rows' order.

        ``left_order`` is the rows' (key, time) order (``left_order()``); any order gives the same answer, sorted
        queries keep NumPy's binary search in cache (~4x faster than random order at 1M x 500k). ``min_fresh``
        (per left row, e.g. t - ttl) rejects a match whose fresh time is older - then nothing fresh exists, since
        every earlier row of that key is older still. Work happens in sorted-query space (sequential reads of the
        sorted right side); one scatter puts the answers back in the left order."""
        out = np.full(len(left_keys), -1, np.int64)
        if self.n_right == 0 or len(left_keys) == 0:
            return out
        keys_s, valid_s = np.minimum(left_keys[left_order], self._cap), left_valid[left_order]
        ts_s = np.where(valid_s, left_ts[left_order], self._low)  # a NULL time: any in-range value, masked below
        pos = np.searchsorted(self._packed, keys_s * self._m + self._rank(ts_s), side="right") - 1
        at = np.clip(pos, 0, None)
        ok = valid_s & (keys_s >= 0) & (pos >= 0) & (self._keys[at] == keys_s)
        if min_fresh is not None and self._fresh is not None:
            ok &= self._fresh[at] >= min_fresh[left_order]
        out[left_order] = np.where(ok, self._order[at], -1)
        return out


def asof_match(left_keys: np.ndarray, left_ts: np.ndarray, left_valid: np.ndarray, right_keys: np.ndarray,
               right_ts: np.ndarray, right_tie: np.ndarray | None = None,
               order: np.ndarray | None = None) -> np.ndarray | None:
    """Index into the right side of each left row's match (-1: none): same key id, the largest right time <= the
    left time; among equal (key, time) right rows the last in input order. ``left_valid`` masks left rows with a
    NULL time. Right rows with key id -1 (a NULL key) never match. ``right_tie`` (e.g. created time) orders right
    rows with the same key and time, so the match is the one with the largest tie value: the newest-created row
    wins without a separate dedupe pass. None if the packing would overflow int64. (``AsofIndex`` in one call.)"""
    index = AsofIndex(right_keys, right_ts, right_tie, left_ts[left_valid])
    if not index.ok:
        return None
    if order is None:  # the (key, time) order of the left rows; any order gives the same answer, sorted is faster
        order = left_order(left_keys, left_ts)
    return index.match(left_keys, left_ts, left_valid, order)


def sort_with_ties(packed: np.ndarray, tie: np.ndarray | None) -> np.ndarray:
    """Stable order of ``packed`` with equal values ordered by ``tie`` - ``np.lexsort((tie, packed))``, 2.5x faster
    when ties are rare: one stable argsort of the int64 keys, then a lexsort of only the rows whose key repeats (each
    group of equal keys occupies the same positions before and after, so sorting the groups' rows in place is exact).
    Measured on 500k rows with 10% repeats: 40 ms against 102 ms."""
    order = np.argsort(packed, kind="stable")
    if tie is None or len(packed) < 2:
        return order
    ranked = packed[order]
    same = ranked[1:] == ranked[:-1]  # (n-1,) True where a row has the same key as the one before it
    if not same.any():
        return order
    in_group = np.zeros(len(packed), bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    pos = np.flatnonzero(in_group)
    rows = order[pos]  # the repeated keys' rows, in stable (key, input) order
    order[pos] = rows[np.lexsort((tie[rows], packed[rows]))]
    return order


def left_order(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """``np.lexsort((ts, keys))`` for non-negative int64 key ids: one argsort of (key, time) packed into an int64
    when it fits (3x faster on 1M rows), the two-pass lexsort otherwise."""
    if len(keys):
        low, high = int(ts.min()), int(ts.max())
        top = int(keys.max()) + 2  # key ids start at -1 (NULL)
        if packable(top, high - low + 1):
            return np.argsort((keys + 1) * (high - low + 1) + (ts - low), kind="stable")
    return np.lexsort((ts, keys))


def packable(n_keys: int, n_times: int) -> bool:
    """Whether (key id, time rank) fits the int64 packing (else the caller uses the SQL engine)."""
    return n_keys * n_times < _MAX_PACKED


def _as_array(col: Any) -> Any:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col
