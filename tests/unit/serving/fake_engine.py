"""A small, deterministic stand-in for ``aisd.engine.LLMEngine`` with exactly its public interface.

It uses the real output and SamplingParams types, so it cannot drift from them. It lets the serving layer (async engine, OpenAI translation, routes) be tested fast and without the model:
a character-level tokenizer (token id = code point), a "model" that continues with a fixed text, a block pool with
reference counts per request, a prefix cache over full prompt blocks, FCFS admission under ``max_num_seqs`` and
one generated token per running sequence per ``step()``. ``step_delay`` makes steps slow enough to cancel mid-stream.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

from aisd.core.errors import InvalidRequestError
from aisd.engine.outputs import CompletionOutput, EngineStats, Logprob, RequestMetrics, RequestOutput
from aisd.engine.sampling import SamplingParams

EOS = 3
FILLER = "The quick brown fox jumps over the lazy dog. "


@dataclass
class _Counters:
    """Mutable counters behind get_stats(), which returns the real (immutable) EngineStats."""

    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    num_preemptions: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    num_free_blocks: int = 0
    num_total_blocks: int = 0


class FakeTokenizer:
    eos_token_id = EOS

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids if i != EOS)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        text = "".join(f"<{m['role']}>{m.get('content') or ''}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


@dataclass
class _Seq:
    index: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict[int, Logprob]] = field(default_factory=list)
    cumulative_logprob: float = 0.0
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    text: str = ""


@dataclass
class _Request:
    request_id: str
    prompt: str | None
    prompt_ids: list[int]
    params: SamplingParams
    priority: int
    metrics: RequestMetrics
    seqs: list[_Seq]
    rng: random.Random
    blocks: int = 0
    cached_tokens: int = 0


class FakeLLMEngine:
    """Implements the LLMEngine interface (add_request / abort_request / step / get_stats ...) without a model."""

    def __init__(self, *, max_model_len: int = 256, max_num_seqs: int = 4, block_size: int = 4,
                 num_blocks: int = 256, step_delay: float = 0.0, eos_after: int | None = None,
                 model_name: str = "fake-model") -> None:
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.step_delay = step_delay
        self.eos_after = eos_after  # emit EOS after this many tokens (None = never)
        self.tokenizer = FakeTokenizer()
        self.loaded = False
        self.waiting: list[_Request] = []
        self.running: list[_Request] = []
        self.used_blocks = 0
        self.cached_prefixes: set[tuple[int, ...]] = set()
        self.stats = _Counters(num_free_blocks=num_blocks, num_total_blocks=num_blocks)
        self.aborted: list[str] = []
        self.added: list[tuple[str, list[int], SamplingParams, int]] = []
        self.fail_next_step: Exception | None = None
        self._thread_guard = threading.Lock()  # detects concurrent calls (the engine is not thread-safe)

    def load(self) -> None:
        self.loaded = True

    # ---- the interface ---------------------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams, *, priority: int = 0,
                    arrival_time: float | None = None) -> None:
        with self._guard():
            ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
            if not ids:
                raise InvalidRequestError("prompt is empty", param="prompt")
            if len(ids) >= self.max_model_len:
                raise InvalidRequestError(f"prompt has {len(ids)} tokens; max_model_len is {self.max_model_len}",
                                          param="prompt")
            if any(r.request_id == request_id for r in self.waiting + self.running):
                raise InvalidRequestError(f"duplicate request id {request_id!r}", param="request_id")
            self.added.append((request_id, ids, params, priority))
            self.waiting.append(_Request(
                request_id, prompt if isinstance(prompt, str) else None, ids, params, priority,
                RequestMetrics(arrival_time=arrival_time or time.monotonic()),
                [_Seq(i) for i in range(params.n)], random.Random(params.seed)))
            self._refresh()

    def abort_request(self, request_id: str) -> None:
        with self._guard():
            for queue in (self.waiting, self.running):
                for r in list(queue):
                    if r.request_id == request_id:
                        queue.remove(r)
                        self.used_blocks -= r.blocks
                        self.aborted.append(request_id)
            self._refresh()

    def has_unfinished_requests(self) -> bool:
        return bool(self.waiting or self.running)

    def get_stats(self) -> EngineStats:
        return EngineStats(**vars(self.stats))

    def step(self) -> list:
        with self._guard():
            if self.fail_next_step is not None:
                exc, self.fail_next_step = self.fail_next_step, None
                raise exc
            if self.step_delay:
                time.sleep(self.step_delay)
            now = time.monotonic()
            self._admit(now)
            outputs = []
            for req in list(self.running):
                outputs.append(self._advance(req, now))
            self._refresh()
            return outputs

    # ---- internals -------------------------------------------------------------------------------------------
    def _guard(self):
        if not self._thread_guard.acquire(blocking=False):
            raise AssertionError("FakeLLMEngine called from two threads at once")
        guard = self._thread_guard

        class _Release:
            def __enter__(self) -> None:
                return None

            def __exit__(self, *exc: object) -> None:
                guard.release()

        return _Release()

    def _blocks_for(self, req: _Request) -> int:
        longest = len(req.prompt_ids) + max(len(s.token_ids) for s in req.seqs) + 1
        return math.ceil(longest / self.block_size) * len(req.seqs)

    def _admit(self, now: float) -> None:
        self.waiting.sort(key=lambda r: (r.priority, r.metrics.arrival_time))
        while self.waiting and len(self.running) < self.max_num_seqs:
            req = self.waiting[0]
            need = self._blocks_for(req)
            if self.used_blocks + need > self.num_blocks:
                break
            self.waiting.pop(0)
            req.blocks = need
            self.used_blocks += need
            req.metrics.first_scheduled_time = now
            full = len(req.prompt_ids) // self.block_size
            hit = 0
            for b in range(1, full + 1):
                if tuple(req.prompt_ids[: b * self.block_size]) in self.cached_prefixes:
                    hit = b * self.block_size
            for b in range(1, full + 1):
                self.cached_prefixes.add(tuple(req.prompt_ids[: b * self.block_size]))
            req.cached_tokens = hit
            self.stats.prefix_cache_queries += len(req.prompt_ids)
            self.stats.prefix_cache_hits += hit
            self.stats.prompt_tokens_total += len(req.prompt_ids)
            self.running.append(req)

    def _next_token(self, req: _Request, seq: _Seq) -> int:
        pos = len(req.prompt_ids) + len(seq.token_ids)
        if self.eos_after is not None and len(seq.token_ids) >= self.eos_after:
            return EOS
        if req.params.temperature == 0:
            return ord(FILLER[pos % len(FILLER)])
        return ord(FILLER[req.rng.randrange(len(FILLER))])

    def _advance(self, req: _Request, now: float) -> RequestOutput:
        p = req.params
        for seq in req.seqs:
            if seq.finish_reason is not None:
                continue
            tok = self._next_token(req, seq)
            seq.token_ids.append(tok)
            self.stats.generation_tokens_total += 1
            lp = -0.25 * (1 + (tok % 3))
            seq.cumulative_logprob += lp
            if p.logprobs is not None:
                top = {tok: Logprob(lp, 1, self.tokenizer.decode([tok]))}
                for k in range(p.logprobs):
                    alt = ord("a") + k if ord("a") + k != tok else ord("A")
                    top.setdefault(alt, Logprob(lp - 1.0 - k, k + 2, chr(alt)))
                seq.logprobs.append(top)
            seq.text = self.tokenizer.decode(seq.token_ids)
            if tok == EOS and not p.ignore_eos:
                seq.finish_reason = "stop"
            elif p.stop_token_ids and tok in p.stop_token_ids:
                seq.finish_reason, seq.stop_reason = "stop", tok
            elif p.stop and any(s in seq.text for s in p.stop):
                s = next(s for s in p.stop if s in seq.text)
                seq.text = seq.text[: seq.text.index(s)]
                seq.finish_reason, seq.stop_reason = "stop", s
            elif p.max_tokens is not None and len(seq.token_ids) >= p.max_tokens:
                seq.finish_reason = "length"
            elif len(req.prompt_ids) + len(seq.token_ids) >= self.max_model_len:
                seq.finish_reason = "length"
        if req.metrics.first_token_time is None:
            req.metrics.first_token_time = now
        req.metrics.last_token_time = now
        finished = all(s.finish_reason is not None for s in req.seqs)
        if finished:
            req.metrics.finished_time = now
            self.running.remove(req)
            self.used_blocks -= req.blocks
        outs = [CompletionOutput(s.index, s.text, list(s.token_ids), s.cumulative_logprob,
                                 [dict(d) for d in s.logprobs] if p.logprobs is not None else None,
                                 s.finish_reason, s.stop_reason) for s in req.seqs]
        return RequestOutput(req.request_id, req.prompt, list(req.prompt_ids), outs, finished, req.cached_tokens,
                             req.metrics)

    def _refresh(self) -> None:
        self.stats.num_running = len(self.running)
        self.stats.num_waiting = len(self.waiting)
        self.stats.num_free_blocks = self.num_blocks - self.used_blocks
        self.stats.kv_cache_usage = self.used_blocks / self.num_blocks
