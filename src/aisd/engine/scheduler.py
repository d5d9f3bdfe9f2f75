"""Scheduler: continuous batching under a token budget (Orca, Yu et al. 2022; vLLM v1's unified scheduler).

Each step gets ``max_num_batched_tokens`` tokens. Running sequences go first (a decode costs one token, an
unfinished chunked prefill continues with as many tokens as the budget allows), then waiting sequences are admitted
in FCFS or priority order (lower ``priority`` first, then arrival) while the budget, ``max_num_seqs`` and the free
KV blocks last. With chunked prefill a long prompt is split across steps and mixed with decodes (Sarathi, Agrawal
et al. 2023). When a running sequence needs a block and none is free, the lowest-priority running sequence is
preempted by recompute: its blocks are freed and it goes back to the front of the queue.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from dataclasses import dataclass, field

from aisd.engine.block_manager import BlockManager
from aisd.engine.config import EngineConfig
from aisd.engine.sequence import Sequence, SequenceStatus

log = logging.getLogger(__name__)


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
    def __init__(self, config: EngineConfig, block_manager: BlockManager, max_model_len: int) -> None:
        self.config = config
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

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.block_manager.free_seq(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.PREEMPTED
        seq.num_preemptions += 1
        self.num_preemptions += 1
        out.preempted.append(seq)
        self.waiting.push_front(seq)
        log.info("preempted request %s (seq %d, %d tokens) by recompute: KV cache full (%d/%d blocks free)",
                 seq.request.request_id, seq.seq_id, seq.num_tokens, self.block_manager.num_free_blocks,
                 self.block_manager.num_blocks)

    # ---- one step -----------------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        chunked = self.config.enable_chunked_prefill
        bm = self.block_manager
        scheduled_ids: set[int] = set()

        # 1) running sequences, in order; the tail is preempted when blocks run out
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = seq.num_tokens - seq.num_computed_tokens
            if num_new > budget:
                if not chunked:
                    i += 1
                    continue
                num_new = budget
            while not bm.allocate(seq, num_new):
                victim = self._victim()
                if victim.seq_id in scheduled_ids:
                    # everything left is already scheduled this step: stop here and let this sequence wait
                    victim = seq
                self._preempt(victim, out)
                if victim is seq:
                    break
            else:
                out.scheduled.append(ScheduledSeq(seq, num_new))
                scheduled_ids.add(seq.seq_id)
                budget -= num_new
                i += 1
                continue
            # ``seq`` itself was preempted: the list shifted, do not advance i

        # 2) waiting sequences, unless something was just preempted (no room to admit)
        while not out.preempted and budget > 0 and len(self.waiting) and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting.peek()
            prefix = bm.match_prefix(seq)
            num_new = seq.num_tokens - prefix.num_tokens
            if num_new > budget:
                if not chunked:
                    break
                num_new = budget
            if not bm.allocate(seq, num_new, prefix):
                break
            self.waiting.pop()
            if seq.status == SequenceStatus.WAITING:
                seq.num_cached_tokens = prefix.num_tokens
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.scheduled.append(ScheduledSeq(seq, num_new))
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
