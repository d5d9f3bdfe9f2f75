"""GPU count and parallelism: the smallest tensor / pipeline / data-parallel plans that fit a workload.

A plan fits when, on every GPU, the weights shard plus activations and runtime overhead leave room for the KV cache
of its share of the concurrent requests at the full context (``kv.kv_cache_capacity``). Candidates, each the
smallest of its kind: TP within one node; PP alone; TP x PP across nodes when one node is not enough; DP replicas of
the smallest fitting plan to carry the concurrency (or a throughput target). Trade-offs follow the Megatron-LM
practice (Narayanan et al. 2021): TP inside NVLink domains, PP across nodes, DP for throughput.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.planner.catalog import GPUSpec, ModelConfig
from aisd.planner.kv import KVCapacity, kv_cache_capacity, kv_tokens_held
from aisd.planner.loaders import resolve_model
from aisd.planner.perf import decode_estimate

TRADE_OFFS = {
    "single": "One GPU holds everything: no communication, the simplest deployment to run and to debug.",
    "tp": "Tensor parallelism splits every layer across {tp} GPUs: per-token latency drops as their bandwidth adds "
          "up, but two all-reduces per layer need NVLink, so keep it inside one node.",
    "pp": "Pipeline parallelism gives each of {pp} GPUs a slice of the layers: little traffic and it crosses nodes "
          "over plain networking, but a request still walks every stage (no latency gain) and stages idle without "
          "enough concurrent requests.",
    "tp_pp": "TP {tp} inside each node with PP {pp} across nodes: the only way to hold a model larger than one "
             "node; inter-node links carry only activations between stages, at the price of pipeline bubbles.",
    "dp": "{dp} data-parallel replicas: throughput and request capacity scale almost linearly and a failed replica "
          "takes only its own share down, but every replica pays for a full copy of the weights.",
}


@dataclass(frozen=True)
class ParallelPlan:
    kind: str  # single | tp | pp | tp_pp | dp
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    gpus: int
    nodes: int
    requests_per_replica: int
    capacity: KVCapacity  # per GPU of one replica
    tpot_ms: float  # modelled inter-token latency at the planned batch
    tokens_per_s: float  # modelled aggregate decode throughput of the whole plan
    cost_per_hour: float
    trade_off: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["capacity"] = self.capacity.to_dict()
        return d


@dataclass(frozen=True)
class ParallelReport:
    model: str
    gpu: str
    precision: str
    context: int
    concurrency: int
    plans: list[ParallelPlan] = field(default_factory=list)
    note: str = ""
    target_tokens_per_s: float | None = None

    @property
    def recommended(self) -> ParallelPlan | None:
        """Fewest GPUs (then lowest latency); with a throughput target, the first plan that meets it."""
        if not self.plans:
            return None
        if self.target_tokens_per_s:
            meeting = [p for p in self.plans if p.tokens_per_s >= self.target_tokens_per_s]
            return meeting[0] if meeting else max(self.plans, key=lambda p: p.tokens_per_s)
        return self.plans[0]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "gpu": self.gpu, "precision": self.precision, "context": self.context,
                "concurrency": self.concurrency, "plans": [p.to_dict() for p in self.plans], "note": self.note,
                "target_tokens_per_s": self.target_tokens_per_s,
                "recommended": self.plans.index(self.recommended) if self.recommended else None}


def _tp_options(m: ModelConfig, limit: int) -> list[int]:
    return [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= limit and m.num_heads % t == 0]


def _fits(cap: KVCapacity, m: ModelConfig, context: int, requests: int) -> bool:
    need = requests * math.ceil(kv_tokens_held(m, context) / cap.block_size)
    return cap.fits and cap.num_gpu_blocks >= need


def plan_parallelism(model: ModelConfig | str, gpu: GPUSpec, precision: str = "fp16", *, context: int = 4096,
                     concurrency: int = 1, kv_dtype: str = "fp16", gpu_memory_utilization: float = 0.9,
                     target_tokens_per_s: float | None = None, max_gpus: int = 512,
                     runtime_overhead_gb: float = 1.0) -> ParallelReport:
    """Smallest TP, PP, TP x PP and DP plans that hold ``concurrency`` requests of ``context`` tokens each."""
    m = resolve_model(model)
    if context < 1:
        raise InvalidRequestError("context must be >= 1 token", param="context")
    if concurrency < 1:
        raise InvalidRequestError("concurrency must be >= 1", param="concurrency")
    if target_tokens_per_s is not None and target_tokens_per_s <= 0:
        raise InvalidRequestError("target_tokens_per_s must be > 0", param="target_tokens_per_s")
    node = gpu.gpus_per_node
    max_pp = min(m.num_layers, 64)

    def capacity(tp: int, pp: int) -> KVCapacity:
        return kv_cache_capacity(m, gpu, precision, gpu_memory_utilization=gpu_memory_utilization,
                                 tensor_parallel=tp, pipeline_parallel=pp, max_model_len=context, kv_dtype=kv_dtype,
                                 runtime_overhead_gb=runtime_overhead_gb)

    def make(kind: str, tp: int, pp: int, dp: int, cap: KVCapacity, per_replica: int | None = None) -> ParallelPlan:
        per_replica = per_replica or math.ceil(concurrency / dp)
        est = decode_estimate(m, gpu, precision, batch=max(1, math.ceil(per_replica / pp)), context=context,
                              kv_dtype=kv_dtype, tensor_parallel=tp)
        # PP: a token still passes every stage (same latency as one TP group reading all weights); with enough
        # requests the stages work on different micro-batches, multiplying throughput by up to pp.
        tps = est.tokens_per_s_total * min(pp, per_replica) * dp
        gpus = tp * pp * dp
        return ParallelPlan(kind=kind, tensor_parallel=tp, pipeline_parallel=pp, data_parallel=dp, gpus=gpus,
                            nodes=math.ceil(gpus / node) if tp * pp > 1 or dp > 1 else 1,
                            requests_per_replica=per_replica, capacity=cap, tpot_ms=est.step_time_s * 1e3,
                            tokens_per_s=tps, cost_per_hour=gpus * gpu.price_per_hour,
                            trade_off=TRADE_OFFS[kind].format(tp=tp, pp=pp, dp=dp))

    plans: list[ParallelPlan] = []
    # smallest tensor-parallel group inside one node
    for tp in _tp_options(m, node):
        cap = capacity(tp, 1)
        if _fits(cap, m, context, concurrency):
            plans.append(make("single" if tp == 1 else "tp", tp, 1, 1, cap))
            break
    # smallest pipeline (TP 1), unless one GPU already holds everything
    for pp in range(2, max_pp + 1):
        if pp > max_gpus or any(p.kind == "single" for p in plans):
            break
        cap = capacity(1, pp)
        if _fits(cap, m, context, concurrency):
            plans.append(make("pp", 1, pp, 1, cap))
            break
    # a full node of TP and pipeline stages across nodes, when no single node holds the workload
    if not any(p.kind in ("single", "tp") for p in plans):
        tp_node = max(_tp_options(m, node))
        for pp in range(2, max_pp + 1):
            if tp_node * pp > max_gpus:
                break
            cap = capacity(tp_node, pp)
            if _fits(cap, m, context, concurrency):
                plans.append(make("tp_pp", tp_node, pp, 1, cap))
                break
    # data-parallel replicas of the smallest replica that holds the weights and at least one full request
    for tp in _tp_options(m, node):
        cap = capacity(tp, 1)
        if not _fits(cap, m, context, 1):
            continue
        per_gpu_requests = cap.num_gpu_blocks // math.ceil(kv_tokens_held(m, context) / cap.block_size)
        dp = max(1, math.ceil(concurrency / max(1, per_gpu_requests)))
        if dp > 1 and tp * dp <= max_gpus:
            plans.append(make("dp", tp, 1, dp, cap))
        break
    note = ""
    if not plans:
        note = (f"no plan up to {max_gpus} {gpu.id} GPUs holds {concurrency} x {context} tokens of {m.id} at "
                f"{precision}; try a lower precision, a shorter context or a larger GPU")
    plans.sort(key=lambda p: (p.gpus, p.tpot_ms))
    if target_tokens_per_s and plans:
        base = plans[0]
        # each replica keeps the batch the base plan runs; more replicas mean more concurrent requests served
        replicas = math.ceil(target_tokens_per_s / base.tokens_per_s * base.data_parallel)
        if replicas > base.data_parallel and base.tensor_parallel * base.pipeline_parallel * replicas <= max_gpus:
            scaled = make("dp", base.tensor_parallel, base.pipeline_parallel, replicas, base.capacity,
                          per_replica=base.requests_per_replica)
            plans.append(scaled)
            note = (f"{replicas} replicas of TP {base.tensor_parallel} x PP {base.pipeline_parallel} reach "
                    f"{scaled.tokens_per_s:,.0f} of the {target_tokens_per_s:,.0f} tokens/s target")
    return ParallelReport(model=m.id, gpu=gpu.id, precision=precision, context=context, concurrency=concurrency,
                          plans=plans, note=note, target_tokens_per_s=target_tokens_per_s)
