"""LocalClient: an ``aisd.llm.LLMClient`` over the in-process engine, for RAG, judges and the gateway.

Synchronous callers (RAG pipelines, evaluation loops, CLI commands) get the same behaviour as the HTTP server:
the requests go through ``OpenAIServing`` (chat template, context checks, sampling params, usage with cached tokens)
to the ``AsyncLLMEngine``, whose engine thread batches them with any concurrent HTTP traffic. The client runs its own
small event loop in a daemon thread and blocks the caller on ``run_coroutine_threadsafe`` futures, so it works from
any thread, including a thread of a server whose own loop is busy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from aisd.engine.async_engine import AsyncLLMEngine
from aisd.engine.openai_serving import OpenAIServing
from aisd.llm.schema import ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse

T = TypeVar("T")


class LocalClient:
    """Chat with the in-process engine through the OpenAI request and response types."""

    def __init__(self, engine: AsyncLLMEngine, *, owns_engine: bool = False, timeout: float | None = None) -> None:
        self.engine = engine
        self._owns_engine = owns_engine  # close() stops the engine only when this client built it
        self._timeout = timeout
        self._serving = OpenAIServing(engine)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> LocalClient:
        """A client with its own engine built from ``EngineSettings`` (loaded on first use)."""
        return cls(AsyncLLMEngine.from_settings(settings), owns_engine=True)

    # ---- LLMClient ----
    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def context_window(self) -> int | None:
        self.engine.start()
        return self.engine.max_model_len

    def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        return self._run(self._serving.chat(request))

    def chat_stream(self, request: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]:
        cid, sub = self._run(self._serving.start_chat(request))
        chunks = self._serving.chat_chunks(request, cid, sub)
        try:
            while True:
                try:
                    chunk = self._run(chunks.__anext__())
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            # Leaving early (break, exception, garbage collection) aborts the request and frees its blocks.
            self._run(chunks.aclose())

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
        if self._owns_engine:
            self.engine.close()

    # ---- internals ----
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="aisd-local-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LocalClient is synchronous; do not call it from its own event loop")
        self.engine.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return future.result(self._timeout)
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: cancel, which aborts the engine request
            raise
