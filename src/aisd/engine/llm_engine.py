"""LLMEngine: the synchronous engine loop (vLLM's LLMEngine): add_request / step / abort_request.

One ``step()`` = schedule (continuous batching, chunked prefill, preemption) -> one forward pass over the flattened
batch -> sample -> append tokens, detokenize, check stop conditions -> RequestOutputs of the requests that moved.
``add_request`` and ``abort_request`` are thread-safe: they queue work that the next ``step()`` applies, so an async
front end can call them while a step runs in a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

from aisd.core.errors import InvalidRequestError, ServiceUnavailableError, UnsupportedError
from aisd.engine.block_manager import BlockManager
from aisd.engine.config import EngineConfig
from aisd.engine.loader import ModelConfig, load_model
from aisd.engine.model_runner import DTYPES, ModelRunner, num_blocks_for_memory
from aisd.engine.models.llama import LlamaModel
from aisd.engine.outputs import CompletionOutput, EngineStats, Logprob, RequestMetrics, RequestOutput
from aisd.engine.sampler import SampledToken, Sampler
from aisd.engine.sampling import SamplingParams
from aisd.engine.scheduler import PrefillCost, Scheduler
from aisd.engine.sequence import Request, Sequence, SequenceStatus
from aisd.engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._loaded = False
        self._lock = threading.Lock()
        self._pending_adds: deque[Request] = deque()
        self._pending_aborts: deque[str] = deque()
        self._known_ids: set[str] = set()
        self.requests: dict[str, Request] = {}
        self._order = 0
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._finished_total = 0

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: EngineConfig) -> LLMEngine:
        engine = cls(config)
        engine.load()
        return engine

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> LLMEngine:
        return cls.from_config(EngineConfig.from_settings(settings, **overrides))

    def load(self) -> LLMEngine:
        """Read the model, build tokenizer, model, KV cache, block manager and scheduler. Idempotent."""
        if self._loaded:
            return self
        cfg = self.config
        if cfg.device == "cuda":
            raise UnsupportedError("device='cuda': this engine build runs on CPU only (device='cpu' or 'auto')",
                                   param="device")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(cfg.num_threads or cores)
        t0 = time.perf_counter()
        loaded = load_model(cfg.model)
        if loaded.format == "gguf":
            self.tokenizer = Tokenizer.from_gguf_metadata(loaded.metadata)
        else:
            self.tokenizer = Tokenizer.from_pretrained_dir(loaded.source, eos_token_id=loaded.config.eos_token_id)
        mc: ModelConfig = loaded.config
        self.model_config = mc
        model_len = cfg.max_model_len or mc.max_position_embeddings
        if cfg.num_gpu_blocks is not None:
            num_blocks = cfg.num_gpu_blocks
        else:
            num_blocks = num_blocks_for_memory(mc, cfg.block_size, cfg.kv_cache_memory_gb, cfg.dtype)
        self.num_blocks = num_blocks
        self.max_model_len = min(model_len, num_blocks * cfg.block_size)
        if self.max_model_len < model_len:
            log.warning("max_model_len capped to %d tokens: the KV cache holds %d blocks of %d", self.max_model_len,
                        num_blocks, cfg.block_size)
        self.model = LlamaModel(mc, loaded.weights, DTYPES[cfg.dtype], max_positions=self.max_model_len)
        del loaded
        self.block_manager = BlockManager(num_blocks, cfg.block_size, cfg.enable_prefix_caching)
        cost = PrefillCost.for_llama(mc.hidden_size, mc.intermediate_size, mc.num_layers, mc.num_heads,
                                     mc.num_kv_heads, mc.head_dim)
        self.scheduler = Scheduler(cfg, self.block_manager, self.max_model_len, cost)
        self.runner = ModelRunner(self.model, num_blocks, cfg.block_size, cfg.dtype, cfg.device)
        self.sampler = Sampler(self.tokenizer.eos_token_id)
        self._rng = torch.Generator().manual_seed(cfg.seed)
        self._loaded = True
        log.info("engine loaded %s (%s, %d layers) in %.1fs: %d KV blocks x %d tokens, max_model_len %d, %d threads",
                 self.model_name, mc.architecture, mc.num_layers, time.perf_counter() - t0, num_blocks,
                 cfg.block_size, self.max_model_len, torch.get_num_threads())
        return self

    @property
    def model_name(self) -> str:
        if self.config.served_model_name:
            return self.config.served_model_name
        from aisd import assets

        if assets.is_bundled(self.config.model):
            return assets.canonical_name(self.config.model)
        p = Path(self.config.model)
        return p.stem if p.suffix == ".gguf" else p.name

    def _require_loaded(self) -> None:
        if not self._loaded:
            raise ServiceUnavailableError("the engine is not loaded yet; call load() first")

    # ---- requests -----------------------------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams | None = None, *,
                    priority: int = 0, arrival_time: float | None = None) -> None:
        """Queue a request; raises InvalidRequestError (with ``param``) for anything that cannot run."""
        self._require_loaded()
        params = params or SamplingParams()
        if not isinstance(params, SamplingParams):
            raise InvalidRequestError("params must be a SamplingParams", param="params")
        if isinstance(prompt, str):
            text: str | None = prompt
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, list | tuple) and all(isinstance(t, int) for t in prompt):
            text, ids = None, list(prompt)
        else:
            raise InvalidRequestError("prompt must be a string or a list of token ids", param="prompt")
        if not ids:
            raise InvalidRequestError("prompt is empty (it must contain at least one token)", param="prompt")
        vocab = self.model_config.vocab_size
        if any(t < 0 or t >= vocab for t in ids):
            raise InvalidRequestError(f"prompt token ids must be in [0, {vocab})", param="prompt")
        if len(ids) >= self.max_model_len:
            raise InvalidRequestError(f"prompt has {len(ids)} tokens but max_model_len is {self.max_model_len}: "
                                      f"shorten it (at least one token must be left to generate)", param="prompt")
        if not self.config.enable_chunked_prefill and len(ids) > self.config.max_num_batched_tokens:
            raise InvalidRequestError(f"prompt has {len(ids)} tokens but chunked prefill is off and "
                                      f"max_num_batched_tokens is {self.config.max_num_batched_tokens}",
                                      param="prompt")
        if params.logprobs is not None and params.logprobs > self.config.max_logprobs:
            raise InvalidRequestError(f"logprobs must be <= {self.config.max_logprobs}", param="logprobs")
        now = time.time() if arrival_time is None else arrival_time
        with self._lock:
            if request_id in self._known_ids:
                raise InvalidRequestError(f"request id {request_id!r} is already in use", param="request_id")
            self._known_ids.add(request_id)
            self._order += 1
            req = Request(request_id, text, ids, params, priority, now, self._order,
                          metrics=RequestMetrics(arrival_time=now))
            self._pending_adds.append(req)

    def abort_request(self, request_id: str | list[str]) -> None:
        """Cancel a request (all its n sequences) and free its blocks at the next step; unknown ids are ignored."""
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        with self._lock:
            for rid in ids:
                if rid in self._known_ids:
                    self._pending_aborts.append(rid)

    def has_unfinished_requests(self) -> bool:
        with self._lock:
            if self._pending_adds or self._pending_aborts:
                return True
        return bool(self._loaded and self.scheduler.has_unfinished())

    def get_num_unfinished_requests(self) -> int:
        with self._lock:
            return len(self._known_ids)

    def _new_generator(self, params: SamplingParams, index: int) -> torch.Generator:
        if params.seed is not None:
            seed = (params.seed * 1_000_003 + index) % (2**63)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._rng))
        return torch.Generator().manual_seed(seed)

    def _drain_pending(self, outputs: list[RequestOutput]) -> None:
        with self._lock:
            adds, self._pending_adds = list(self._pending_adds), deque()
            aborts, self._pending_aborts = list(self._pending_aborts), deque()
        for req in adds:
            seq = Sequence(req, req.prompt_token_ids, 0)
            seq.generator = self._new_generator(req.params, 0)
            req.seqs.append(seq)
            self.requests[req.request_id] = req
            self.scheduler.add(seq)
        for rid in aborts:
            req = self.requests.get(rid)
            if req is None or req.aborted:
                continue
            req.aborted = True
            for seq in req.seqs:
                if not seq.is_finished:
                    seq.finish_reason = "abort"
                    self.scheduler.finish(seq)
            req.forked = True
            outputs.append(self._finish_request(req))
            log.info("aborted request %s", rid)

    # ---- the loop -----------------------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """One scheduler iteration; returns outputs of requests that produced tokens, finished or were aborted."""
        self._require_loaded()
        outputs: list[RequestOutput] = []
        self._drain_pending(outputs)
        sched = self.scheduler.schedule()
        if sched.is_empty:
            return outputs
        now = time.time()
        for item in sched.scheduled:
            m = item.seq.request.metrics
            if m is not None and m.first_scheduled_time is None:
                m.first_scheduled_time = now
        result = self.runner.execute(sched.scheduled)
        for item in sched.scheduled:
            item.seq.num_computed_tokens += item.num_new_tokens
            self.block_manager.register_full_blocks(item.seq)

        rows: list[list[Sequence]] = []
        for item in result.sample_items:
            seq = item.seq
            req = seq.request
            if req.params.n > 1 and not req.forked:
                children = []
                for i in range(1, req.params.n):
                    child = Sequence(req, req.prompt_token_ids, i)
                    child.generator = self._new_generator(req.params, i)
                    child.num_cached_tokens = seq.num_cached_tokens
                    children.append(child)
                rows.append([seq, *children])
            else:
                rows.append([seq])
        sampled = self.sampler(result.logits, rows) if rows else []

        now = time.time()
        touched: dict[str, Request] = {}
        copies = []
        for seqs, toks in zip(rows, sampled, strict=True):
            req = seqs[0].request
            if req.params.n > 1 and not req.forked:
                req.forked = True
                parent = seqs[0]
                for child in seqs[1:]:
                    req.seqs.append(child)
                    copy = self.block_manager.fork(parent, child)
                    if copy is False:  # no free block for the copy: the child recomputes its prompt later
                        child.num_computed_tokens = 0
                        child.block_table = []
                        self.scheduler.add(child)
                    else:
                        if copy is not None:
                            copies.append(copy)
                        child.status = SequenceStatus.RUNNING
                        self.scheduler.running.append(child)
            if req.metrics is not None:
                if req.metrics.first_token_time is None:
                    req.metrics.first_token_time = now
                    self._prompt_tokens_total += req.num_prompt_tokens
                req.metrics.last_token_time = now
            for seq, tok in zip(seqs, toks, strict=True):
                self._append_token(seq, tok)
            touched[req.request_id] = req
        self.runner.copy_blocks(copies)
        for req in touched.values():
            if req.is_finished:
                outputs.append(self._finish_request(req))
            else:
                outputs.append(self._make_output(req))
        return outputs

    def _append_token(self, seq: Sequence, tok: SampledToken) -> None:
        p = seq.params
        seq.token_ids.append(tok.token_id)
        self._generation_tokens_total += 1
        if p.logprobs is not None:
            entry = {tok.token_id: Logprob(tok.logprob, tok.rank, self.tokenizer.decode([tok.token_id], False))}
            for rank, (tid, lp) in enumerate(tok.top or [], start=1):
                if tid not in entry:
                    entry[tid] = Logprob(lp, rank, self.tokenizer.decode([tid], False))
            seq.logprobs.append(entry)
            seq.cumulative_logprob += tok.logprob or 0.0
        old_len = len(seq.output_text)
        seq.output_text = self.tokenizer.decode(seq.output_token_ids, p.skip_special_tokens)
        reason, stop_reason = None, None
        n_out = seq.num_output_tokens
        if n_out >= p.min_tokens:
            if not p.ignore_eos and tok.token_id == self.tokenizer.eos_token_id:
                reason = "stop"
            elif tok.token_id in p.stop_token_ids:
                reason, stop_reason = "stop", tok.token_id
            elif p.stop:
                start = max(0, old_len - max(len(s) for s in p.stop))
                hits = [(i, s) for s in p.stop if (i := seq.output_text.find(s, start)) >= 0]
                if hits:
                    idx, s = min(hits)
                    seq.output_text = seq.output_text[:idx + (len(s) if p.include_stop_str_in_output else 0)]
                    reason, stop_reason = "stop", s
        if reason is None and ((p.max_tokens is not None and n_out >= p.max_tokens)
                               or seq.num_tokens >= self.max_model_len):
            reason = "length"
        if reason is not None:
            seq.finish_reason, seq.stop_reason = reason, stop_reason
            self.scheduler.finish(seq)

    def _visible_text(self, seq: Sequence) -> str:
        """Text safe to stream: hold back an incomplete UTF-8 character and a possible partial stop string."""
        text = seq.output_text
        if seq.is_finished:
            return text
        hold = max((len(s) - 1 for s in seq.params.stop), default=0)
        end = len(text) - hold
        while end > 0 and text[end - 1] == "\ufffd":
            end -= 1
        end = max(end, seq.emitted_text_len)
        seq.emitted_text_len = end
        return text[:end]

    def _make_output(self, req: Request) -> RequestOutput:
        outs = [CompletionOutput(index=s.index, text=self._visible_text(s), token_ids=list(s.output_token_ids),
                                 cumulative_logprob=s.cumulative_logprob if s.params.logprobs is not None else None,
                                 logprobs=list(s.logprobs) if s.params.logprobs is not None else None,
                                 finish_reason=s.finish_reason, stop_reason=s.stop_reason)
                for s in sorted(req.seqs, key=lambda s: s.index)]
        return RequestOutput(req.request_id, req.prompt, req.prompt_token_ids, outs, req.is_finished or req.aborted,
                             req.seqs[0].num_cached_tokens if req.seqs else 0, req.metrics)

    def _finish_request(self, req: Request) -> RequestOutput:
        if req.metrics is not None:
            req.metrics.finished_time = time.time()
        self.requests.pop(req.request_id, None)
        with self._lock:
            self._known_ids.discard(req.request_id)
        self._finished_total += 1
        return self._make_output(req)

    # ---- stats --------------------------------------------------------------------------------------------------
    def reset_prefix_cache(self) -> bool:
        """Drop the prefix cache (e.g. between benchmark runs of the same prompts); False while requests run."""
        self._require_loaded()
        return self.block_manager.reset_prefix_cache()

    def get_stats(self) -> EngineStats:
        self._require_loaded()
        bm = self.block_manager
        running = {s.request.request_id for s in self.scheduler.running}
        with self._lock:
            pending = len(self._pending_adds)
        waiting = {s.request.request_id for s in self.scheduler.waiting} - running
        return EngineStats(num_running=len(running), num_waiting=len(waiting) + pending, kv_cache_usage=bm.usage,
                           prefix_cache_queries=bm.prefix_cache_queries, prefix_cache_hits=bm.prefix_cache_hits,
                           num_preemptions=self.scheduler.num_preemptions,
                           prompt_tokens_total=self._prompt_tokens_total,
                           generation_tokens_total=self._generation_tokens_total, num_free_blocks=bm.num_free_blocks,
                           num_total_blocks=bm.num_blocks, num_requests_finished=self._finished_total)
