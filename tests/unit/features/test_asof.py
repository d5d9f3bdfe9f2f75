"""The in-memory as-of matcher against a naive loop: integer keys (values used directly), string and two-column keys
(dictionary ids), NULL keys and times, ties broken by a tie column, and time spans too wide to pack directly (ranks)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.features.asof import asof_match, key_ids

rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 8), st.integers(0, 2)), max_size=25)  # key, time, tie
queries = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(-1, 9))),
                   min_size=1, max_size=20)


def naive(right: list[tuple[int, int, int]], key: int | None, t: int | None) -> set[int]:
    """Indices a correct match may return: the right rows with this key and the largest (time, tie) <= t."""
    if key is None or t is None:
        return {-1}
    cands = [(ts, tie, i) for i, (k, ts, tie) in enumerate(right) if k == key and ts <= t]
    if not cands:
        return {-1}
    best = max((ts, tie) for ts, tie, _ in cands)
    return {i for ts, tie, i in cands if (ts, tie) == best}


def run(right: list[tuple[int, int, int]], q: list[tuple[int | None, int | None]], key_kind: str,
        scale: int) -> list[int]:
    def keys(values: list[int | None]) -> list[pa.Array]:
        if key_kind == "int":
            return [pa.array(values, pa.int64())]
        if key_kind == "str":
            return [pa.array([None if v is None else f"k{v}" for v in values])]
        return [pa.array([None if v is None else v % 2 for v in values], pa.int32()),  # two columns
                pa.array([None if v is None else f"x{v // 2}" for v in values])]

    ids = key_ids(keys([k for k, _ in q]), keys([k for k, _, _ in right]))
    assert ids is not None
    lt = np.array([0 if t is None else t * scale for _, t in q], np.int64)
    valid = np.array([t is not None for _, t in q])
    out = asof_match(ids[0], lt, valid, ids[1], np.array([ts * scale for _, ts, _ in right], np.int64),
                     np.array([tie for _, _, tie in right], np.int64))
    assert out is not None
    return out.tolist()


@settings(max_examples=120, deadline=None)
@given(rows, queries, st.sampled_from(["int", "str", "two"]), st.sampled_from([1, 2**59]))
def test_asof_match_equals_naive_loop(right, q, key_kind, scale) -> None:  # noqa: ANN001
    # scale 2**59 spreads times so wide that (key, time) cannot be packed directly: the dense-rank path runs.
    got = run(right, q, key_kind, scale)
    for (k, t), i in zip(q, got, strict=True):
        assert i in naive(right, k, t), (k, t, i)


def test_null_keys_never_match_and_mismatched_types_are_refused() -> None:
    ids = key_ids([pa.array([1, None], pa.int64())], [pa.array([1, None], pa.int64())])
    assert ids is not None
    got = asof_match(ids[0], np.array([5, 5]), np.array([True, True]), ids[1], np.array([1, 1]))
    assert got is not None and got.tolist() == [0, -1]
    assert key_ids([pa.array([1])], [pa.array([b"\x00"])]) is None  # int vs binary: the SQL engine takes over
