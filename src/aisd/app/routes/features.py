"""Routes: feature store (/v1/features/...).

``POST /v1/features/online`` takes Feast's feature-server body (``features`` or ``feature_service``, ``entities`` as
columns) and answers in its shape: ``metadata.feature_names`` then one result per column with values, statuses and
event timestamps. Type mismatches and unknown features or entities are 400 / 404 errors naming them; nothing is
written by a failed push. Handlers are plain ``def`` so FastAPI runs them in its thread pool (SQLite and DuckDB calls
block).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from aisd.core.errors import InvalidRequestError

router = APIRouter(prefix="/v1/features", tags=["features"])


class OnlineRequest(BaseModel):
    features: list[str] | None = Field(default=None, description="'view:feature' references")
    feature_service: str | None = Field(default=None, description="a feature service name, instead of features")
    entities: dict[str, list[Any]] = Field(description="join key -> values, one per row (columns)")
    request_data: dict[str, list[Any]] = Field(default_factory=dict, description="on-demand views' request fields")
    full_feature_names: bool = False


class PushRequest(BaseModel):
    push_source_name: str
    df: dict[str, list[Any]] = Field(description="column -> values; timestamps as ISO-8601 strings or epoch seconds")
    to: str = "online"


class MaterializeRequest(BaseModel):
    start_date: str | float | None = Field(default=None, description="omit for incremental")
    end_date: str | float | None = Field(default=None, description="default: now")
    feature_views: list[str] | None = None


def _store(request: Request) -> Any:
    return request.app.state.services.feature_store


def _features(store: Any, body: OnlineRequest) -> Any:
    if (body.features is None) == (body.feature_service is None):
        raise InvalidRequestError("give exactly one of 'features' or 'feature_service'", param="features")
    return store.get_feature_service(body.feature_service) if body.feature_service else body.features


@router.post("/online")
def get_online_features(body: OnlineRequest, request: Request) -> Response:
    """Latest feature values per entity row, with statuses (PRESENT, NULL_VALUE, NOT_FOUND, EXPIRED) and event
    times, in the Feast feature server's shape."""
    store = _store(request)
    overlap = sorted(set(body.entities) & set(body.request_data))
    if overlap:
        raise InvalidRequestError(f"{overlap} given both as entities and request_data", param="request_data")
    rows = {**body.entities, **body.request_data}
    resp = store.get_online_features(_features(store, body), rows, full_feature_names=body.full_feature_names)
    # Serialised directly: FastAPI's jsonable_encoder walks every value and costs more than the read itself at
    # batch 100 x 250 features.
    return Response(orjson.dumps(resp.to_feast_json()), media_type="application/json")


def _view_json(v: Any, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name, "kind": kind, "features": [{"name": f.name, "dtype": str(f.dtype)}
                                                                    for f in (v.features if kind == "feature_view"
                                                                              else v.schema)]}
    if kind == "feature_view":
        out.update({"entities": [e.name for e in v.entities], "join_keys": v.join_keys, "ttl_seconds": v.ttl_seconds,
                    "online": v.online, "source": v.source.to_spec()})
    else:
        out["sources"] = v.to_spec()["sources"]
    return out


@router.get("/views")
def list_views(request: Request) -> dict[str, Any]:
    store = _store(request)
    data = [_view_json(v, "feature_view") for v in store.list_feature_views()]
    data += [_view_json(v, "on_demand_feature_view") for v in store.list_on_demand_feature_views()]
    return {"object": "list", "data": data}


@router.get("/views/{name}")
def get_view(name: str, request: Request) -> dict[str, Any]:
    store = _store(request)
    odfvs = {o.name: o for o in store.list_on_demand_feature_views()}
    if name in odfvs:
        return _view_json(odfvs[name], "on_demand_feature_view")
    return _view_json(store.get_feature_view(name), "feature_view")


@router.get("/services")
def list_services(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [{"name": s.name, "description": s.description, "features": s.feature_refs()}
                                       for s in _store(request).list_feature_services()]}


@router.get("/entities")
def list_entities(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [{"name": e.name, "join_keys": list(e.join_keys),
                                        "value_type": str(e.value_type) if e.value_type else None}
                                       for e in _store(request).list_entities()]}


@router.post("/push")
def push(body: PushRequest, request: Request) -> dict[str, Any]:
    res = _store(request).push(body.push_source_name, body.df, to=body.to)
    return {"push_source": res.push_source, "rows": res.rows, "views": list(res.views),
            "online_rows_written": res.online_rows_written, "offline_file": res.offline_file}


@router.post("/materialize")
def materialize(body: MaterializeRequest, request: Request) -> dict[str, Any]:
    """Blocking; for long ranges prefer ``aisd features materialize`` (progress bar, resumable)."""
    store = _store(request)
    if body.start_date is None:
        results = store.materialize_incremental(body.end_date, body.feature_views)
    else:
        if body.end_date is None:
            raise InvalidRequestError("end_date is required with start_date", param="end_date")
        results = store.materialize(body.start_date, body.end_date, body.feature_views)
    return {"object": "list", "data": [{"view": r.view, "start": r.start, "end": r.end, "chunks": r.chunks,
                                        "rows_written": r.rows_written, "resumed_from": r.resumed_from}
                                       for r in results]}


def health(services: Any) -> dict[str, Any]:
    if "feature_store" not in services.__dict__:
        return {}
    store = services.feature_store
    return {"features": {"repo": str(store.repo_path), "online_store": store.config.online_store}}
