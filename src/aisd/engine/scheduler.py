"""Scheduler: continuous batching under a token budget (Orca, Yu et al. 2022; vLLM's unified scheduler).

Each step gets ``max_num_batched_tokens`` tokens. Running decodes go first (one token each), then running prefills
that are partway through their prompt continue with as many tokens as the budget allows, then waiting sequences are
admitted in FCFS or priority order (lower ``priority`` first, then arrival) while the budget, ``max_num_seqs`` and the
free KV blocks last. Decodes never wait behind a prompt: with chunked prefill a long prompt is split across steps
and each piece rides next to every decode (Sarathi-Serve, Agrawal et al. 2024). A later piece attends to more
context than an earlier one, so with a ``PrefillCost`` (the model's FLOP counts) each piece is capped to cost no
more than a budget-sized piece with no context: every step then costs about the same and the decodes' inter-token
latency stays flat while the prompt is prefilled.

Preemption is by recompute (vLLM's RECOMPUTE mode: the blocks are freed, the tokens kept, and the sequence goes back
to the queue to be prefilled again):
- when a running sequence needs a block and none is free, the lowest-priority running sequence (FCFS: the newest)
  is preempted;
- with policy ``priority``, when the best waiting request cannot be admitted (no sequence slot or not enough free
  blocks for its first chunk) and a running sequence has a lower priority, that sequence is preempted to make room
  (vLLM's ``_schedule_priority_preemption``). Ties never preempt, so two equal requests cannot evict each other.
Every preemption is logged and counted in ``num_preemptions``.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from aisd.engine.block_manager import BlockManager
from aisd.engine.config import EngineConfig
from aisd.engine.sequence import Sequence, SequenceStatus

log = logging.getLogger(__name__)


class PrefillCost(NamedTuple):
    """Forward FLOPs per token: ``per_token`` (2 x non-embedding parameters) plus ``per_context_token`` (2 x layers x
    attention width) for every earlier token it attends to (Kaplan et al. 2020, Table 1: C = 2N + 2 n_layer n_ctx
    d_attn)."""

    per_token: float
    per_context_token: float

    @classmethod
    def for_llama(cls, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int,
                  head_dim: int) -> PrefillCost:
        attn = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden  # q, k, v and o projections
        mlp = 3 * hidden * intermediate  # gate, up, down
        return cls(2.0 * layers * (attn + mlp), 2.0 * layers * heads * head_dim)


def chunk_flops(cost: PrefillCost, start: int, n: int) -> float:
    """FLOPs of prefilling positions [start, start + n): token i attends to i + 1 keys (causal)."""
    return n * cost.per_token + cost.per_context_token * (n * start + n * (n + 1) / 2)


def cost_capped_chunk(cost: PrefillCost, start: int, max_flops: float, limit: int) -> int:
    """The largest n <= ``limit`` (possibly 0) with ``chunk_flops(cost, start, n) <= max_flops``: a long prompt's later,
    context-heavier chunks get fewer tokens, so every step stays within one compute budget (Sarathi-Serve's fixed
    per-iteration budget, Agrawal et al. 2024). Solves b/2 n^2 + (a + b (start + 1/2)) n <= max_flops for n."""
    a, b = cost.per_token, cost.per_context_token
    if max_flops <= 0 or limit <= 0:
        return 0
    if b <= 0:
        n = int(max_flops // a)
    else:
        lin = a + b * (start + 0.5)
        n = int((-lin + math.sqrt(lin * lin + 2.0 * b * max_flops)) / b)
    n = min(limit, n)
    while n > 0 and chunk_flops(cost, start, n) > max_flops * (1 + 1e-9):  # guard the float rounding of the root
        n -= 1
    return max(0, n)


@dataclass
class ScheduledSeq:
    """``num_new_tokens`` tokens of ``seq`` starting at ``seq.num_computed_tokens`` run this step."""

    seq: Sequence
    num_new_tokens: int

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the sequence's last token, so the model's output there is sampled."""
        return self.seq.num_computed_tokens + self.num_new_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    num_batched_tokens: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class WaitingQueue:
    """FCFS deque or a priority heap keyed by (priority, arrival_time, admission order)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._fifo: deque[Sequence] = deque()
        self._heap: list[tuple[tuple[int, float, int], int, Sequence]] = []

    def __len__(self) -> int:
        return len(self._fifo) if self.policy == "fcfs" else len(self._heap)

    def __iter__(self):
        return iter(self._fifo) if self.policy == "fcfs" else iter(s for _, _, s in sorted(self._heap, key=lambda e: e[:2]))

    def push(self, seq: Sequence) -> None:
        if self.policy == "fcfs":
            self._fifo.append(seq)
        else:
            heapq.heappush(self._heap, (seq.request.sort_key(), seq.seq_id, seq))

    def push_front(self, seq: Sequence) -> None:
        """A preempted sequence resumes before newer arrivals (in priority mode its key already orders it)."""
        if self.policy == "fcfs":
            self._fifo.appendleft(seq)
        else:
            self.push(seq)

    def peek(self) -> Sequence:
        return self._fifo[0] if self.policy == "fcfs" else self._heap[0][2]

    def pop(self) -> Sequence:
        return self._fifo.popleft() if self.policy == "fcfs" else heapq.heappop(self._heap)[2]

    def remove(self, seqs: set[int]) -> list[Sequence]:
        if self.policy == "fcfs":
            gone = [s for s in self._fifo if s.seq_id in seqs]
            self._fifo = deque(s for s in self._fifo if s.seq_id not in seqs)
        else:
            gone = [e[2] for e in self._heap if e[2].seq_id in seqs]
            self._heap = [e for e in self._heap if e[2].seq_id not in seqs]
            heapq.heapify(self._heap)
        return gone


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager, max_model_len: int,
                 prefill_cost: PrefillCost | None = None) -> None:
        """``prefill_cost``: the model's FLOP counts; with chunked prefill on, it caps each prompt chunk so a step
        never costs more than ``max_num_batched_tokens`` tokens without context (None: chunks fill the budget)."""
        self.config = config
        self.prefill_cost = prefill_cost if config.enable_chunked_prefill else None
        self._flops_left = math.inf
        self.block_manager = block_manager
        self.max_model_len = max_model_len
        self.waiting = WaitingQueue(config.scheduling)
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.push(seq)

    def has_unfinished(self) -> bool:
        return bool(self.running) or len(self.waiting) > 0

    # ---- preemption ---------------------------------------------------------------------------------------------
    def _victim(self) -> Sequence:
        if self.config.scheduling == "priority":
            return max(self.running, key=lambda s: (s.request.sort_key(), s.seq_id))
        return self.running[-1]  # FCFS: the most recently admitted

    def _preempt(self, seq: Sequence, out: SchedulerOutput, reason: str) -> None:
        self.running.remove(seq)
        self.block_manager.free_seq(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.PREEMPTED
        seq.num_preemptions += 1
        self.num_preemptions += 1
        out.preempted.append(seq)
        self.waiting.push_front(seq)
        log.info("preempted request %s (seq %d, priority %d, %d tokens) by recompute: %s (%d/%d blocks free)",
                 seq.request.request_id, seq.seq_id, seq.request.priority, seq.num_tokens, reason,
                 self.block_manager.num_free_blocks, self.block_manager.num_blocks)

    def _running_demand(self) -> int:
        """Free blocks the running sequences need for their next step (a decode token or the next chunk)."""
        bm, budget, need = self.block_manager, self.config.max_num_batched_tokens, 0
        for seq in self.running:
            need += bm.num_new_blocks(seq, min(seq.num_tokens - seq.num_computed_tokens, budget))
        return need

    def _priority_preemption(self, out: SchedulerOutput) -> None:
        """Preempt lower-priority running sequences while waiting ones, taken in priority order, are blocked by
        them (priority policy only). Each waiting sequence that fits reserves its slot and first-chunk blocks
        before the next is considered. Runs before anything is scheduled, so a victim has nothing to undo."""
        if not len(self.waiting) or not self.running:
            return
        if self._victim().request.sort_key() <= self.waiting.peek().request.sort_key():
            return  # the common case: nothing running is less urgent than the head of the queue
        bm = self.block_manager
        seqs, blocks = 0, 0  # reserved by the waiting sequences already considered
        for head in list(self.waiting):  # a snapshot: victims pushed back below are less urgent than ``head``
            first_chunk = min(head.num_tokens - head.num_computed_tokens, self.config.max_num_batched_tokens)
            need = bm.num_new_blocks(head, first_chunk, bm.match_prefix(head))
            while True:
                if len(self.running) + seqs >= self.config.max_num_seqs:
                    reason = f"no sequence slot for higher-priority request {head.request.request_id}"
                elif need + blocks + self._running_demand() > bm.num_free_blocks:
                    reason = f"KV blocks needed by higher-priority request {head.request.request_id}"
                else:
                    break  # ``head`` fits next to everything running
                if not self.running or self._victim().request.sort_key() <= head.request.sort_key():
                    return  # blocked by requests at least as urgent: it waits, and so does everyone after it
                self._preempt(self._victim(), out, reason)
            seqs, blocks = seqs + 1, blocks + need

    def _chunk(self, start: int, remaining: int, budget: int, first_prefill: bool) -> int:
        """Tokens of a prompt to run this step from ``start``: what is left of the token budget, capped by what is
        left of the step's FLOP allowance (the first prompt chunk of a step always gets at least one token)."""
        num_new = min(remaining, budget)
        if self.prefill_cost is not None and num_new > 1:
            num_new = cost_capped_chunk(self.prefill_cost, start, self._flops_left, num_new)
            if first_prefill:
                num_new = max(1, num_new)
        return num_new

    def _spend(self, start: int, num_new: int) -> None:
        if self.prefill_cost is not None:
            self._flops_left -= chunk_flops(self.prefill_cost, start, num_new)

    # ---- one step -----------------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        chunked = self.config.enable_chunked_prefill
        bm = self.block_manager
        scheduled_ids: set[int] = set()
        if self.config.scheduling == "priority":
            self._priority_preemption(out)
        memory_preempted = False
        # the step's compute allowance: what a budget-sized chunk with no context costs (decodes spend from it too)
        self._flops_left = (chunk_flops(self.prefill_cost, 0, self.config.max_num_batched_tokens)
                            if self.prefill_cost is not None else math.inf)
        prefills = 0

        # 1) running sequences: decodes first, then prompts partway through their prefill, each group in order;
        #    when blocks run out the victim (lowest priority / newest) is preempted
        decodes = [s for s in self.running if s.num_tokens - s.num_computed_tokens == 1]
        pending = deque(decodes + [s for s in self.running if s.num_tokens - s.num_computed_tokens != 1])
        while pending and budget > 0:
            seq = pending.popleft()
            if seq not in self.running:  # preempted earlier in this loop
                continue
            num_new = seq.num_tokens - seq.num_computed_tokens
            if num_new > budget and not chunked:
                continue
            if chunked:
                num_new = self._chunk(seq.num_computed_tokens, num_new, budget, prefills == 0)
                if num_new == 0:
                    continue  # this step's compute allowance is spent: the prompt continues next step
            while not bm.allocate(seq, num_new):
                victim = self._victim()
                if victim.seq_id in scheduled_ids:
                    # everything less urgent is already scheduled this step: this sequence waits instead
                    victim = seq
                self._preempt(victim, out, "KV cache full")
                memory_preempted = True
                if victim is seq:
                    break
            else:
                out.scheduled.append(ScheduledSeq(seq, num_new))
                scheduled_ids.add(seq.seq_id)
                self._spend(seq.num_computed_tokens, num_new)
                prefills += num_new > 1
                budget -= num_new

        # 2) waiting sequences, unless running ones were just preempted for memory (no room to admit)
        while (not memory_preempted and budget > 0 and len(self.waiting)
               and len(self.running) < self.config.max_num_seqs):
            seq = self.waiting.peek()
            prefix = bm.match_prefix(seq)
            num_new = seq.num_tokens - prefix.num_tokens
            if num_new > budget and not chunked:
                break
            if chunked:
                num_new = self._chunk(prefix.num_tokens, num_new, budget, prefills == 0)
                if num_new == 0:
                    break
            if not bm.allocate(seq, num_new, prefix):
                break
            self.waiting.pop()
            if seq.status == SequenceStatus.WAITING:
                seq.num_cached_tokens = prefix.num_tokens
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.scheduled.append(ScheduledSeq(seq, num_new))
            self._spend(prefix.num_tokens, num_new)
            prefills += num_new > 1
            budget -= num_new

        out.num_batched_tokens = self.config.max_num_batched_tokens - budget
        return out

    # ---- after the step -----------------------------------------------------------------------------------------
    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq.status in (SequenceStatus.WAITING, SequenceStatus.PREEMPTED):
            self.waiting.remove({seq.seq_id})
        self.block_manager.free_seq(seq)
        seq.status = SequenceStatus.FINISHED
