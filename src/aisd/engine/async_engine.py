"""AsyncLLMEngine: the synchronous ``LLMEngine`` driven by one background thread, streamed to asyncio callers.

Why a thread: ``LLMEngine.step()`` runs the model (torch releases the GIL inside its kernels) and takes from
milliseconds to seconds; running it on the event loop would freeze every HTTP connection. The engine is not
thread-safe, so only the engine thread touches it: callers hand new requests and aborts over through an inbox guarded
by a condition variable, the thread drains the inbox between steps, and each ``RequestOutput`` goes back to the
caller's own event loop with ``loop.call_soon_threadsafe`` onto a per-request ``asyncio.Queue`` (the layout of vLLM's
AsyncLLM output handler, with a thread instead of an engine-core process).

Admission control: when ``max_waiting_requests`` requests already wait for a slot, ``add_request`` raises
``RateLimitError`` carrying a ``Retry-After`` estimate, the bounded queue behind HTTP 429. A caller that stops
iterating (client disconnect, task cancellation) aborts its request, which frees its KV blocks in the next loop turn.
Per-request latencies (TTFT, inter-token, end-to-end, queue time) and engine counters go to ``aisd.engine.metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from aisd.core.errors import AisdError, ConflictError, InvalidRequestError, RateLimitError, ServiceUnavailableError
from aisd.engine.metrics import EngineMetrics
from aisd.engine.request_stream import (
    END,
    AsyncEngineConfig,
    NewRequest,
    RequestStream,
    Throughput,
    Tracked,
    retry_after_seconds,
    set_future,
)

log = logging.getLogger(__name__)


class AsyncLLMEngine:
    """Serves an ``LLMEngine`` (or anything with its interface) to asyncio code; see the module docstring."""

    def __init__(self, engine: Any, config: AsyncEngineConfig | None = None, *, load: bool = False) -> None:
        self.engine = engine
        self.config = config or AsyncEngineConfig()
        self._needs_load = load
        self._cond = threading.Condition()
        self._new: deque[NewRequest] = deque()
        self._aborts: deque[str] = deque()
        self._tracked: dict[str, Tracked] = {}  # guarded by _cond
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._dead: BaseException | None = None
        self.load_error: BaseException | None = None
        self.is_loading = False  # True while start() reads the model (for /health)
        self._stats: Any = None
        self._throughput = Throughput()
        self._metrics: EngineMetrics | None = None
        self.num_steps = 0

    # ---- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Any) -> AsyncLLMEngine:
        """Build (not load) an engine from ``aisd.app.settings.EngineSettings`` or any object with its fields."""
        from aisd.engine.config import EngineConfig
        from aisd.engine.llm_engine import LLMEngine

        cfg = EngineConfig.from_settings(settings)
        config = AsyncEngineConfig(max_waiting_requests=settings.max_waiting_requests,
                                   served_model_name=settings.served_model_name)
        return cls(LLMEngine(cfg), config, load=True)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def is_loaded(self) -> bool:
        return not self._needs_load

    @property
    def errored(self) -> BaseException | None:
        """The exception that stopped the engine loop, if one did."""
        return self._dead

    def start(self) -> None:
        """Load the model if needed and start the engine thread (idempotent, blocking: call from a thread)."""
        with self._start_lock:
            if self.load_error is not None:
                raise ServiceUnavailableError(f"the model failed to load earlier ({self.load_error}); fix it and "
                                              f"restart the server")
            if self._needs_load:
                t0 = time.perf_counter()
                self.is_loading = True
                try:
                    self.engine.load()
                except Exception as exc:
                    self.load_error = exc
                    raise
                finally:
                    self.is_loading = False
                self._needs_load = False
                log.info("engine loaded %s in %.1f s", self.model_name, time.perf_counter() - t0)
            if self._metrics is None:
                self._metrics = EngineMetrics(self.model_name)
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._stats = self.engine.get_stats()
                self._thread = threading.Thread(target=self._run, name="aisd-engine", daemon=True)
                self._thread.start()

    async def astart(self) -> None:
        """``start()`` without blocking the event loop (model loading takes seconds)."""
        if self.load_error is not None or not self.is_running or self._needs_load:
            await asyncio.to_thread(self.start)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the engine thread; in-flight requests end with ServiceUnavailableError."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._fail_all(ServiceUnavailableError("the engine is shutting down"))

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.close)

    # ---- information -----------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.config.served_model_name or str(getattr(self.engine, "model_name", "model"))

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def max_model_len(self) -> int | None:
        return getattr(self.engine, "max_model_len", None)

    def get_stats(self) -> Any:
        """The engine's stats as of the last loop turn (no lock on the engine; safe from any thread)."""
        return self._stats if self._stats is not None else self.engine.get_stats()

    def num_in_flight(self) -> int:
        with self._cond:
            return len(self._tracked)

    # ---- requests --------------------------------------------------------------------------------------------
    async def add_request(self, request_id: str | None, prompt: str | list[int], params: Any, *,
                          priority: int = 0) -> RequestStream:
        """Queue a request and wait until the engine accepted it; raises its InvalidRequestError, or
        RateLimitError when the waiting queue is full."""
        if self._dead is not None:
            raise ServiceUnavailableError(f"the engine stopped after an error: {self._dead}")
        if not self.is_running:
            await self.astart()
        request_id = request_id or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        tracked = Tracked(request_id, loop, asyncio.Queue(), time.monotonic())
        accepted: asyncio.Future = loop.create_future()
        with self._cond:
            if request_id in self._tracked:
                raise ConflictError(f"a request with id {request_id!r} is already running", param="request_id")
            stats = self.get_stats()
            waiting = int(getattr(stats, "num_waiting", 0)) + len(self._new)
            if waiting >= self.config.max_waiting_requests:
                wait = retry_after_seconds(waiting, self._throughput.rate, self.config.max_retry_after_s)
                raise RateLimitError(
                    f"the engine's waiting queue is full ({waiting} requests waiting, limit "
                    f"{self.config.max_waiting_requests}); retry after {wait} s",
                    code="queue_full", headers={"Retry-After": str(wait)})
            self._tracked[request_id] = tracked
            self._new.append(NewRequest(tracked, prompt, params, priority, accepted))
            self._cond.notify()
        try:
            await accepted
        except asyncio.CancelledError:
            self.abort(request_id)
            raise
        return RequestStream(self, tracked)

    async def generate(self, request_id: str | None, prompt: str | list[int], params: Any, *,
                       priority: int = 0) -> AsyncIterator[Any]:
        """Stream a request's ``RequestOutput`` objects (cumulative text and tokens), the last one finished."""
        stream = await self.add_request(request_id, prompt, params, priority=priority)
        async for out in stream:
            yield out

    def abort(self, request_id: str) -> None:
        """Abort a request (no-op when it already finished); its blocks are freed in the engine thread."""
        with self._cond:
            tracked = self._tracked.pop(request_id, None)
            if tracked is None:
                return
            tracked.done = True
            self._aborts.append(request_id)
            self._cond.notify()
        # Wake a consumer that may still be waiting (when someone else aborted its request).
        try:
            tracked.loop.call_soon_threadsafe(tracked.queue.put_nowait, END)
        except RuntimeError:
            pass
        if self._metrics is not None:
            self._metrics.observe_finished(time.monotonic() - tracked.arrival, None, "abort")

    # ---- the engine thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        engine = self.engine
        while True:
            with self._cond:
                while not (self._stopping or self._new or self._aborts or engine.has_unfinished_requests()):
                    self._cond.wait()
                if self._stopping:
                    return
                new = list(self._new)
                self._new.clear()
                aborts = list(self._aborts)
                self._aborts.clear()
            try:
                self._admit(new)
                for request_id in aborts:
                    engine.abort_request(request_id)
                outputs = engine.step() if engine.has_unfinished_requests() else []
                self.num_steps += 1
                self._stats = engine.get_stats()
            except Exception as exc:  # noqa: BLE001 - a failed step leaves the engine state unknown: stop serving
                log.exception("engine step failed; the engine stops serving")
                self._dead = exc
                self._fail_all(ServiceUnavailableError(f"the engine failed: {exc}"))
                return
            if self._metrics is not None:
                self._metrics.record_stats(self._stats)
            self._dispatch(outputs)

    def _admit(self, new: list[NewRequest]) -> None:
        for item in new:
            tr = item.tracked
            if tr.done:  # aborted before the engine saw it
                item.tracked.loop.call_soon_threadsafe(set_future, item.accepted, None)
                continue
            try:
                self.engine.add_request(tr.request_id, item.prompt, item.params, priority=item.priority)
            except (AisdError, ValueError, TypeError) as exc:
                with self._cond:
                    self._tracked.pop(tr.request_id, None)
                err = exc if isinstance(exc, AisdError) else InvalidRequestError(str(exc), param=_guess_param(exc))
                self._post(tr, lambda fut=item.accepted, e=err: set_future(fut, e))
                continue
            self._post(tr, lambda fut=item.accepted: set_future(fut, None))

    def _dispatch(self, outputs: list[Any]) -> None:
        now = time.monotonic()
        for out in outputs:
            with self._cond:
                tr = self._tracked.get(out.request_id)
                if tr is None:
                    continue
                if out.finished:
                    del self._tracked[out.request_id]
                    tr.done = True
            self._observe(tr, out, now)
            self._post(tr, lambda q=tr.queue, o=out: q.put_nowait(o))

    def _observe(self, tr: Tracked, out: Any, now: float) -> None:
        m = self._metrics
        produced = sum(len(c.token_ids) for c in out.outputs)
        if produced > tr.num_tokens:
            if tr.first_token is None:
                tr.first_token = now
                if m is not None:
                    m.observe_first_token(now - tr.arrival)
            elif m is not None and tr.last_token is not None:
                m.observe_inter_token(now - tr.last_token)
            tr.last_token = now
            tr.num_tokens = produced
        if out.finished:
            self._throughput.finished(now)
            if m is not None:
                rm = getattr(out, "metrics", None)
                queue_s = None
                if rm is not None and getattr(rm, "first_scheduled_time", None) is not None:
                    queue_s = rm.first_scheduled_time - rm.arrival_time
                reasons = [c.finish_reason for c in out.outputs if c.finish_reason]
                m.observe_finished(now - tr.arrival, queue_s, reasons[0] if reasons else "stop")

    def _post(self, tr: Tracked, fn: Callable[[], None]) -> None:
        try:
            tr.loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the caller's loop is closed: nobody listens any more
            self.abort(tr.request_id)

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            tracked = list(self._tracked.values())
            self._tracked.clear()
            pending = list(self._new)
            self._new.clear()
        for item in pending:
            self._post(item.tracked, lambda fut=item.accepted: set_future(fut, exc))
        for tr in tracked:
            tr.done = True
            self._post(tr, lambda q=tr.queue: q.put_nowait(exc))


def _guess_param(exc: BaseException) -> str | None:
    """The sampling field a ValueError from ``SamplingParams`` names, if its message starts with one."""
    text = str(exc)
    head = text.split(" ", 1)[0].strip(":'\"`")
    return head if head.isidentifier() else None
