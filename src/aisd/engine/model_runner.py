"""ModelRunner: owns the model and the paged KV cache; turns a scheduled step into logits for the sampling rows.

KV cache: per layer a K and a V tensor [num_blocks, kv_heads, block_size, head_dim] (head-major blocks, see
attention.py). Inputs of one step are
flattened (decodes first, then prefill chunks); logits are computed only for the last token of each sequence
whose chunk reaches its end (partial prefill chunks produce none).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from aisd.engine.attention import build_metadata
from aisd.engine.block_manager import BlockCopy
from aisd.engine.loader import ModelConfig
from aisd.engine.models.llama import LlamaModel
from aisd.engine.scheduler import ScheduledSeq

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class StepResult:
    """Logits [S, vocab] (float32) for ``sample_items`` in the same order."""

    logits: torch.Tensor
    sample_items: list[ScheduledSeq]


def num_blocks_for_memory(config: ModelConfig, block_size: int, memory_gb: float, dtype: str) -> int:
    """How many KV blocks fit in ``memory_gb`` (2 tensors x layers x block_size x kv_heads x head_dim x bytes)."""
    elem = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    per_block = 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * elem
    return max(1, int(memory_gb * (1 << 30)) // per_block)


class ModelRunner:
    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int, dtype: str = "float32",
                 device: str = "cpu") -> None:
        c = model.config
        if device == "cpu" and os.environ.get("AISD_PACKED_WEIGHTS", "1").lower() not in ("0", "false", "no", "off"):
            if model.pack_weights():  # oneDNN pre-packed linear weights: see LlamaModel.pack_weights
                log.info("linear weights pre-packed for oneDNN")
        self.model = model
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.device = device
        self.group = c.num_heads // c.num_kv_heads
        shape = (num_blocks, c.num_kv_heads, block_size, c.head_dim)
        # Resident from the start: torch.zeros writes every page (measured: +1 GiB RSS for a 1 GiB cache). Tried and
        # dropped: 2 MiB pages for the cache (madvise before zeroing), no measurable gain end to end.
        self.kv_caches = [(torch.zeros(shape, dtype=DTYPES[dtype]), torch.zeros(shape, dtype=DTYPES[dtype]))
                          for _ in range(c.num_layers)]

    def copy_blocks(self, copies: list[BlockCopy]) -> None:
        if not copies:
            return
        src = torch.tensor([c.src for c in copies], dtype=torch.long)
        dst = torch.tensor([c.dst for c in copies], dtype=torch.long)
        for k, v in self.kv_caches:
            k[dst] = k[src]
            v[dst] = v[src]

    @torch.inference_mode()
    def execute(self, scheduled: list[ScheduledSeq]) -> StepResult:
        decodes = [s for s in scheduled if s.num_new_tokens == 1 and s.seq.num_computed_tokens > 0]
        prefills = [s for s in scheduled if not (s.num_new_tokens == 1 and s.seq.num_computed_tokens > 0)]
        ordered = decodes + prefills
        ids: list[int] = []
        pos: list[int] = []
        for s in decodes:
            ids.append(s.seq.token_ids[s.seq.num_computed_tokens])
            pos.append(s.seq.num_computed_tokens)
        for s in prefills:
            start = s.seq.num_computed_tokens
            ids.extend(s.seq.token_ids[start:start + s.num_new_tokens])
            pos.extend(range(start, start + s.num_new_tokens))
        meta = build_metadata([(s.seq.block_table, s.seq.num_computed_tokens) for s in decodes],
                              [(s.seq.block_table, s.seq.num_computed_tokens, s.num_new_tokens) for s in prefills],
                              self.block_size, self.group)
        hidden = self.model.forward(torch.tensor(ids, dtype=torch.long), torch.tensor(pos, dtype=torch.long), meta,
                                    self.kv_caches)
        rows: list[int] = []
        items: list[ScheduledSeq] = []
        row = 0
        for s in ordered:
            row += s.num_new_tokens
            if s.samples:
                rows.append(row - 1)
                items.append(s)
        if not rows:
            return StepResult(torch.empty(0, self.model.config.vocab_size), [])
        logits = self.model.compute_logits(hidden[torch.tensor(rows, dtype=torch.long)])
        return StepResult(logits, items)
