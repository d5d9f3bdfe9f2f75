"""Roofline performance model: decode is bound by memory bandwidth, prefill by compute.

Decode step (one token for each of ``batch`` sequences): every weight the step touches is read once and every
sequence's KV cache is read once, so ``t_mem = (weight bytes + batch x context x KV bytes/token) / (bandwidth x eff)``;
the step also does ``2 x active params x batch`` FLOPs, and takes whichever is longer (roofline, Williams et al. 2009).
Prefill of T tokens: ``2 x active params x T`` FLOPs plus causal attention ``2 x layers x T^2 x q_dim``
(Kaplan et al. 2020, forward pass), divided by peak FLOPs x MFU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.planner.catalog import GPUSpec, ModelConfig, count_parameters
from aisd.planner.kv import kv_bytes_per_token, kv_tokens_held
from aisd.planner.loaders import resolve_model
from aisd.planner.memory import bytes_per_param, weight_bytes

# Fractions of peak that well-tuned serving engines reach; override per call.
DEFAULT_BANDWIDTH_EFFICIENCY = 0.8  # decode kernels reach 70-90% of HBM bandwidth
DEFAULT_MFU = 0.5  # prefill GEMMs reach 40-60% of dense peak
DEFAULT_TP_EFFICIENCY = 0.9  # per doubling of TP: all-reduce cost within an NVLink node


def expected_experts_touched(num_experts: int, experts_per_token: int, tokens: int) -> float:
    """Distinct experts a batch routes to per layer under uniform routing: E x (1 - (1 - k/E)^tokens)."""
    if num_experts <= 1:
        return 1.0
    return num_experts * (1.0 - (1.0 - experts_per_token / num_experts) ** tokens)


def weight_bytes_read(m: ModelConfig, precision: str, tokens: int) -> float:
    """Weight bytes one forward step streams: all dense weights, and for MoE only the experts the batch touches."""
    if not m.is_moe:
        return float(weight_bytes(m, precision))
    counts = count_parameters(m)
    expert = 3 * m.hidden_size * m.intermediate_size
    dense = counts.total - m.num_layers * m.num_experts * expert
    touched = expected_experts_touched(m.num_experts, m.experts_per_token, tokens)
    return (dense + m.num_layers * touched * expert) * bytes_per_param(precision)


def parallel_speedup(tp: int, tp_efficiency: float = DEFAULT_TP_EFFICIENCY) -> float:
    """Effective multiple of one GPU's bandwidth/FLOPs with TP GPUs: tp x eff^log2(tp) (all-reduce overhead)."""
    import math

    return tp * tp_efficiency ** math.log2(tp) if tp > 1 else 1.0


@dataclass(frozen=True)
class DecodeEstimate:
    batch: int
    context: int
    bytes_per_step: float
    flops_per_step: float
    memory_time_s: float
    compute_time_s: float
    step_time_s: float  # = inter-token latency (TPOT) for every sequence in the batch
    tokens_per_s_per_sequence: float
    tokens_per_s_total: float
    bound: str  # "memory" | "compute"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tpot_ms"] = round(self.step_time_s * 1e3, 3)
        return d


def decode_estimate(model: ModelConfig | str, gpu: GPUSpec, precision: str = "fp16", *, batch: int = 1,
                    context: int = 1024, kv_dtype: str = "fp16", tensor_parallel: int = 1,
                    bandwidth_efficiency: float = DEFAULT_BANDWIDTH_EFFICIENCY, mfu: float = DEFAULT_MFU,
                    tp_efficiency: float = DEFAULT_TP_EFFICIENCY) -> DecodeEstimate:
    """One decode step for ``batch`` sequences whose KV holds ``context`` tokens each (batch-aware roofline)."""
    m = resolve_model(model)
    _check(batch=batch, context=context, bandwidth_efficiency=bandwidth_efficiency, mfu=mfu,
           tensor_parallel=tensor_parallel)
    kv = batch * kv_tokens_held(m, context) * kv_bytes_per_token(m, kv_dtype)
    nbytes = weight_bytes_read(m, precision, batch) + kv
    # dense matmuls + attention over the cached context (QK^T and PV, 2 FLOPs per multiply-add each)
    flops = 2.0 * m.active_params * batch + 4.0 * m.num_layers * m.num_heads * m.head_dim * context * batch
    scale = parallel_speedup(tensor_parallel, tp_efficiency)
    t_mem = nbytes / (gpu.bandwidth_gbs * 1e9 * bandwidth_efficiency * scale)
    t_cmp = flops / (gpu.tflops(precision) * 1e12 * mfu * scale)
    step = max(t_mem, t_cmp)
    return DecodeEstimate(batch=batch, context=context, bytes_per_step=nbytes, flops_per_step=flops,
                          memory_time_s=t_mem, compute_time_s=t_cmp, step_time_s=step,
                          tokens_per_s_per_sequence=1.0 / step, tokens_per_s_total=batch / step,
                          bound="memory" if t_mem >= t_cmp else "compute")


@dataclass(frozen=True)
class PrefillEstimate:
    tokens: int
    flops: float
    compute_time_s: float
    memory_time_s: float  # the weights must be read at least once
    time_s: float
    tokens_per_s: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time_ms"] = round(self.time_s * 1e3, 3)
        return d


def prefill_flops(m: ModelConfig, tokens: int) -> float:
    """Forward FLOPs of a T-token prompt: 2 x active params x T + causal attention 2 x layers x T^2 x q_dim."""
    return 2.0 * m.active_params * tokens + 2.0 * m.num_layers * tokens * tokens * m.num_heads * m.head_dim


def prefill_estimate(model: ModelConfig | str, gpu: GPUSpec, precision: str = "fp16", *, tokens: int = 512,
                     tensor_parallel: int = 1, mfu: float = DEFAULT_MFU,
                     bandwidth_efficiency: float = DEFAULT_BANDWIDTH_EFFICIENCY,
                     tp_efficiency: float = DEFAULT_TP_EFFICIENCY) -> PrefillEstimate:
    m = resolve_model(model)
    _check(batch=1, context=tokens, bandwidth_efficiency=bandwidth_efficiency, mfu=mfu,
           tensor_parallel=tensor_parallel)
    scale = parallel_speedup(tensor_parallel, tp_efficiency)
    flops = prefill_flops(m, tokens)
    t_cmp = flops / (gpu.tflops(precision) * 1e12 * mfu * scale)
    t_mem = weight_bytes_read(m, precision, tokens) / (gpu.bandwidth_gbs * 1e9 * bandwidth_efficiency * scale)
    t = max(t_cmp, t_mem)
    return PrefillEstimate(tokens=tokens, flops=flops, compute_time_s=t_cmp, memory_time_s=t_mem, time_s=t,
                           tokens_per_s=tokens / t)


def _check(*, batch: int, context: int, bandwidth_efficiency: float, mfu: float, tensor_parallel: int) -> None:
    if batch < 1:
        raise InvalidRequestError("batch must be >= 1", param="batch")
    if context < 1:
        raise InvalidRequestError("context (tokens) must be >= 1", param="context")
    if not 0 < bandwidth_efficiency <= 1:
        raise InvalidRequestError("bandwidth_efficiency must be in (0, 1]", param="bandwidth_efficiency")
    if not 0 < mfu <= 1:
        raise InvalidRequestError("mfu must be in (0, 1]", param="mfu")
    if tensor_parallel < 1:
        raise InvalidRequestError("tensor_parallel must be >= 1", param="tensor_parallel")
