"""Sequence (one token stream with its KV blocks) and Request (a user's request: one prompt, n sequences).

A Sequence's tokens are prompt + generated; ``num_computed_tokens`` counts those whose K/V are in the cache.
Recompute preemption drops the blocks and resets ``num_computed_tokens`` to 0; the tokens stay, so the next
prefill recomputes prompt and output together (vLLM's RECOMPUTE mode).
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

from aisd.engine.outputs import Logprob, RequestMetrics
from aisd.engine.sampling import SamplingParams


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"


_seq_ids = itertools.count()


class Sequence:
    """One completion stream. ``block_table`` lists the KV-cache block ids that hold its tokens, in order."""

    def __init__(self, request: Request, token_ids: list[int], index: int = 0) -> None:
        self.seq_id = next(_seq_ids)
        self.request = request
        self.index = index  # which of the request's n completions
        self.token_ids: list[int] = list(token_ids)
        self.num_prompt_tokens = request.num_prompt_tokens
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # prompt tokens served from the prefix cache at first schedule
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []  # chain hashes of this sequence's full blocks (prefix caching)
        self.num_registered_blocks = 0  # leading full blocks already published in the prefix cache
        self.status = SequenceStatus.WAITING
        self.cumulative_logprob = 0.0
        self.logprobs: list[dict[int, Logprob]] = []
        self.output_text = ""
        self.finish_reason: str | None = None
        self.stop_reason: str | int | None = None
        self.num_preemptions = 0
        self.generator: Any = None  # torch.Generator for sampling (set by the engine; seeded per request)
        self.emitted_text_len = 0  # streaming: characters of output_text already safe to show

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def last_token_id(self) -> int:
        return self.token_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    def num_blocks_needed(self, num_tokens: int, block_size: int) -> int:
        return (num_tokens + block_size - 1) // block_size

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, req={self.request.request_id!r}, tokens={self.num_tokens}, "
                f"computed={self.num_computed_tokens}, blocks={len(self.block_table)}, {self.status.value})")


@dataclass
class Request:
    """A user's request: a prompt, sampling params, a priority (lower value runs first) and its sequences."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    priority: int = 0
    arrival_time: float = 0.0
    order: int = 0  # tie-breaker: admission order
    seqs: list[Sequence] = field(default_factory=list)
    metrics: RequestMetrics | None = None
    forked: bool = False  # n > 1: the siblings have been forked from the first sequence
    aborted: bool = False

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def is_finished(self) -> bool:
        return bool(self.seqs) and all(s.is_finished for s in self.seqs) and (self.forked or self.params.n == 1)

    def sort_key(self) -> tuple[int, float, int]:
        return (self.priority, self.arrival_time, self.order)
