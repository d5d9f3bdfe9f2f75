"""The in-memory as-of matcher against a naive loop: integer keys (values used directly), string and two-column keys
(dictionary ids), NULL keys and times, ties broken by a tie column, and time spans too wide to pack directly (ranks)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.features.asof import AsofIndex, asof_match, key_ids, left_order, sort_with_ties

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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(-3, 3)), max_size=60))
def test_sort_with_ties_equals_lexsort(pairs) -> None:  # noqa: ANN001
    packed = np.array([p for p, _ in pairs], np.int64)
    tie = np.array([t for _, t in pairs], np.int64)
    assert sort_with_ties(packed, tie).tolist() == np.lexsort((tie, packed)).tolist()
    assert sort_with_ties(packed, None).tolist() == np.argsort(packed, kind="stable").tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 5), st.one_of(st.integers(-4, 4), st.integers(-2**62, 2**62))),
                max_size=60))
def test_left_order_equals_lexsort(pairs) -> None:  # noqa: ANN001
    keys = np.array([k for k, _ in pairs], np.int64)
    ts = np.array([t for _, t in pairs], np.int64)
    assert left_order(keys, ts).tolist() == np.lexsort((ts, keys)).tolist()


def test_left_keys_beyond_the_right_side_never_overflow() -> None:
    # right ids are small; a left id near 2**40 with times spanning 2**30 would overflow int64 if packed as is
    index = AsofIndex(np.array([0, 1], np.int64), np.array([0, 2**30], np.int64), None, np.array([0, 2**30]))
    assert index.ok
    left = np.array([2**40, 1, 0], np.int64)
    ts = np.array([2**30, 2**30, 5], np.int64)
    valid = np.ones(3, bool)
    assert index.match(left, ts, valid, left_order(left, ts)).tolist() == [-1, 1, 0]


def test_chunks_match_like_the_whole() -> None:
    rng = np.random.default_rng(7)
    rk, rt, tie = rng.integers(0, 50, 3000), rng.integers(0, 1000, 3000), rng.integers(0, 3, 3000)
    lk, lt = rng.integers(-1, 60, 5000), rng.integers(-5, 1100, 5000)
    valid = rng.random(5000) > 0.05
    fresh_limit = lt - 100
    index = AsofIndex(rk, rt, tie, lt[valid], right_fresh=rt)
    whole = index.match(lk, lt, valid, left_order(lk, lt), fresh_limit)
    parts = [index.match(lk[a:a + 700], lt[a:a + 700], valid[a:a + 700], left_order(lk[a:a + 700], lt[a:a + 700]),
                         fresh_limit[a:a + 700]) for a in range(0, 5000, 700)]
    assert np.concatenate(parts).tolist() == whole.tolist()
    for i in rng.choice(5000, 300, replace=False):  # against a naive scan
        cands = [j for j in range(3000) if rk[j] == lk[i] and rt[j] <= lt[i]] if valid[i] and lk[i] >= 0 else []
        best = max(((rt[j], tie[j]) for j in cands), default=None)
        if best is None or best[0] < fresh_limit[i]:
            assert whole[i] == -1
        else:
            assert (rt[whole[i]], tie[whole[i]]) == best and rk[whole[i]] == lk[i]
