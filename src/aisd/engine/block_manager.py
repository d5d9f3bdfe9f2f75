"""BlockManager: the paged KV cache's bookkeeping (PagedAttention, Kwon et al. 2023) with automatic prefix caching.

The cache is ``num_blocks`` fixed-size blocks of ``block_size`` token slots. A sequence owns a block table (block
ids in token order); blocks carry reference counts so sequences can share them (prefix hits, n > 1 forks).

Prefix caching (vLLM's automatic prefix caching): once a block is full of computed tokens it is published under a
chain hash ``hash(parent_hash, tokens)``, so a block's hash identifies the whole prefix up to its end. A new sequence
reuses the longest run of published blocks matching its prompt. Freed blocks go back on the free list but keep
their hash; the free list is ordered least-recently-used first, so allocation evicts the oldest unreferenced cached
block (blocks without a hash are put at the front and reused before any cached one).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from aisd.engine.sequence import Sequence

log = logging.getLogger(__name__)

NO_HASH = -1
ROOT_HASH = 0x5EED


def chain_hash(parent_hash: int, tokens: tuple[int, ...]) -> int:
    """Hash of a full block given the hash of the prefix before it (vLLM's prefix-caching block hash)."""
    return hash((parent_hash, tokens))


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_count = 0
        self.hash = NO_HASH
        self.token_ids: tuple[int, ...] = ()


class BlockCopy(NamedTuple):
    """Copy the KV rows of block ``src`` into block ``dst`` (copy-on-fork of a partly filled last block)."""

    src: int
    dst: int


class PrefixMatch(NamedTuple):
    block_ids: list[int]
    num_tokens: int


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))  # LRU first
        self.hash_to_block: dict[int, int] = {}
        self.prefix_cache_queries = 0  # tokens looked up (vLLM semantics)
        self.prefix_cache_hits = 0  # tokens found
        self.num_evictions = 0

    # ---- state --------------------------------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by a live sequence (cached-but-free blocks count as free)."""
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return (num_tokens + self.block_size - 1) // self.block_size

    # ---- allocation primitives ----------------------------------------------------------------------------------
    def _take_free(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash != NO_HASH:  # evict the least recently used cached block
            if self.hash_to_block.get(block.hash) == block_id:
                del self.hash_to_block[block.hash]
            block.hash, block.token_ids = NO_HASH, ()
            self.num_evictions += 1
        block.ref_count = 1
        return block_id

    def _touch(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
        block.ref_count += 1

    def _release(self, block_id: int) -> None:
        block = self.blocks[block_id]
        block.ref_count -= 1
        if block.ref_count < 0:
            raise AssertionError(f"block {block_id} released more often than referenced")
        if block.ref_count == 0:
            self.free[block_id] = None  # most recently used end
            if block.hash == NO_HASH:
                self.free.move_to_end(block_id, last=False)  # nothing cached in it: reuse first

    # ---- prefix caching -----------------------------------------------------------------------------------------
    def reset_prefix_cache(self) -> bool:
        """Forget every cached block (vLLM's ``reset_prefix_cache``): later requests compute their prompts again.
        False, and nothing changed, while a live sequence holds blocks (their hashes are still in use)."""
        if len(self.free) != self.num_blocks:
            return False
        for block in self.blocks:
            block.hash, block.token_ids = NO_HASH, ()
        self.hash_to_block.clear()
        return True

    def _update_hashes(self, seq: Sequence) -> None:
        bs = self.block_size
        full = len(seq.token_ids) // bs
        hashes = seq.block_hashes
        while len(hashes) < full:
            i = len(hashes)
            parent = hashes[-1] if hashes else ROOT_HASH
            hashes.append(chain_hash(parent, tuple(seq.token_ids[i * bs:(i + 1) * bs])))

    def match_prefix(self, seq: Sequence) -> PrefixMatch:
        """The longest run of cached blocks equal to the start of ``seq`` (at least one token is left to compute,
        so the model still produces logits for the last prompt position). No state changes."""
        if not self.enable_prefix_caching:
            return PrefixMatch([], 0)
        self._update_hashes(seq)
        max_blocks = (seq.num_tokens - 1) // self.block_size
        found: list[int] = []
        bs = self.block_size
        for i in range(max_blocks):
            block_id = self.hash_to_block.get(seq.block_hashes[i])
            if block_id is None or self.blocks[block_id].token_ids != tuple(seq.token_ids[i * bs:(i + 1) * bs]):
                break
            found.append(block_id)
        return PrefixMatch(found, len(found) * bs)

    def register_full_blocks(self, seq: Sequence) -> None:
        """Publish the blocks of ``seq`` that are now full of computed tokens (call after each forward pass)."""
        if not self.enable_prefix_caching:
            return
        full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        if seq.num_registered_blocks >= full:
            return
        self._update_hashes(seq)
        bs = self.block_size
        for i in range(seq.num_registered_blocks, full):
            block = self.blocks[seq.block_table[i]]
            h = seq.block_hashes[i]
            if block.hash == NO_HASH and h not in self.hash_to_block:
                block.hash, block.token_ids = h, tuple(seq.token_ids[i * bs:(i + 1) * bs])
                self.hash_to_block[h] = block.block_id
        seq.num_registered_blocks = full

    # ---- sequence-level operations ------------------------------------------------------------------------------
    def num_new_blocks(self, seq: Sequence, num_new_tokens: int, prefix: PrefixMatch | None = None) -> int:
        """Free blocks needed to hold ``num_new_tokens`` more tokens (prefix hits that sit on the free list count,
        since taking them removes them from it)."""
        have = len(seq.block_table)
        computed = seq.num_computed_tokens
        revived = 0
        if prefix is not None and prefix.block_ids:
            have, computed = len(prefix.block_ids), prefix.num_tokens
            revived = sum(1 for b in prefix.block_ids if self.blocks[b].ref_count == 0)
        return max(0, self.blocks_for(computed + num_new_tokens) - have) + revived

    def allocate(self, seq: Sequence, num_new_tokens: int, prefix: PrefixMatch | None = None) -> bool:
        """Give ``seq`` room for ``num_new_tokens`` more tokens, first attaching ``prefix`` (only for a sequence
        without blocks). Returns False, changing nothing, when there are not enough free blocks."""
        if self.num_new_blocks(seq, num_new_tokens, prefix) > len(self.free):
            return False
        if prefix is not None:
            if seq.block_table:
                raise AssertionError(f"prefix attach to {seq!r} that already has blocks")
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += prefix.num_tokens
            for block_id in prefix.block_ids:
                self._touch(block_id)
            seq.block_table = list(prefix.block_ids)
            seq.num_computed_tokens = prefix.num_tokens
            seq.num_registered_blocks = len(prefix.block_ids)
        need = self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(need):
            seq.block_table.append(self._take_free())
        return True

    def free_seq(self, seq: Sequence) -> None:
        """Drop the sequence's references, last block first so a prompt's tail is evicted before its head."""
        for block_id in reversed(seq.block_table):
            self._release(block_id)
        seq.block_table = []
        seq.num_registered_blocks = 0

    def fork(self, parent: Sequence, child: Sequence) -> BlockCopy | None | bool:
        """Share the parent's full blocks with ``child``; a partly filled last block is copied into a fresh block
        (returned as a BlockCopy for the model runner). Returns False, changing nothing, if no block is free."""
        bs = self.block_size
        full = parent.num_computed_tokens // bs
        partial = parent.num_computed_tokens % bs != 0
        if partial and not self.free:
            return False
        for block_id in parent.block_table[:full]:
            self._touch(block_id)
        child.block_table = list(parent.block_table[:full])
        child.num_computed_tokens = parent.num_computed_tokens
        child.num_registered_blocks = min(parent.num_registered_blocks, full)
        child.block_hashes = list(parent.block_hashes[:full])
        if partial:
            dst = self._take_free()
            child.block_table.append(dst)
            return BlockCopy(parent.block_table[full], dst)
        return None

    # ---- checks -------------------------------------------------------------------------------------------------
    def check_invariants(self, seqs: Iterable[Sequence]) -> None:
        """Assert the bookkeeping is consistent with the live sequences' block tables (used by tests)."""
        expected = [0] * self.num_blocks
        for seq in seqs:
            for block_id in seq.block_table:
                expected[block_id] += 1
        for block in self.blocks:
            in_free = block.block_id in self.free
            assert block.ref_count == expected[block.block_id], (
                f"block {block.block_id}: ref_count {block.ref_count} but {expected[block.block_id]} table entries")
            assert in_free == (block.ref_count == 0), f"block {block.block_id}: free={in_free} ref={block.ref_count}"
        for h, block_id in self.hash_to_block.items():
            assert self.blocks[block_id].hash == h, f"hash map entry {h} -> block {block_id} is stale"
