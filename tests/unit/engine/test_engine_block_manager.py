"""BlockManager invariants under random operation sequences (hypothesis), plus prefix caching and LRU eviction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aisd.engine.block_manager import BlockManager
from aisd.engine.sampling import SamplingParams
from aisd.engine.sequence import Request, Sequence


def make_seq(tokens: list[int], rid: str = "r") -> Sequence:
    req = Request(rid, None, tokens, SamplingParams())
    return Sequence(req, tokens)


def compute(bm: BlockManager, seq: Sequence, n: int) -> bool:
    """What the engine does for one scheduled chunk: allocate, 'run', mark computed, publish full blocks."""
    prefix = bm.match_prefix(seq) if not seq.block_table and seq.num_computed_tokens == 0 else None
    if prefix is not None:
        n = min(n, seq.num_tokens - prefix.num_tokens)
    if not bm.allocate(seq, n, prefix):
        return False
    seq.num_computed_tokens += n
    bm.register_full_blocks(seq)
    return True


ops = st.lists(st.tuples(st.sampled_from(["new", "step", "append", "free", "fork"]), st.integers(0, 10_000)),
               min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=ops, block_size=st.sampled_from([1, 2, 4]), num_blocks=st.integers(4, 24), caching=st.booleans())
def test_invariants_hold_under_random_operations(ops, block_size, num_blocks, caching) -> None:
    bm = BlockManager(num_blocks, block_size, caching)
    live: list[Sequence] = []
    prefixes = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 9, 9, 9]]  # shared prefixes make prefix hits likely
    for op, x in ops:
        if op == "new":
            tokens = prefixes[x % 2][: 1 + x % 8] + [x % 7] * (x % 5)
            seq = make_seq(tokens, f"r{x}")
            if compute(bm, seq, seq.num_tokens):
                live.append(seq)
        elif op == "step" and live:
            seq = live[x % len(live)]
            left = seq.num_tokens - seq.num_computed_tokens
            if left:
                compute(bm, seq, left)
        elif op == "append" and live:  # decode: one more token then compute it
            seq = live[x % len(live)]
            if seq.num_computed_tokens == seq.num_tokens:
                seq.token_ids.append(x % 11)
                if not compute(bm, seq, 1):
                    seq.token_ids.pop()
        elif op == "free" and live:
            bm.free_seq(live.pop(x % len(live)))
        elif op == "fork" and live:
            parent = live[x % len(live)]
            if parent.num_computed_tokens == parent.num_tokens:
                child = make_seq(list(parent.token_ids), "child")
                if bm.fork(parent, child) is not False:
                    live.append(child)
        bm.check_invariants(live)
        assert bm.num_free_blocks + sum(1 for b in bm.blocks if b.ref_count > 0) == num_blocks
    for seq in live:
        bm.free_seq(seq)
    bm.check_invariants([])
    assert bm.num_free_blocks == num_blocks, "all blocks must be back on the free list when idle"


def test_prefix_hit_shares_blocks_and_counts_tokens() -> None:
    bm = BlockManager(16, 4)
    a = make_seq(list(range(10)), "a")
    assert compute(bm, a, 10)
    b = make_seq(list(range(9)) + [99], "b")
    match = bm.match_prefix(b)
    assert match.num_tokens == 8 and match.block_ids == a.block_table[:2]
    assert bm.allocate(b, 2, match)
    assert bm.prefix_cache_hits == 8 and bm.prefix_cache_queries == 20
    assert bm.blocks[a.block_table[0]].ref_count == 2
    bm.check_invariants([a, b])


def test_reset_prefix_cache_drops_every_hash_only_when_idle() -> None:
    bm = BlockManager(16, 4)
    a = make_seq(list(range(10)), "a")
    assert compute(bm, a, 10)
    assert bm.reset_prefix_cache() is False  # a still holds its blocks
    assert bm.match_prefix(make_seq(list(range(10)), "b")).num_tokens == 8
    bm.free_seq(a)
    assert bm.reset_prefix_cache() is True
    assert bm.match_prefix(make_seq(list(range(10)), "c")).num_tokens == 0
    assert not bm.hash_to_block and bm.num_free_blocks == 16
    bm.check_invariants([])


def test_a_prompt_that_is_all_cached_still_computes_its_last_token() -> None:
    bm = BlockManager(16, 4)
    a = make_seq(list(range(8)), "a")
    assert compute(bm, a, 8)
    b = make_seq(list(range(8)), "b")
    assert bm.match_prefix(b).num_tokens == 4  # (8 - 1) // 4 blocks


def test_freed_cached_blocks_survive_until_evicted_lru() -> None:
    bm = BlockManager(4, 2)
    a = make_seq([1, 2, 3, 4, 5], "a")
    assert compute(bm, a, 5)  # 3 blocks, 2 full and published
    bm.free_seq(a)
    assert bm.num_free_blocks == 4
    again = make_seq([1, 2, 3, 4, 7], "again")
    assert bm.match_prefix(again).num_tokens == 4  # still cached after free
    big = make_seq(list(range(100, 108)), "big")  # needs all 4 blocks: evicts the cached ones
    assert compute(bm, big, 8)
    assert bm.num_evictions == 2
    bm.free_seq(big)
    assert bm.match_prefix(make_seq([1, 2, 3, 4, 7])).num_tokens == 0


def test_eviction_prefers_uncached_then_least_recently_used() -> None:
    bm = BlockManager(6, 2)
    old = make_seq([1, 1, 1, 1, 9], "old")
    new = make_seq([2, 2, 2, 2, 9], "new")
    assert compute(bm, old, 5)
    assert compute(bm, new, 5)
    bm.free_seq(old)
    bm.free_seq(new)
    # the two partial (unpublished) blocks are reused first, then old's published blocks (least recent)
    x = make_seq([5, 5, 5, 5, 5, 5, 5, 5], "x")
    assert compute(bm, x, 8)
    assert bm.match_prefix(make_seq([2, 2, 2, 2, 0])).num_tokens == 4
    assert bm.match_prefix(make_seq([1, 1, 1, 1, 0])).num_tokens == 0


def test_allocate_fails_without_side_effects_when_full() -> None:
    bm = BlockManager(2, 4)
    a = make_seq(list(range(8)), "a")
    assert compute(bm, a, 8)
    b = make_seq([7, 7, 7], "b")
    assert not bm.allocate(b, 3, bm.match_prefix(b))
    assert b.block_table == [] and bm.prefix_cache_queries == 8
    bm.check_invariants([a])


def test_fork_copies_the_partial_block() -> None:
    bm = BlockManager(8, 4)
    p = make_seq([1, 2, 3, 4, 5, 6], "p")
    assert compute(bm, p, 6)
    c = make_seq(list(p.token_ids), "c")
    copy = bm.fork(p, c)
    assert copy is not None and copy is not False
    assert copy.src == p.block_table[1] and copy.dst == c.block_table[1] != p.block_table[1]
    assert c.block_table[0] == p.block_table[0] and bm.blocks[p.block_table[0]].ref_count == 2
    bm.check_invariants([p, c])
