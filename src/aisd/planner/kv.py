"""KV-cache size, GQA-correct, and the vLLM-style capacity report (KV blocks, maximum concurrency).

Per token every layer stores one key and one value vector per *KV* head:
``2 x layers x kv_heads x head_dim x bytes`` (vLLM ``CacheEngine.get_cache_block_size``). The seed formula
``2 x layers x hidden x bytes`` assumes one KV head per query head, so it overstates grouped-query-attention models by
``num_heads / num_kv_heads`` (4x for Llama-3-8B, 8x for Llama-3-70B).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.planner.catalog import GPUSpec, ModelConfig
from aisd.planner.loaders import resolve_model
from aisd.planner.memory import GiB, activation_bytes, weight_bytes

KV_DTYPES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def kv_dtype_bytes(kv_dtype: str) -> float:
    key = kv_dtype.strip().lower()
    if key not in KV_DTYPES:
        raise InvalidRequestError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}; got {kv_dtype!r}",
                                  param="kv_dtype")
    return KV_DTYPES[key]


def kv_bytes_per_token(model: ModelConfig | str, kv_dtype: str = "fp16", *, dtype: str | None = None) -> int:
    """GQA-correct KV bytes per token: 2 (K and V) x layers x kv_heads x head_dim x bytes per element.
    ``dtype=`` is an accepted alias of ``kv_dtype``."""
    m = resolve_model(model)
    return int(2 * m.num_layers * m.num_kv_heads * m.head_dim * kv_dtype_bytes(dtype or kv_dtype))


def kv_bytes_per_token_hidden(model: ModelConfig | str, kv_dtype: str = "fp16") -> int:
    """The seed's formula 2 x layers x hidden_size x bytes -- right only for multi-head attention (kv = heads)."""
    m = resolve_model(model)
    return int(2 * m.num_layers * m.hidden_size * kv_dtype_bytes(kv_dtype))


def kv_tokens_held(model: ModelConfig, context: int) -> int:
    """Tokens of KV a sequence keeps: all of them, or the last ``sliding_window`` for windowed attention."""
    return min(context, model.sliding_window) if model.sliding_window else context


def kv_bytes_per_request(model: ModelConfig | str, context: int, kv_dtype: str = "fp16") -> int:
    m = resolve_model(model)
    return kv_tokens_held(m, context) * kv_bytes_per_token(m, kv_dtype)


@dataclass(frozen=True)
class KVReport:
    model: str
    kv_dtype: str
    context: int
    batch: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    kv_bytes_per_token: int  # GQA-correct
    hidden_formula_bytes_per_token: int  # the seed's 2 x L x hidden x bytes
    overstatement: float  # hidden formula / correct = num_heads / num_kv_heads
    tokens_held_per_request: int
    kv_bytes_per_request: int
    kv_bytes_per_batch: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(kv_gb_per_request=round(self.kv_bytes_per_request / 1e9, 4),
                 kv_gb_per_batch=round(self.kv_bytes_per_batch / 1e9, 4))
        return d


def kv_report(model: ModelConfig | str, context: int = 4096, batch: int = 1, kv_dtype: str = "fp16") -> KVReport:
    m = resolve_model(model)
    if context < 1:
        raise InvalidRequestError("context must be >= 1 token", param="context")
    if batch < 1:
        raise InvalidRequestError("batch must be >= 1", param="batch")
    per_token, naive = kv_bytes_per_token(m, kv_dtype), kv_bytes_per_token_hidden(m, kv_dtype)
    per_request = kv_bytes_per_request(m, context, kv_dtype)
    return KVReport(model=m.id, kv_dtype=kv_dtype, context=context, batch=batch, num_layers=m.num_layers,
                    num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, head_dim=m.head_dim,
                    hidden_size=m.hidden_size, kv_bytes_per_token=per_token, hidden_formula_bytes_per_token=naive,
                    overstatement=round(naive / per_token, 4), tokens_held_per_request=kv_tokens_held(m, context),
                    kv_bytes_per_request=per_request, kv_bytes_per_batch=batch * per_request)


@dataclass(frozen=True)
class KVCapacity:
    """What vLLM's start-up profiler logs for one GPU of a TP x PP group: blocks, tokens, maximum concurrency."""

    model: str
    gpu: str
    precision: str
    kv_dtype: str
    tensor_parallel: int
    pipeline_parallel: int
    gpu_memory_utilization: float
    block_size: int
    max_model_len: int
    memory_per_gpu: int  # bytes the device has
    budget_per_gpu: int  # memory x utilization
    weights_per_gpu: int
    activations_per_gpu: int
    runtime_overhead_per_gpu: int
    kv_available_per_gpu: int  # budget - weights - activations - overhead (can be negative)
    kv_bytes_per_token_per_gpu: int
    num_gpu_blocks: int
    kv_cache_tokens: int  # num_gpu_blocks x block_size
    max_concurrency: float  # kv_cache_tokens / max_model_len, as vLLM logs it
    max_full_length_requests: int  # requests that can all reach max_model_len at once (whole blocks each)
    fits: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(kv_available_gb_per_gpu=round(self.kv_available_per_gpu / 1e9, 3),
                 weights_gb_per_gpu=round(self.weights_per_gpu / 1e9, 3))
        return d


