"""Routes: ``POST /v1/embeddings`` (OpenAI shape) from the local embedder (bundled all-MiniLM-L6-v2 by default).

``input`` is a string or a list of up to 2,048 strings; ``encoding_format`` ``float`` or ``base64`` (little-endian
float32, what the OpenAI SDK decodes); ``dimensions`` must equal the model's (MiniLM is not a Matryoshka model, so
truncating would silently degrade it). Vectors are L2-normalised. Embedding runs in a worker thread so the event
loop keeps serving other requests.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from aisd.core.errors import InvalidRequestError, ModelNotFoundError
from aisd.llm.schema import EmbeddingData, EmbeddingRequest, EmbeddingResponse, Usage

router = APIRouter(tags=["embeddings"])

MAX_INPUTS = 2048


def _served_names(services: Any, embedder: Any) -> set[str]:
    from aisd.assets import ALIASES, canonical_name, is_bundled

    names = {embedder.model_name, services.settings.embed.model}
    if services.settings.embed.remote_model:
        names.add(services.settings.embed.remote_model)
    for n in list(names):
        if is_bundled(n):
            canon = canonical_name(n)
            names |= {canon} | {a for a, t in ALIASES.items() if t == canon}
    return names


def _inputs(body: EmbeddingRequest) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise InvalidRequestError("input must be a non-empty string or list of strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidRequestError(f"input has {len(texts)} items; at most {MAX_INPUTS} per request", param="input")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InvalidRequestError(f"input[{i}] is empty; every input must be non-empty text", param="input")
    return texts


@router.post("/v1/embeddings", response_model=EmbeddingResponse)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    services = request.app.state.services
    texts = _inputs(body)
    embedder = await run_in_threadpool(lambda: services.embedder)
    names = _served_names(services, embedder)
    if body.model is not None and body.model not in names:
        raise ModelNotFoundError(f"model {body.model!r} is not served here; embeddings come from "
                                 f"{embedder.model_name!r}", param="model")
    dim = await run_in_threadpool(lambda: embedder.dim)
    if body.dimensions is not None and body.dimensions != dim:
        raise InvalidRequestError(f"dimensions={body.dimensions} is not supported: {embedder.model_name} makes "
                                  f"{dim}-d vectors", param="dimensions")

    def work() -> tuple[np.ndarray, int]:
        vecs = embedder.embed(texts)
        return vecs, sum(embedder.count_tokens(t) for t in texts)

    vecs, tokens = await run_in_threadpool(work)
    data = []
    for i, v in enumerate(vecs):
        emb: list[float] | str
        if body.encoding_format == "base64":
            emb = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
        else:
            emb = v.astype(np.float32).tolist()
        data.append(EmbeddingData(index=i, embedding=emb))
    return EmbeddingResponse(data=data, model=body.model or embedder.model_name,
                             usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def health(services: Any) -> dict[str, Any]:
    emb = services.__dict__.get("embedder")
    if emb is None:
        return {"embeddings": {"loaded": False, "model": services.settings.embed.model}}
    info: dict[str, Any] = {"loaded": True, "model": emb.model_name}
    stats = getattr(emb, "stats", None)
    if stats is not None:
        try:
            s = stats()
            info["cache"] = {"hits": s.hits, "misses": s.misses, "hit_rate": round(s.hit_rate, 4),
                             "entries": s.entries}
        except Exception:  # noqa: BLE001 - health must answer even if the cache file is unreadable
            info["cache"] = {"error": "unreadable"}
    return {"embeddings": info}
