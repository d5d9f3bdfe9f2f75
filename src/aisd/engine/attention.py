"""Paged attention on CPU: write new K/V into the block-paged cache, gather each sequence's context by its block
table, run SDPA (PagedAttention, Kwon et al. 2023, with gather + dense attention instead of a custom kernel).

Tokens of one step are flattened into one [T] batch: the decodes first (one token each), then the prefill chunks.
GQA without repeating K/V: for decodes, the G = num_heads / num_kv_heads query heads that share a KV head are laid
out as G "query rows" of that head, so one SDPA call over [B, kv_heads, G, D] x [B, kv_heads, L, D] covers them.
Prefill chunks do the same with G * n query rows and a causal mask repeated G times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class PrefillMeta:
    """One prefill chunk: flattened rows [start, end), its sequence's block table and context length after it."""

    start: int
    end: int
    context_len: int
    block_table: torch.Tensor  # [num_blocks] long
    local: bool  # nothing cached before this chunk: attend to the chunk's own K/V, no gather
    mask: torch.Tensor  # [G * n, context_len] bool, True = may attend


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] long: cache slot (block * block_size + offset) of every new token
    num_decodes: int = 0
    decode_block_tables: torch.Tensor | None = None  # [B, max_blocks] long (padded with block 0)
    decode_mask: torch.Tensor | None = None  # [B, 1, 1, max_blocks * block_size] bool
    prefills: list[PrefillMeta] = field(default_factory=list)


def build_metadata(decodes: list[tuple[list[int], int]], prefills: list[tuple[list[int], int, int]],
                   block_size: int, group: int) -> AttentionMetadata:
    """decodes: (block_table, position) per decode token; prefills: (block_table, start_pos, n_new) per chunk.
    ``group`` = num_heads // num_kv_heads."""
    slots: list[int] = []
    for table, pos in decodes:
        slots.append(table[pos // block_size] * block_size + pos % block_size)
    meta = AttentionMetadata(slot_mapping=torch.empty(0, dtype=torch.long), num_decodes=len(decodes))
    if decodes:
        max_blocks = max(len(t) for t, _ in decodes)
        bt = torch.zeros(len(decodes), max_blocks, dtype=torch.long)
        for i, (table, _) in enumerate(decodes):
            bt[i, :len(table)] = torch.tensor(table, dtype=torch.long)
        ctx = torch.tensor([pos + 1 for _, pos in decodes])
        meta.decode_block_tables = bt
        meta.decode_mask = (torch.arange(max_blocks * block_size)[None, :] < ctx[:, None])[:, None, None, :]
    row = len(decodes)
    for table, start, n in prefills:
        for pos in range(start, start + n):
            slots.append(table[pos // block_size] * block_size + pos % block_size)
        ctx = start + n
        causal = torch.arange(ctx)[None, :] <= torch.arange(start, ctx)[:, None]  # [n, ctx]
        meta.prefills.append(PrefillMeta(row, row + n, ctx, torch.tensor(table[:(ctx + block_size - 1) // block_size],
                                                                          dtype=torch.long),
                                         start == 0, causal.repeat(group, 1)))
        row += n
    meta.slot_mapping = torch.tensor(slots, dtype=torch.long)
    return meta


def paged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    meta: AttentionMetadata) -> torch.Tensor:
    """q [T, H, D], k/v [T, KVH, D], caches [num_blocks, block_size, KVH, D] -> attention output [T, H, D]."""
    T, H, D = q.shape
    KVH = k.shape[1]
    G = H // KVH
    nb, bs = k_cache.shape[0], k_cache.shape[1]
    flat_k = k_cache.view(nb * bs, KVH, D)
    flat_v = v_cache.view(nb * bs, KVH, D)
    flat_k.index_copy_(0, meta.slot_mapping, k)
    flat_v.index_copy_(0, meta.slot_mapping, v)
    out = torch.empty_like(q)
    B = meta.num_decodes
    if B:
        bt = meta.decode_block_tables
        L = bt.shape[1] * bs
        # gather whole blocks as rows of a 2-D view (index_select copies each block with one memcpy; 3-5x faster
        # than advanced indexing here): [B * max_blocks, bs * KVH * D] -> [B, KVH, L, D]
        ids = bt.view(-1)
        kd = torch.index_select(k_cache.view(nb, -1), 0, ids).view(B, L, KVH, D).transpose(1, 2)
        vd = torch.index_select(v_cache.view(nb, -1), 0, ids).view(B, L, KVH, D).transpose(1, 2)
        qd = q[:B].view(B, KVH, G, D)  # head h = kv_head * G + g (the order repeat_kv assumes)
        od = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=meta.decode_mask)
        out[:B] = od.reshape(B, H, D)
    for p in meta.prefills:
        n = p.end - p.start
        qp = q[p.start:p.end].view(n, KVH, G, D).permute(1, 2, 0, 3).reshape(KVH, G * n, D)
        if p.local:
            kp, vp = k[p.start:p.end].transpose(0, 1), v[p.start:p.end].transpose(0, 1)  # [KVH, n, D]
        else:
            kp = torch.index_select(k_cache.view(nb, -1), 0, p.block_table).view(-1, KVH, D)[:p.context_len]
            vp = torch.index_select(v_cache.view(nb, -1), 0, p.block_table).view(-1, KVH, D)[:p.context_len]
            kp, vp = kp.transpose(0, 1), vp.transpose(0, 1)
        op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=p.mask)  # [KVH, G*n, D]
        out[p.start:p.end] = op.view(KVH, G, n, D).permute(2, 0, 1, 3).reshape(n, H, D)
    return out
