"""Composite reports the CLI and the HTTP routes share: one call, one named result, one ``to_dict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aisd.planner.catalog import Catalog, GPUSpec, ModelConfig, default_catalog
from aisd.planner.kv import KVCapacity, KVReport, kv_cache_capacity, kv_report
from aisd.planner.loaders import resolve_model
from aisd.planner.memory import MemoryEstimate, estimate_memory, weights_by_precision
from aisd.planner.parallel import ParallelReport, plan_parallelism


@dataclass(frozen=True)
class MemoryPlan:
    estimate: MemoryEstimate
    weights_by_precision: dict[str, int]
    capacity: KVCapacity | None = None  # when a GPU is given: the vLLM-style KV block report
    file_weight_bytes: int | None = None  # a GGUF model: its tensors' exact bytes as stored

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_dict(),
                "weights_by_precision": {k: {"bytes": v, "gb": round(v / 1e9, 3)}
                                         for k, v in self.weights_by_precision.items()},
                "file_weight_bytes": self.file_weight_bytes,
                "capacity": self.capacity.to_dict() if self.capacity else None}


def memory_plan(model: ModelConfig | str, precision: str = "fp16", *, context: int = 4096, batch: int = 1,
                kv_dtype: str = "fp16", gpu: GPUSpec | None = None, gpu_memory_utilization: float = 0.9,
                tensor_parallel: int = 1, pipeline_parallel: int = 1, block_size: int = 16,
                max_num_batched_tokens: int = 8192, runtime_overhead_gb: float = 1.0,
                keep_embeddings_fp16: bool = False) -> MemoryPlan:
    m = resolve_model(model)
    est = estimate_memory(m, precision, context=context, batch=batch, kv_dtype=kv_dtype,
                          max_batched_tokens=max_num_batched_tokens, runtime_overhead_gb=runtime_overhead_gb,
                          keep_embeddings_fp16=keep_embeddings_fp16)
    cap = None
    if gpu is not None:
        cap = kv_cache_capacity(m, gpu, precision, gpu_memory_utilization=gpu_memory_utilization,
                                tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
                                max_model_len=context, block_size=block_size, kv_dtype=kv_dtype,
                                max_num_batched_tokens=max_num_batched_tokens, runtime_overhead_gb=runtime_overhead_gb,
                                keep_embeddings_fp16=keep_embeddings_fp16)
    return MemoryPlan(estimate=est, weights_by_precision=weights_by_precision(m), capacity=cap,
                      file_weight_bytes=m.file_weight_bytes)


@dataclass(frozen=True)
class KVPlan:
    report: KVReport
    capacity: KVCapacity | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.report.to_dict()
        d["capacity"] = self.capacity.to_dict() if self.capacity else None
        return d


def kv_plan(model: ModelConfig | str, *, context: int = 4096, batch: int = 1, kv_dtype: str = "fp16",
            gpu: GPUSpec | None = None, precision: str = "fp16", gpu_memory_utilization: float = 0.9,
            tensor_parallel: int = 1, pipeline_parallel: int = 1, block_size: int = 16) -> KVPlan:
    m = resolve_model(model)
    rep = kv_report(m, context, batch, kv_dtype)
    cap = None
    if gpu is not None:
        cap = kv_cache_capacity(m, gpu, precision, gpu_memory_utilization=gpu_memory_utilization,
                                tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
                                max_model_len=context, block_size=block_size, kv_dtype=kv_dtype)
    return KVPlan(report=rep, capacity=cap)


@dataclass(frozen=True)
class GpuComparison:
    """The recommended plan on every GPU asked about, cheapest first (GPUs with no fitting plan last)."""

    model: str
    precision: str
    context: int
    concurrency: int
    reports: list[ParallelReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "precision": self.precision, "context": self.context,
                "concurrency": self.concurrency, "reports": [r.to_dict() for r in self.reports]}


def compare_gpus(model: ModelConfig | str, gpus: list[GPUSpec] | None = None, precision: str = "fp16", *,
                 context: int = 4096, concurrency: int = 1, kv_dtype: str = "fp16",
                 gpu_memory_utilization: float = 0.9, target_tokens_per_s: float | None = None,
                 catalog: Catalog | None = None) -> GpuComparison:
    m = resolve_model(model)
    gpus = gpus or list((catalog or default_catalog()).gpus.values())
    reports = [plan_parallelism(m, g, precision, context=context, concurrency=concurrency, kv_dtype=kv_dtype,
                                gpu_memory_utilization=gpu_memory_utilization,
                                target_tokens_per_s=target_tokens_per_s) for g in gpus]
    reports.sort(key=lambda r: (r.recommended is None, r.recommended.cost_per_hour if r.recommended else 0.0))
    return GpuComparison(model=m.id, precision=precision, context=context, concurrency=concurrency, reports=reports)
