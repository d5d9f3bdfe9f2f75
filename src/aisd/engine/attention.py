"""Paged attention on CPU: write new K/V into the block-paged cache, then attend each new token to its sequence's
context through the block table (PagedAttention, Kwon et al. 2023).

Tokens of one step are flattened into one [T] batch: the decodes first (one token each), then the prefill chunks.
- Decodes use the native kernel of ``aisd.engine.cpu_kernels`` when it is available (float32 queries on CPU, a
  float32 or bfloat16 cache): it reads each
  sequence's K/V rows in place, once, with no padding. The pure-torch fallback gathers whole blocks into a padded
  [B, kv_heads, L, D] tensor and runs SDPA with the G = num_heads / num_kv_heads query heads that share a KV head
  laid out as G "query rows" of that head (GQA without repeating K/V).
- Prefill chunks run SDPA in 4-D with ``enable_gqa`` so torch picks its fused (flash) CPU kernel: ``is_causal`` when
  the chunk starts the sequence (attend to the chunk's own K/V, no gather), else an [n, context] causal mask over the
  gathered context (chunked prefill, prefix-cache hits).
All metadata (slots, block tables, lengths, masks) is built once per step and shared by every layer.

Cache layout: per layer K and V are [num_blocks, kv_heads, block_size, head_dim] ("head-major" blocks, as vLLM's
CPU backend): the block_size rows of one (block, kv head) are contiguous, so the decode kernel streams 4 KiB per
block and head, and a prefill's gathered context is [kv_heads, context, head_dim] after one permute, which is the
layout SDPA takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from aisd.engine import cpu_kernels


@dataclass
class PrefillMeta:
    """One prefill chunk: flattened rows [start, end), its sequence's block table and context length after it."""

    start: int
    end: int
    context_len: int
    block_table: torch.Tensor  # [num_blocks] long
    local: bool  # nothing cached before this chunk: attend to the chunk's own K/V, no gather
    mask: torch.Tensor | None  # [n, context_len] bool (True = may attend); None when ``local`` (is_causal)


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] long: cache slot (block * block_size + offset) of every new token
    slot_blocks: torch.Tensor | None = None  # [T] long: slot // block_size
    slot_offsets: torch.Tensor | None = None  # [T] long: slot % block_size
    num_decodes: int = 0
    decode_block_tables: torch.Tensor | None = None  # [B, max_blocks] long (padded with block 0)
    decode_mask: torch.Tensor | None = None  # [B, 1, 1, max_blocks * block_size] bool (torch fallback only)
    decode_context_lens: torch.Tensor | None = None  # [B] long: tokens each decode attends to (itself included)
    native: bool = False  # decodes go through cpu_kernels.paged_decode_attention
    prefills: list[PrefillMeta] = field(default_factory=list)


