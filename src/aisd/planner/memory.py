"""Weight memory by precision, activation peak and runtime overhead.

Weights = parameters x bits per weight / 8. Integer formats carry per-group scales (and zero points): INT4 with
GPTQ/AWQ-style groups of 128 stores a 16-bit scale and a 4-bit zero per group, 4 + 20/128 = 4.16 bits per weight.
GGUF block formats (llama.cpp ``ggml-common.h``): Q8_0 = 34 bytes per 32 weights (8.5 bits), Q4_0 = 18/32 (4.5),
Q4_1 = 20/32 (5.0); K-quant mixes are averages over the tensor types they use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.planner.catalog import ModelConfig, count_parameters
from aisd.planner.loaders import resolve_model as _resolve


@dataclass(frozen=True)
class Precision:
    name: str
    bits: float  # bits per weight before group overhead
    group_overhead_bits: float = 0.0  # bits per group (scale + zero point); 0 = none / per-tensor
    description: str = ""

    def bits_per_weight(self, group_size: int | None = 128) -> float:
        if not self.group_overhead_bits or not group_size:
            return self.bits
        return self.bits + self.group_overhead_bits / group_size


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", 32, description="full precision"),
    Precision("fp16", 16, description="half precision"),
    Precision("bf16", 16, description="bfloat16"),
    Precision("fp8", 8, description="FP8 E4M3 with per-tensor scales (Hopper/Ada kernels)"),
    Precision("int8", 8, description="INT8 weights, per-channel scales (<0.1% extra, ignored)"),
    Precision("int4", 4, 16 + 4, description="INT4 weights, FP16 scale + 4-bit zero per group (GPTQ/AWQ)"),
    Precision("q8_0", 8.5, description="GGUF Q8_0: 32 int8 + one fp16 scale per block"),
    Precision("q4_0", 4.5, description="GGUF Q4_0: 32 int4 + one fp16 scale per block"),
    Precision("q4_1", 5.0, description="GGUF Q4_1: 32 int4 + fp16 scale and min per block"),
    Precision("q4_k_m", 4.85, description="GGUF Q4_K_M mix (average bits per weight)"),
    Precision("q5_k_m", 5.69, description="GGUF Q5_K_M mix (average bits per weight)"),
    Precision("q6_k", 6.5625, description="GGUF Q6_K"),
)}
TABLE_PRECISIONS = ("fp32", "fp16", "fp8", "int8", "int4")
GiB = 2**30


def get_precision(name: str, param: str = "precision") -> Precision:
    key = name.strip().lower()
    if key not in PRECISIONS:
        raise InvalidRequestError(f"{param} must be one of {', '.join(PRECISIONS)}; got {name!r}", param=param)
    return PRECISIONS[key]


def bytes_per_param(name: str, group_size: int | None = 128) -> float:
    return get_precision(name).bits_per_weight(group_size) / 8


def weight_bytes(model: ModelConfig | str, precision: str = "fp16", *, group_size: int | None = 128,
                 keep_embeddings_fp16: bool = False, dtype: str | None = None) -> int:
    """Bytes of weights at a precision; ``keep_embeddings_fp16`` leaves the embedding and untied head in 16-bit,
    as GPTQ/AWQ checkpoints and vLLM do (Llama-3-70B INT4: ~36.7 GB without, ~39.8 GB with)."""
    m = _resolve(model)
    counts = count_parameters(m)
    bpp = bytes_per_param(dtype or precision, group_size)  # ``dtype=`` is an accepted alias
    if keep_embeddings_fp16 and bpp < 2:
        return int(round((counts.total - counts.embedding) * bpp + counts.embedding * 2))
    return int(round(counts.total * bpp))


def weights_by_precision(model: ModelConfig | str, group_size: int | None = 128) -> dict[str, int]:
    """The seed's table: the same model at FP32, FP16/BF16, FP8, INT8 and INT4."""
    return {p: weight_bytes(model, p, group_size=group_size) for p in TABLE_PRECISIONS}


def activation_bytes(model: ModelConfig | str, max_batched_tokens: int = 8192, max_num_seqs: int = 256,
                     act_bytes: int = 2, tp: int = 1) -> int:
    """Peak transient memory of one forward pass over ``max_batched_tokens`` (what vLLM's profiling run measures).

    Inference frees each layer's activations before the next, so the peak is one layer's live tensors per token:
    residual + normed input (2H), q/k/v (q + 2kv dims), attention output (q), gate+up (2I) and the activated MLP
    input (I), sharded by TP; plus FP32 logits for the sampled rows (max_num_seqs x vocab).
    """
    m = _resolve(model)
    if max_batched_tokens < 1 or max_num_seqs < 1:
        raise InvalidRequestError("max_batched_tokens and max_num_seqs must be >= 1", param="max_batched_tokens")
    q, kv = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    inter = m.intermediate_size * (m.experts_per_token if m.is_moe else 1)
    per_token = 2 * m.hidden_size + (q + 2 * kv + q + 3 * inter) / tp
    logits = min(max_num_seqs, max_batched_tokens) * m.vocab_size * 4
    return int(max_batched_tokens * per_token * act_bytes + logits)


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory of serving one model replica, in bytes, split by what holds it."""

    model: str
    precision: str
    kv_dtype: str
    params: int
    weights: int
    kv_cache: int
    activations: int
    runtime_overhead: int
    context: int
    batch: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.runtime_overhead

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total
        d["total_gb"] = round(self.total / 1e9, 3)
        d["weights_gb"] = round(self.weights / 1e9, 3)
        d["kv_cache_gb"] = round(self.kv_cache / 1e9, 3)
        return d


def estimate_memory(model: ModelConfig | str, precision: str = "fp16", *, context: int = 4096, batch: int = 1,
                    kv_dtype: str = "fp16", max_batched_tokens: int = 8192, runtime_overhead_gb: float = 1.0,
                    group_size: int | None = 128, keep_embeddings_fp16: bool = False) -> MemoryEstimate:
    """Total memory for ``batch`` sequences of ``context`` tokens: weights + KV cache + activations + overhead."""
    from aisd.planner.kv import kv_bytes_per_request

    m = _resolve(model)
    get_precision(precision)
    if context < 1:
        raise InvalidRequestError("context must be >= 1 token", param="context")
    if batch < 1:
        raise InvalidRequestError("batch must be >= 1", param="batch")
    if runtime_overhead_gb < 0:
        raise InvalidRequestError("runtime_overhead_gb must be >= 0", param="runtime_overhead_gb")
    return MemoryEstimate(
        model=m.id, precision=precision, kv_dtype=kv_dtype, params=m.params,
        weights=weight_bytes(m, precision, group_size=group_size, keep_embeddings_fp16=keep_embeddings_fp16),
        kv_cache=batch * kv_bytes_per_request(m, context, kv_dtype),
        activations=activation_bytes(m, min(max_batched_tokens, batch * context), max_num_seqs=batch),
        runtime_overhead=int(runtime_overhead_gb * GiB), context=context, batch=batch)
