"""The caller-facing side of one in-flight request of ``AsyncLLMEngine``: its stream of outputs (``RequestStream``),
the bookkeeping the engine thread keeps for it, the async engine's serving settings and the Retry-After estimate.

The engine thread puts each ``RequestOutput`` (or an exception, or ``END`` when the request was aborted) on the
request's own ``asyncio.Queue`` through ``loop.call_soon_threadsafe``; ``RequestStream`` reads it on the caller's loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aisd.core.errors import ServiceUnavailableError


class _Aborter(Protocol):
    def abort(self, request_id: str) -> None: ...


@dataclass(frozen=True)
class AsyncEngineConfig:
    """Serving-side settings of the async engine (the model-side ones are in ``EngineConfig``)."""

    max_waiting_requests: int = 256  # admission bound: more waiting requests -> RateLimitError (HTTP 429)
    served_model_name: str | None = None  # name in /v1/models and metrics; None = the engine's model_name
    max_retry_after_s: int = 60

    def __post_init__(self) -> None:
        if self.max_waiting_requests < 1:
            raise ValueError(f"max_waiting_requests must be >= 1, got {self.max_waiting_requests}")
        if self.max_retry_after_s < 1:
            raise ValueError(f"max_retry_after_s must be >= 1, got {self.max_retry_after_s}")


@dataclass
class Tracked:
    """Frontend bookkeeping of one in-flight request (only the engine thread mutates the timing fields)."""

    request_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    arrival: float  # time.monotonic() when the caller submitted it
    first_token: float | None = None
    last_token: float | None = None
    num_tokens: int = 0
    done: bool = False


@dataclass
class NewRequest:
    tracked: Tracked
    prompt: str | list[int]
    params: Any
    priority: int
    accepted: asyncio.Future  # resolved (None or an exception) on the caller's loop once the engine took it


@dataclass
class Throughput:
    """Exponential moving average of finished requests per second, for the Retry-After estimate."""

    rate: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def finished(self, now: float) -> None:
        gap = max(now - self.last, 1e-3)
        self.last = now
        self.rate = 1.0 / gap if self.rate == 0.0 else 0.9 * self.rate + 0.1 / gap


END = object()  # queue sentinel: the request was aborted or the engine stopped


def set_future(fut: asyncio.Future, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def retry_after_seconds(num_waiting: int, finished_per_s: float, cap: int) -> int:
    """Seconds until the queue has likely drained by one slot's worth: waiting / throughput, in [1, cap]."""
    if finished_per_s <= 0:
        return 1
    return int(min(cap, max(1, math.ceil(num_waiting / finished_per_s))))


class RequestStream:
    """Outputs of one request, in order; iterate with ``async for``. Leaving the loop early aborts the request."""

    def __init__(self, engine: _Aborter, tracked: Tracked) -> None:
        self._engine = engine
        self._tracked = tracked
        self.request_id = tracked.request_id
        self.finished = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                item = await self._tracked.queue.get()
                if item is END:
                    raise ServiceUnavailableError(f"request {self.request_id} was aborted")
                if isinstance(item, BaseException):
                    raise item
                if item.finished:
                    self.finished = True
                yield item
                if self.finished:
                    return
        finally:
            if not self.finished:
                # Cancelled, disconnected or broken off by the consumer: free the request's blocks.
                self._engine.abort(self.request_id)

    async def final(self) -> Any:
        """Drain the stream and return its last (finished) output."""
        last = None
        async for out in self:
            last = out
        return last