def kv_cache_capacity(model: ModelConfig | str, gpu: GPUSpec, precision: str = "fp16", *,
                      gpu_memory_utilization: float = 0.9, tensor_parallel: int = 1, pipeline_parallel: int = 1,
                      max_model_len: int | None = None, block_size: int = 16, kv_dtype: str = "fp16",
                      max_num_batched_tokens: int = 8192, max_num_seqs: int = 256,
                      runtime_overhead_gb: float = 1.0, keep_embeddings_fp16: bool = False) -> KVCapacity:
    """KV blocks and maximum concurrency the way vLLM sizes them: after loading the weights and a profiling forward
    pass, ``gpu_memory_utilization x memory - weights - peak activations - non-torch memory`` is cut into blocks of
    ``block_size`` tokens. With TP the KV heads are split (replicated when kv_heads < TP); with PP each GPU holds its
    stage's layers (the fullest stage decides)."""
    m = resolve_model(model)
    _check_parallel(m, tensor_parallel, pipeline_parallel)
    if not 0 < gpu_memory_utilization <= 1:
        raise InvalidRequestError("gpu_memory_utilization must be in (0, 1]", param="gpu_memory_utilization")
    if block_size < 1:
        raise InvalidRequestError("block_size must be >= 1", param="block_size")
    max_len = max_model_len or m.max_context
    if max_len < 1:
        raise InvalidRequestError("max_model_len must be >= 1", param="max_model_len")
    shards = tensor_parallel * pipeline_parallel
    budget = int(gpu.memory_bytes * gpu_memory_utilization)
    weights = math.ceil(weight_bytes(m, precision, keep_embeddings_fp16=keep_embeddings_fp16) / shards)
    acts = activation_bytes(m, max_num_batched_tokens, max_num_seqs, tp=tensor_parallel)
    overhead = int(runtime_overhead_gb * GiB)
    available = budget - weights - acts - overhead
    kv_heads_per_gpu = max(1, m.num_kv_heads // tensor_parallel)
    layers_per_gpu = math.ceil(m.num_layers / pipeline_parallel)
    per_token = int(2 * layers_per_gpu * kv_heads_per_gpu * m.head_dim * kv_dtype_bytes(kv_dtype))
    blocks = max(0, available // (block_size * per_token))
    tokens = blocks * block_size
    held = kv_tokens_held(m, max_len)
    full = blocks // math.ceil(held / block_size)
    if available <= 0:
        fits, reason = False, (f"weights ({weights / 1e9:.1f} GB/GPU) + activations + overhead exceed "
                               f"{gpu_memory_utilization:.0%} of {gpu.memory_gb:.1f} GB")
    elif tokens < held:
        fits, reason = False, (f"KV cache holds {tokens} tokens, fewer than one request of max_model_len "
                               f"{max_len}; lower max_model_len or add GPUs")
    else:
        fits, reason = True, "ok"
    return KVCapacity(model=m.id, gpu=gpu.id, precision=precision, kv_dtype=kv_dtype,
                      tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
                      gpu_memory_utilization=gpu_memory_utilization, block_size=block_size, max_model_len=max_len,
                      memory_per_gpu=gpu.memory_bytes, budget_per_gpu=budget, weights_per_gpu=weights,
                      activations_per_gpu=acts, runtime_overhead_per_gpu=overhead, kv_available_per_gpu=available,
                      kv_bytes_per_token_per_gpu=per_token, num_gpu_blocks=int(blocks), kv_cache_tokens=int(tokens),
                      max_concurrency=round(tokens / held, 2), max_full_length_requests=int(full), fits=fits,
                      reason=reason)


def _check_parallel(m: ModelConfig, tp: int, pp: int) -> None:
    if tp < 1:
        raise InvalidRequestError("tensor_parallel must be >= 1", param="tensor_parallel")
    if pp < 1:
        raise InvalidRequestError("pipeline_parallel must be >= 1", param="pipeline_parallel")
    if m.num_heads % tp:
        raise InvalidRequestError(f"tensor_parallel {tp} must divide the {m.num_heads} attention heads of {m.id}",
                                  param="tensor_parallel")
    if pp > m.num_layers:
        raise InvalidRequestError(f"pipeline_parallel {pp} exceeds the {m.num_layers} layers of {m.id}",
                                  param="pipeline_parallel")
