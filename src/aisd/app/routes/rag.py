"""Routes: RAG.

- ``POST /v1/rag/ingest``: ``{"path": "...", "glob": "*.md"}`` (a file or folder on the server's disk) or
  ``{"documents": [{"id", "text", "title", "source", "metadata"}]}``; returns the IngestReport.
- ``POST /v1/rag/query``: ``{"question", "k", "filter", "query_transform", "mode", "max_tokens", "temperature",
  "stream"}``; returns the answer with citations, sources and trace, or with ``"stream": true`` server-sent events:
  ``{"type": "step"|"sources"|"delta"|"done", ...}`` lines then ``data: [DONE]``.
- ``POST /v1/rag/retrieve``: the ranked chunks only (no LLM).
- ``GET /v1/rag/documents`` (``limit``, ``offset``) and ``DELETE /v1/rag/documents/{doc_id}``.
- ``POST /v1/rag/calibrate``: ``{"questions": [{"question", "answerable"}], "answerability": "evidence",
  "max_false_refusal": 0.2, "k": null}``; returns the calibrated spec and its rates (``aisd.rag.calibrate``).

The pipeline's work is synchronous (embedding, the LLM); it runs in the thread pool so the event loop stays free.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from aisd.core.errors import InvalidRequestError

router = APIRouter(prefix="/v1/rag", tags=["rag"])


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str
    title: str = ""
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    glob: str | None = None
    documents: list[DocumentIn] | None = None
    delete_missing: bool = True


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, le=100)
    filter: dict[str, Any] | None = None
    query_transform: str | None = None
    mode: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)
    answerability: str | None = None  # none | similarity | coverage | llm | a+b (see docs/rag.md)
    stream: bool = False
    include_trace: bool = True


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    query_transform: str | None = None


class LabelledQuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    answerable: bool


class CalibrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    questions: list[LabelledQuestionIn] = Field(min_length=1, max_length=20_000)
    answerability: str = "evidence"  # strategies to calibrate; thresholds given here are ignored
    max_false_refusal: float = Field(default=0.2, ge=0.0, lt=1.0)
    k: int | None = Field(default=None, ge=1, le=100)


def _rag(request: Request) -> Any:
    return request.app.state.services.rag


def _overrides(body: QueryRequest) -> dict[str, Any]:
    fields = ("k", "query_transform", "mode", "max_tokens", "temperature", "min_similarity", "answerability")
    return {f: getattr(body, f) for f in fields if getattr(body, f) is not None}


@router.post("/ingest")
async def ingest(body: IngestRequest, request: Request) -> dict[str, Any]:
    if (body.path is None) == (body.documents is None):
        raise InvalidRequestError("give exactly one of 'path' (a file or folder on the server) or 'documents'",
                                  param="path")
    rag = _rag(request)
    if body.path is not None:
        report = await run_in_threadpool(rag.ingest, body.path, glob=body.glob, delete_missing=body.delete_missing)
    else:
        from aisd.rag.documents import Document

        docs = [Document(id=d.id, text=d.text, source=d.source or d.id, title=d.title, metadata=d.metadata)
                for d in body.documents or []]
        report = await run_in_threadpool(rag.ingest, docs)
    return {"object": "rag.ingest", **report.to_dict()}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, default=str)}\n\n"


@router.post("/query")
async def query(body: QueryRequest, request: Request) -> Any:
    rag = _rag(request)
    overrides = _overrides(body)
    if not body.stream:
        answer = await run_in_threadpool(lambda: rag.ask(body.question, filter=body.filter, **overrides))
        out = {"object": "rag.answer", **answer.to_dict()}
        if not body.include_trace:
            out.pop("trace", None)
        return out
    # Validate before the 200 status goes out: a bad option must be a 400, not an error event mid-stream.
    events = rag.ask_stream(body.question, filter=body.filter, **overrides)
    first = await run_in_threadpool(next, events, None)

    async def stream() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield _sse(_event(first, body.include_trace))
            async for event in iterate_in_threadpool(events):
                yield _sse(_event(event, body.include_trace))
        except Exception as e:  # noqa: BLE001 - report the failure in-band; the status is already sent
            from aisd.core.errors import AisdError

            err = e.to_dict() if isinstance(e, AisdError) else {"error": {"message": str(e), "type":
                                                                          "internal_error"}}
            yield _sse({"type": "error", **err})
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(event: Any, include_trace: bool) -> dict[str, Any]:
    out = event.to_dict()
    if not include_trace and out.get("answer"):
        out["answer"].pop("trace", None)
    return out


@router.post("/retrieve")
async def retrieve(body: RetrieveRequest, request: Request) -> dict[str, Any]:
    rag = _rag(request)
    hits = await run_in_threadpool(rag.retrieve, body.question, body.k, body.filter, body.query_transform)
    return {"object": "list", "data": [
        {"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "score": h.score, "scores": h.scores,
         "text": h.chunk.text, "window": h.chunk.window, "start": h.chunk.start, "end": h.chunk.end,
         "metadata": h.chunk.metadata} for h in hits]}


@router.post("/calibrate")
async def calibrate(body: CalibrateRequest, request: Request) -> dict[str, Any]:
    from aisd.rag.calibrate import LabelledQuestion, calibrate, checker_for

    rag = _rag(request)
    checker = checker_for(rag, body.answerability)
    questions = [LabelledQuestion(q.question, q.answerable) for q in body.questions]
    report = await run_in_threadpool(calibrate, lambda q: rag.retrieve(q, body.k), checker, questions,
                                     max_false_refusal=body.max_false_refusal)
    return {"object": "rag.calibration", **report.to_dict()}


@router.get("/documents")
async def documents(request: Request, limit: int = Query(100, ge=1, le=1000),
                    offset: int = Query(0, ge=0)) -> dict[str, Any]:
    rag = _rag(request)
    records = await run_in_threadpool(rag.documents, limit, offset)
    return {"object": "list", "data": [r.to_dict() for r in records], "total": rag.state.count(),
            "limit": limit, "offset": offset}


@router.delete("/documents/{doc_id:path}")
async def delete_document(doc_id: str, request: Request) -> dict[str, Any]:
    from aisd.core.errors import NotFoundError

    deleted = await run_in_threadpool(_rag(request).delete_documents, [doc_id])
    if not deleted:
        raise NotFoundError(f"no ingested document {doc_id!r}", param="doc_id")
    return {"object": "rag.document.deleted", "id": doc_id, "deleted": True}


def health(services: Any) -> dict[str, Any]:
    if "rag" not in services.loaded():
        return {"rag": {"loaded": False}}
    try:
        return {"rag": {"loaded": True, **services.rag.stats()}}
    except Exception as e:  # noqa: BLE001 - health must answer
        return {"rag": {"loaded": True, "error": str(e)}}