def slot_of(table: list[int], pos: int, block_size: int) -> int:
    """Cache slot of token ``pos`` of a sequence with block table ``table`` (PagedAttention's slot mapping)."""
    return table[pos // block_size] * block_size + pos % block_size


def build_metadata(decodes: list[tuple[list[int], int]], prefills: list[tuple[list[int], int, int]],
                   block_size: int, group: int, native: bool | None = None) -> AttentionMetadata:
    """decodes: (block_table, position) per decode token; prefills: (block_table, start_pos, n_new) per chunk.
    ``group`` = num_heads // num_kv_heads (kept for API compatibility; the GQA layout no longer needs it).
    ``native``: use the native decode kernel; None = whenever it is available."""
    if native is None:
        native = bool(decodes) and cpu_kernels.available()
    slots = [slot_of(table, pos, block_size) for table, pos in decodes]
    meta = AttentionMetadata(slot_mapping=torch.empty(0, dtype=torch.long), num_decodes=len(decodes), native=native)
    if decodes:
        max_blocks = max(len(t) for t, _ in decodes)
        # one tensor construction for the whole padded table (a per-row torch.tensor costs ~5 us x B)
        meta.decode_block_tables = torch.tensor([t + [0] * (max_blocks - len(t)) for t, _ in decodes],
                                                dtype=torch.long)
        ctx = torch.tensor([pos + 1 for _, pos in decodes], dtype=torch.long)
        meta.decode_context_lens = ctx
        if not native:
            meta.decode_mask = (torch.arange(max_blocks * block_size)[None, :] < ctx[:, None])[:, None, None, :]
    row = len(decodes)
    for table, start, n in prefills:
        slots.extend(slot_of(table, pos, block_size) for pos in range(start, start + n))
        ctx_len = start + n
        local = start == 0
        mask = None if local else torch.arange(ctx_len)[None, :] <= torch.arange(start, ctx_len)[:, None]  # [n, ctx]
        meta.prefills.append(PrefillMeta(row, row + n, ctx_len,
                                         torch.tensor(table[:(ctx_len + block_size - 1) // block_size],
                                                      dtype=torch.long), local, mask))
        row += n
    meta.slot_mapping = torch.tensor(slots, dtype=torch.long)
    meta.slot_blocks = torch.div(meta.slot_mapping, block_size, rounding_mode="floor")
    meta.slot_offsets = meta.slot_mapping - meta.slot_blocks * block_size
    return meta


def ensure_slot_indices(meta: AttentionMetadata, block_size: int) -> None:
    """Derive (block, offset) of every slot once per step when the metadata was built by hand (tests)."""
    if meta.slot_blocks is None:
        meta.slot_blocks = torch.div(meta.slot_mapping, block_size, rounding_mode="floor")
        meta.slot_offsets = meta.slot_mapping - meta.slot_blocks * block_size


def _decode_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                  meta: AttentionMetadata) -> torch.Tensor:
    """Fallback: gather whole blocks as rows of a 2-D view (index_select copies each block with one memcpy; 3-5x
    faster than advanced indexing), [B * max_blocks, KVH * bs * D] -> [B, KVH, L, D], then SDPA. q [B, H, D]."""
    B, H, D = q.shape
    nb, KVH, bs = k_cache.shape[0], k_cache.shape[1], k_cache.shape[2]
    bt = meta.decode_block_tables
    mb = bt.shape[1]
    ids = bt.view(-1)
    kd = torch.index_select(k_cache.view(nb, -1), 0, ids).view(B, mb, KVH, bs, D).transpose(1, 2)
    vd = torch.index_select(v_cache.view(nb, -1), 0, ids).view(B, mb, KVH, bs, D).transpose(1, 2)
    kd, vd = kd.reshape(B, KVH, mb * bs, D).to(q.dtype), vd.reshape(B, KVH, mb * bs, D).to(q.dtype)
    qd = q.view(B, KVH, H // KVH, D)  # head h = kv_head * G + g (the order repeat_kv assumes)
    return F.scaled_dot_product_attention(qd, kd, vd, attn_mask=meta.decode_mask).reshape(B, H, D)


def _gather_context(cache: torch.Tensor, block_table: torch.Tensor, context_len: int) -> torch.Tensor:
    """One sequence's first ``context_len`` cached tokens: [nblk, KVH, bs, D] blocks -> [1, KVH, context_len, D]."""
    nb, KVH, bs, D = cache.shape
    nblk = block_table.shape[0]
    blocks = torch.index_select(cache.view(nb, -1), 0, block_table).view(nblk, KVH, bs, D)
    return blocks.transpose(0, 1).reshape(KVH, nblk * bs, D)[None, :, :context_len]


def paged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    meta: AttentionMetadata, store: bool = True) -> torch.Tensor:
    """q [T, H, D], k/v [T, KVH, D], caches [num_blocks, KVH, block_size, D] -> attention output [T, H, D].
    ``store=False``: k and v are already in the cache (``fused_ops.rope_qkv_store`` wrote them)."""
    D = q.shape[2]
    bs = k_cache.shape[2]
    ensure_slot_indices(meta, bs)
    if store:  # advanced indices around a slice: k_cache[blk, :, off] is [T, KVH, D], the layout of k
        k_cache[meta.slot_blocks, :, meta.slot_offsets] = k.to(k_cache.dtype)  # a 16-bit cache stores rounded K/V
        v_cache[meta.slot_blocks, :, meta.slot_offsets] = v.to(v_cache.dtype)
    out = torch.empty_like(q)
    B = meta.num_decodes
    if B:
        if meta.native and meta.decode_context_lens is not None and q.dtype == torch.float32 \
                and k_cache.dtype in cpu_kernels.KV_DTYPES:
            cpu_kernels.paged_decode_attention(q[:B], k_cache, v_cache, meta.decode_block_tables,
                                               meta.decode_context_lens, D ** -0.5, out=out[:B])
        else:
            if meta.decode_mask is None:  # built for the native kernel but running another dtype
                L = meta.decode_block_tables.shape[1] * bs
                meta.decode_mask = (torch.arange(L)[None, :] < meta.decode_context_lens[:, None])[:, None, None, :]
            out[:B] = _decode_torch(q[:B], k_cache, v_cache, meta)
    for p in meta.prefills:
        qp = q[p.start:p.end].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        if p.local:
            kp = k[p.start:p.end].transpose(0, 1).unsqueeze(0)  # [1, KVH, n, D]
            vp = v[p.start:p.end].transpose(0, 1).unsqueeze(0)
        else:
            kp = _gather_context(k_cache, p.block_table, p.context_len).to(q.dtype)  # [1, KVH, ctx, D]
            vp = _gather_context(v_cache, p.block_table, p.context_len).to(q.dtype)
        # enable_gqa: query head h reads kv head h // G, the same grouping as repeat_kv (fused CPU kernel)
        op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=p.mask, is_causal=p.local, enable_gqa=True)
        out[p.start:p.end] = op[0].transpose(0, 1)
    return out
