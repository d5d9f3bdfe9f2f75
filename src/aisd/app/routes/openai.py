"""Routes: engine (OpenAI-compatible ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``).

Thin HTTP glue over ``aisd.engine.openai_serving.OpenAIServing``: pydantic validates the body (a bad field is a 400
naming it), errors raised before the first byte become OpenAI-shaped error bodies, streaming answers are server-sent
events ending with ``data: [DONE]``. A client that disconnects cancels its engine requests (and frees their KV blocks)
both for streams and for plain responses: a watcher polls the connection while the engine works, as vLLM's
``with_cancellation`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from aisd.core.errors import AisdError
from aisd.llm.schema import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelList,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["engine"])
T = TypeVar("T")

DISCONNECT_POLL_S = 0.2


def _aliases(services: Any) -> tuple[str, ...]:
    """Names a request may use for the served model: the configured name and the bundled model's aliases."""
    from aisd.assets import ALIASES, canonical_name, is_bundled

    configured = services.settings.engine.model
    names = {configured}
    if is_bundled(configured):
        canon = canonical_name(configured)
        names |= {canon} | {alias for alias, target in ALIASES.items() if target == canon}
    return tuple(sorted(names))


async def _serving(request: Request) -> Any:
    from aisd.engine.openai_serving import OpenAIServing

    services = request.app.state.services
    engine = services.engine
    await engine.astart()
    return OpenAIServing(engine, aliases=_aliases(services))


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; cancel it (which aborts its engine requests) if the client goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                log.info("client disconnected; request cancelled")
                return Response(status_code=499)  # type: ignore[return-value]  # nginx's "client closed request"

    finally:
        if not task.done():
            task.cancel()


def _sse(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump_json() if isinstance(obj, BaseModel) else json.dumps(obj)
    return f"data: {data}\n\n"


def _event_stream(request: Request, chunks: AsyncIterator[BaseModel], on_disconnect: Any) -> StreamingResponse:
    """SSE body: every chunk, then ``[DONE]``; an error after the headers went out becomes an error event."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(DISCONNECT_POLL_S)
            if await request.is_disconnected():
                on_disconnect()
                return

    async def body() -> AsyncIterator[str]:
        watcher = asyncio.create_task(watch())
        try:
            async for chunk in chunks:
                yield _sse(chunk)
            yield "data: [DONE]\n\n"
        except AisdError as exc:
            yield _sse(exc.to_dict())
            yield "data: [DONE]\n\n"
        finally:
            watcher.cancel()
            await chunks.aclose()  # type: ignore[attr-defined]
            on_disconnect()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The served model (one engine per server), with its context length."""
    return (await _serving(request)).models()


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """OpenAI chat completions; ``stream: true`` answers with server-sent events."""
    serving = await _serving(request)
    if not body.stream:
        return await _unless_disconnected(request, serving.chat(body))
    cid, sub = await serving.start_chat(body)
    return _event_stream(request, serving.chat_chunks(body, cid, sub), sub.close)


@router.post("/v1/completions", response_model=CompletionResponse)
async def completions(body: CompletionRequest, request: Request) -> Any:
    """OpenAI (legacy) text completions; ``prompt`` may be a string, token ids or a batch of either."""
    serving = await _serving(request)
    if not body.stream:
        return await _unless_disconnected(request, serving.completion(body))
    cid, prompts, sub = await serving.start_completion(body)
    return _event_stream(request, serving.completion_chunks(body, cid, prompts, sub), sub.close)


# ---- lifecycle hooks (called by aisd.app.server) -------------------------------------------------------------------
async def startup(services: Any) -> None:
    """Load the model before serving when ``engine.load_on_startup``; a failure is logged and reported by /health
    and by every /v1 call (503), while the other systems' routes keep working."""
    if not services.settings.engine.load_on_startup:
        return
    try:
        await services.engine.astart()
    except Exception as exc:  # noqa: BLE001 - the server still serves RAG, vector, features ...
        log.error("the engine could not start: %s", exc)


async def shutdown(services: Any) -> None:
    engine = services.__dict__.get("engine")
    if engine is not None:
        await engine.shutdown()


def health(services: Any) -> dict[str, Any]:
    engine = services.__dict__.get("engine")
    if engine is None:
        return {"engine": {"status": "not loaded"}}
    if engine.errored is not None or engine.load_error is not None:
        return {"engine": {"status": "error", "model": services.settings.engine.model,
                           "error": str(engine.errored or engine.load_error)}}
    if not engine.is_running:
        return {"engine": {"status": "loading" if engine.is_loading else "not loaded",
                           "model": services.settings.engine.model}}
    stats = engine.get_stats()
    return {"engine": {"status": "ready", "model": engine.model_name, "max_model_len": engine.max_model_len,
                       "num_running": stats.num_running, "num_waiting": stats.num_waiting,
                       "kv_cache_usage": round(float(stats.kv_cache_usage), 4),
                       "num_free_blocks": stats.num_free_blocks, "num_total_blocks": stats.num_total_blocks}}
