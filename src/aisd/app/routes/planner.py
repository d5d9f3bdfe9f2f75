"""Routes: capacity and cost planner (/v1/plan/...).

GET  /v1/plan/models, /v1/plan/models/{id}, /v1/plan/hardware, /v1/plan/prices  -- the catalogs
POST /v1/plan/memory | kv | gpus | latency | cost                                -- the plans

A model is a catalog id (``llama-3-8b``) or, for a model that is not in the catalog, an inline ``config`` object with
config.json field names. Server file paths are not accepted. Unknown model/GPU/API -> 404 naming the closest ids;
out-of-range numbers -> 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from aisd.core.errors import InvalidRequestError
from aisd.planner import (
    PRECISIONS,
    ApiPrice,
    Catalog,
    ModelConfig,
    config_from_dict,
    cost_report,
    latency_budget,
    measured_from_dict,
)
from aisd.planner.kv import KV_DTYPES
from aisd.planner.reports import compare_gpus, kv_plan, memory_plan

router = APIRouter(prefix="/v1/plan", tags=["planner"])


def _catalog(request: Request) -> Catalog:
    """The server's catalog (shipped JSON + ``AISD_PLANNER__CATALOG``), built once by the Services."""
    return request.app.state.services.planner_catalog

Precision = Literal[tuple(PRECISIONS)]  # type: ignore[valid-type]
KvDtype = Literal[tuple(KV_DTYPES)]  # type: ignore[valid-type]


class ModelRef(BaseModel):
    model: str | None = Field(None, description="catalog id, e.g. llama-3-8b (GET /v1/plan/models)")
    config: dict[str, Any] | None = Field(None, description="inline config.json for a model not in the catalog")

    def resolve(self, catalog: Catalog) -> ModelConfig:
        if self.config is not None:
            return config_from_dict(self.config, name=self.model or "custom", source="inline config")
        if not self.model:
            raise InvalidRequestError("give 'model' (a catalog id) or an inline 'config'", param="model")
        return catalog.model(self.model)


class MemoryRequest(ModelRef):
    precision: Precision = "fp16"
    context: int = Field(4096, ge=1, le=10_000_000)
    batch: int = Field(1, ge=1, le=1_000_000)
    kv_dtype: KvDtype = "fp16"
    gpu: str | None = Field(None, description="add the vLLM-style KV block report for this GPU")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel: int = Field(1, ge=1, le=1024)
    pipeline_parallel: int = Field(1, ge=1, le=1024)
    block_size: int = Field(16, ge=1, le=1024)
    max_num_batched_tokens: int = Field(8192, ge=1)
    runtime_overhead_gb: float = Field(1.0, ge=0)
    keep_embeddings_fp16: bool = False


class KVRequest(ModelRef):
    context: int = Field(4096, ge=1, le=10_000_000)
    batch: int = Field(1, ge=1, le=1_000_000)
    kv_dtype: KvDtype = "fp16"
    gpu: str | None = None
    precision: Precision = "fp16"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel: int = Field(1, ge=1, le=1024)
    pipeline_parallel: int = Field(1, ge=1, le=1024)
    block_size: int = Field(16, ge=1, le=1024)


class GpusRequest(ModelRef):
    gpu: str | None = Field(None, description="one GPU id; default: compare every GPU in the catalog")
    precision: Precision = "fp16"
    context: int = Field(4096, ge=1, le=10_000_000)
    concurrency: int = Field(1, ge=1, le=1_000_000)
    kv_dtype: KvDtype = "fp16"
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    target_tokens_per_s: float | None = Field(None, gt=0)


class LatencyRequest(ModelRef):
    gpu: str | None = None
    precision: Precision = "fp16"
    prompt_tokens: int = Field(512, ge=1, le=10_000_000)
    output_tokens: int = Field(256, ge=0, le=10_000_000)
    batch: int = Field(1, ge=1, le=100_000)
    tensor_parallel: int = Field(1, ge=1, le=1024)
    network_ms: float | None = Field(None, ge=0)
    tokenization_ms: float | None = Field(None, ge=0)
    postprocessing_ms: float | None = Field(None, ge=0)
    measured: dict[str, Any] | None = Field(None, description="contents of an engine benchmark result file")
    measured_row: str | None = Field(None, description="pick the result row containing this text")


class InlinePrice(BaseModel):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    provider: str = "custom"
    as_of: str = ""


