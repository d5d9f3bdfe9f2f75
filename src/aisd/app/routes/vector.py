"""Routes: the vector database under /v1/collections.

    POST   /v1/collections                          create (409 if the name exists)
    GET    /v1/collections                          list with status
    POST   /v1/collections/advise                   index advice for a count / dim / memory budget / latency target
    GET    /v1/collections/{name}                   info (404 if unknown)
    DELETE /v1/collections/{name}                   drop
    POST   /v1/collections/{name}/points            upsert [{id, vector, payload}] (400 naming the field on bad input)
    POST   /v1/collections/{name}/points/get        fetch points by id
    POST   /v1/collections/{name}/points/delete     delete by id
    POST   /v1/collections/{name}/scroll            page through points (optionally filtered)
    POST   /v1/collections/{name}/search            top-k for one vector or a batch, with filter, params, explain
    POST   /v1/collections/{name}/payload-index     index a payload field (keyword | numeric)
    POST   /v1/collections/{name}/compact           reclaim deleted space; reports bytes
Handlers are sync (FastAPI runs them in its thread pool) because FAISS calls block and release the GIL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from aisd.core.errors import InvalidRequestError

router = APIRouter(prefix="/v1/collections", tags=["vector"])


class CreateCollection(BaseModel):
    name: str
    dim: int = Field(ge=1, le=65_536)
    metric: str = "cosine"
    index: str | None = None  # default: settings.vector.default_index
    params: dict[str, Any] = Field(default_factory=dict)
    auto_threshold: int | None = Field(default=None, ge=1, description="default: settings.vector.auto_threshold")
    memory_budget_bytes: int | None = Field(default=None, gt=0)
    latency_target_ms: float | None = Field(default=None, gt=0)
    payload_indexes: dict[str, str] = Field(default_factory=dict, description="field -> keyword | numeric")


class PointIn(BaseModel):
    id: str | int
    vector: list[float]
    payload: dict[str, Any] | None = None


class Upsert(BaseModel):
    points: list[PointIn] = Field(min_length=1)


class Ids(BaseModel):
    ids: list[str | int] = Field(min_length=1)
    with_vectors: bool = False


class Search(BaseModel):
    vector: list[float] | None = None
    vectors: list[list[float]] | None = Field(default=None, description="a batch of queries instead of `vector`")
    k: int = Field(default=10, ge=1, le=10_000)
    filter: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    with_payload: bool = True
    with_vectors: bool = False
    explain: bool = False


class Scroll(BaseModel):
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int | None = Field(default=None, ge=0)
    filter: dict[str, Any] | None = None
    with_vectors: bool = False


class PayloadIndexIn(BaseModel):
    field: str
    kind: str = "keyword"


class AdviseIn(BaseModel):
    count: int = Field(ge=0)
    dim: int = Field(ge=1)
    memory_budget_bytes: int | None = Field(default=None, gt=0)
    latency_target_ms: float | None = Field(default=None, gt=0)


def _store(request: Request) -> Any:
    return request.app.state.services.vector_store


def _collection(request: Request, name: str) -> Any:
    return _store(request).get_collection(name)


@router.post("", status_code=201)
def create_collection(body: CreateCollection, request: Request) -> dict[str, Any]:
    services = request.app.state.services
    store = services.vector_store
    col = store.create_collection(body.name, dim=body.dim, metric=body.metric,
                                  index=body.index or services.settings.vector.default_index, params=body.params,
                                  auto_threshold=body.auto_threshold or services.settings.vector.auto_threshold,
                                  memory_budget_bytes=body.memory_budget_bytes,
                                  latency_target_ms=body.latency_target_ms)
    for field, kind in body.payload_indexes.items():
        col.create_payload_index(field, kind)
    return col.info().to_dict()


@router.get("")
def list_collections(request: Request) -> dict[str, Any]:
    store = _store(request)
    return {"object": "list", "data": [store.get_collection(n).info().to_dict() for n in store.list_collections()]}


@router.post("/advise")
def advise_index(body: AdviseIn) -> dict[str, Any]:
    from aisd.vector import advise

    return advise(body.count, body.dim, memory_budget_bytes=body.memory_budget_bytes,
                  latency_target_ms=body.latency_target_ms).to_dict()


@router.get("/{name}")
def collection_info(name: str, request: Request) -> dict[str, Any]:
    return _collection(request, name).info().to_dict()


@router.delete("/{name}")
def drop_collection(name: str, request: Request) -> dict[str, Any]:
    _store(request).drop_collection(name)
    return {"name": name, "deleted": True}


@router.post("/{name}/points")
def upsert_points(name: str, body: Upsert, request: Request) -> dict[str, Any]:
    col = _collection(request, name)
    try:
        res = col.upsert([p.id for p in body.points], [p.vector for p in body.points],
                         [p.payload for p in body.points])
    except InvalidRequestError as e:
        field = {"vectors": "points.vector", "ids": "points.id", "payloads": "points.payload"}.get(e.param or "")
        if field is None:
            raise
        raise InvalidRequestError(e.message.replace("vectors", "points.vector", 1), param=field) from None
    return {"inserted": res.inserted, "updated": res.updated, "lsn": res.lsn, "count": col.count()}


@router.post("/{name}/points/get")
def get_points(name: str, body: Ids, request: Request) -> dict[str, Any]:
    points = _collection(request, name).get(body.ids, with_vectors=body.with_vectors)
    return {"points": [p.to_dict() for p in points]}


@router.post("/{name}/points/delete")
def delete_points(name: str, body: Ids, request: Request) -> dict[str, Any]:
    col = _collection(request, name)
    res = col.delete(body.ids)
    return {"deleted": res.deleted, "missing": res.missing, "lsn": res.lsn, "count": col.count()}


@router.post("/{name}/scroll")
def scroll_points(name: str, body: Scroll, request: Request) -> dict[str, Any]:
    page = _collection(request, name).scroll(body.limit, body.offset, body.filter, with_vectors=body.with_vectors)
    return {"points": [p.to_dict() for p in page.points], "next_offset": page.next_offset}


@router.post("/{name}/search")
def search(name: str, body: Search, request: Request) -> dict[str, Any]:
    col = _collection(request, name)
    if (body.vector is None) == (body.vectors is None):
        raise InvalidRequestError("give exactly one of `vector` (one query) or `vectors` (a batch)", param="vector")
    if body.vector is not None:
        hits = col.search(body.vector, k=body.k, filter=body.filter, params=body.params,
                          with_payload=body.with_payload, with_vectors=body.with_vectors)
        out: dict[str, Any] = {"hits": [h.to_dict() for h in hits]}
    else:
        if not body.vectors:
            raise InvalidRequestError("`vectors` must not be empty", param="vectors")
        batch = col.search_batch(body.vectors, k=body.k, filter=body.filter, params=body.params,
                                 with_payload=body.with_payload, with_vectors=body.with_vectors)
        out = {"results": [[h.to_dict() for h in hits] for hits in batch]}
    if body.explain:
        out["plan"] = col.explain(body.filter, body.k, body.params).to_dict()
    return out


@router.post("/{name}/payload-index")
def create_payload_index(name: str, body: PayloadIndexIn, request: Request) -> dict[str, Any]:
    col = _collection(request, name)
    col.create_payload_index(body.field, body.kind)
    return {"payload_indexes": col.info().payload_indexes}


@router.post("/{name}/compact")
def compact(name: str, request: Request) -> dict[str, Any]:
    rep = _collection(request, name).compact()
    return {"bytes_before": rep.bytes_before, "bytes_after": rep.bytes_after, "bytes_reclaimed": rep.bytes_reclaimed,
            "points_removed": rep.points_removed, "seconds": round(rep.seconds, 4)}


def health(services: Any) -> dict[str, Any]:
    if "vector_store" not in services.__dict__:  # do not open the store just for a health check
        return {"vector": {"status": "not loaded"}}
    store = services.vector_store
    return {"vector": {"status": "ok", "path": str(store.path), "collections": len(store.list_collections())}}
