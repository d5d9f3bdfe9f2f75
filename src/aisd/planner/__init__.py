"""Capacity and cost planner: model catalog, memory by precision, GQA-correct KV cache, vLLM-style KV capacity,
parallelism plans, a roofline performance model, latency budgets and build-vs-buy cost.

Pure arithmetic over shipped JSON catalogs; imports no torch. Public API::

    from aisd.planner import model_config, kv_bytes_per_token, weight_bytes
    kv_bytes_per_token("llama-3-8b")            # 131072 (FP16)
    weight_bytes("llama-3-70b", "int4") / 1e9   # ~36.7
"""

from aisd.planner.catalog import (
    ApiPrice,
    Catalog,
    GPUSpec,
    ModelConfig,
    ParamCount,
    api_price,
    count_parameters,
    default_catalog,
    gpu,
    list_gpus,
    list_models,
    list_prices,
    load_catalog_file,
)
from aisd.planner.cost import (
    ApiCost,
    BreakEven,
    CostReport,
    Recommendation,
    SelfHostCost,
    api_cost,
    break_even,
    build_vs_buy,
    cost_report,
    self_host_cost,
)
from aisd.planner.kv import (
    KV_DTYPES,
    KVCapacity,
    KVReport,
    kv_bytes_per_request,
    kv_bytes_per_token,
    kv_bytes_per_token_hidden,
    kv_cache_capacity,
    kv_report,
)
from aisd.planner.latency import LatencyBudget, MeasuredEngine, latency_budget, load_measured, measured_from_dict
from aisd.planner.loaders import config_from_dict, config_from_gguf, config_from_json, model_config
from aisd.planner.memory import (
    PRECISIONS,
    MemoryEstimate,
    activation_bytes,
    bytes_per_param,
    estimate_memory,
    weight_bytes,
    weights_by_precision,
)
from aisd.planner.parallel import ParallelPlan, ParallelReport, plan_parallelism
from aisd.planner.perf import DecodeEstimate, PrefillEstimate, decode_estimate, prefill_estimate
from aisd.planner.reports import GpuComparison, KVPlan, MemoryPlan, compare_gpus, kv_plan, memory_plan

__all__ = [
    "KV_DTYPES", "PRECISIONS", "ApiCost", "ApiPrice", "BreakEven", "Catalog", "CostReport", "DecodeEstimate",
    "GPUSpec", "GpuComparison", "KVCapacity", "KVPlan", "MemoryPlan", "KVReport", "LatencyBudget", "MeasuredEngine", "MemoryEstimate", "ModelConfig",
    "ParallelPlan", "ParallelReport", "ParamCount", "PrefillEstimate", "Recommendation", "SelfHostCost",
    "activation_bytes", "api_cost", "compare_gpus", "kv_plan", "memory_plan", "api_price", "break_even", "build_vs_buy", "bytes_per_param",
    "config_from_dict", "config_from_gguf", "config_from_json", "cost_report", "count_parameters",
    "decode_estimate", "default_catalog", "estimate_memory", "gpu", "kv_bytes_per_request", "kv_bytes_per_token",
    "kv_bytes_per_token_hidden", "kv_cache_capacity", "kv_report", "latency_budget", "list_gpus", "list_models",
    "list_prices", "load_catalog_file", "load_measured", "measured_from_dict", "model_config", "plan_parallelism",
    "prefill_estimate", "self_host_cost", "weight_bytes", "weights_by_precision",
]