class CostRequest(ModelRef):
    gpu: str = "h100-80"
    precision: Precision = "fp16"
    api: str = Field("gpt-4o", description="an id from GET /v1/plan/prices")
    api_price: InlinePrice | None = Field(None, description="your own API price instead of the table's")
    input_tokens: int = Field(500, ge=1)
    output_tokens: int = Field(250, ge=0)
    queries_per_month: float = Field(100_000, gt=0)
    utilization: float = Field(0.5, gt=0, le=1)
    batch: int | None = Field(None, ge=1)
    price_per_hour: float | None = Field(None, ge=0)
    fine_tuning: bool = False
    data_on_premises: bool = False
    measured_tokens_per_s: float | None = Field(None, gt=0, description="a replica's measured decode tokens/s")
    compare_apis: bool = Field(False, description="add the cost of every API in the price table")


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [m.to_dict() for m in _catalog(request).models.values()]}


@router.get("/models/{model_id}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    return _catalog(request).model(model_id).to_dict()


@router.get("/hardware")
async def list_hardware(request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    return {"object": "list", "prices_as_of": cat.gpu_prices_as_of, "data": [g.to_dict() for g in cat.gpus.values()]}


@router.get("/prices")
async def list_prices(request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    return {"object": "list", "as_of": cat.prices_as_of, "data": [p.to_dict() for p in cat.prices.values()]}


@router.post("/memory")
async def plan_memory(req: MemoryRequest, request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    gpu = cat.gpu(req.gpu) if req.gpu else None
    return memory_plan(req.resolve(cat), req.precision, context=req.context, batch=req.batch, kv_dtype=req.kv_dtype,
                       gpu=gpu, gpu_memory_utilization=req.gpu_memory_utilization,
                       tensor_parallel=req.tensor_parallel, pipeline_parallel=req.pipeline_parallel,
                       block_size=req.block_size, max_num_batched_tokens=req.max_num_batched_tokens,
                       runtime_overhead_gb=req.runtime_overhead_gb,
                       keep_embeddings_fp16=req.keep_embeddings_fp16).to_dict()


@router.post("/kv")
async def plan_kv(req: KVRequest, request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    gpu = cat.gpu(req.gpu) if req.gpu else None
    return kv_plan(req.resolve(cat), context=req.context, batch=req.batch, kv_dtype=req.kv_dtype, gpu=gpu,
                   precision=req.precision, gpu_memory_utilization=req.gpu_memory_utilization,
                   tensor_parallel=req.tensor_parallel, pipeline_parallel=req.pipeline_parallel,
                   block_size=req.block_size).to_dict()


@router.post("/gpus")
async def plan_gpus(req: GpusRequest, request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    gpus = [cat.gpu(req.gpu)] if req.gpu else None
    return compare_gpus(req.resolve(cat), gpus, req.precision, context=req.context, concurrency=req.concurrency,
                        kv_dtype=req.kv_dtype, gpu_memory_utilization=req.gpu_memory_utilization,
                        target_tokens_per_s=req.target_tokens_per_s, catalog=cat).to_dict()


@router.post("/latency")
async def plan_latency(req: LatencyRequest, request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    gpu = cat.gpu(req.gpu) if req.gpu else None
    measured = (measured_from_dict(req.measured, source="request", row=req.measured_row)
                if req.measured is not None else None)
    return latency_budget(req.resolve(cat), gpu, req.precision, prompt_tokens=req.prompt_tokens,
                          output_tokens=req.output_tokens, batch=req.batch, tensor_parallel=req.tensor_parallel,
                          network_ms=req.network_ms, tokenization_ms=req.tokenization_ms,
                          postprocessing_ms=req.postprocessing_ms, measured=measured).to_dict()


@router.post("/cost")
async def plan_cost(req: CostRequest, request: Request) -> dict[str, Any]:
    cat = _catalog(request)
    if req.api_price is not None:
        price = ApiPrice(id=req.api, provider=req.api_price.provider, input_per_mtok=req.api_price.input_per_mtok,
                         output_per_mtok=req.api_price.output_per_mtok, as_of=req.api_price.as_of)
    else:
        price = cat.price(req.api)
    return cost_report(req.resolve(cat), cat.gpu(req.gpu), price, req.precision, input_tokens=req.input_tokens,
                       output_tokens=req.output_tokens, queries_per_month=req.queries_per_month,
                       utilization=req.utilization, batch=req.batch, price_per_hour=req.price_per_hour,
                       fine_tuning=req.fine_tuning, data_on_premises=req.data_on_premises,
                       measured_tokens_per_s=req.measured_tokens_per_s,
                       compare_prices=list(cat.prices.values()) if req.compare_apis else None).to_dict()


def health(services: Any) -> dict[str, Any]:
    cat = services.planner_catalog
    return {"planner": {"models": len(cat.models), "gpus": len(cat.gpus), "api_prices": len(cat.prices)}}
