"""Cost per query and per month, API versus self-hosting, break-even volume, and build-vs-buy.

API: tokens x list price (``data/api_prices.json``, dated, editable). Self-hosting: the smallest parallel plan that
holds ``batch`` concurrent requests, its modelled throughput (prefill from compute, decode from bandwidth) derated by
``utilization`` (average load / provisioned peak: traffic is not flat), and always-on replicas at GPU $/hour.
Build vs buy applies the seed's rule -- build when volume exceeds 50M tokens a month, or fine-tuning is needed, or the
data cannot leave the premises -- and reports what the cost model says beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.planner.catalog import ApiPrice, GPUSpec, ModelConfig
from aisd.planner.loaders import resolve_model
from aisd.planner.parallel import ParallelPlan, plan_parallelism
from aisd.planner.perf import prefill_estimate

HOURS_PER_MONTH = 730.0  # 365 x 24 / 12
BUILD_THRESHOLD_TOKENS_PER_MONTH = 50_000_000  # the seed's rule


@dataclass(frozen=True)
class ApiCost:
    api: str
    provider: str
    prices_as_of: str
    cost_per_query: float
    cost_per_month: float
    cost_per_mtok_blended: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def api_cost(price: ApiPrice, *, input_tokens: int, output_tokens: int, queries_per_month: float) -> ApiCost:
    _check_workload(input_tokens, output_tokens, queries_per_month)
    per_query = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6
    tokens = input_tokens + output_tokens
    return ApiCost(api=price.id, provider=price.provider, prices_as_of=price.as_of, cost_per_query=per_query,
                   cost_per_month=per_query * queries_per_month,
                   cost_per_mtok_blended=per_query / tokens * 1e6 if tokens else 0.0)


@dataclass(frozen=True)
class SelfHostCost:
    model: str
    gpu: str
    precision: str
    price_per_gpu_hour: float
    utilization: float
    batch: int
    plan: ParallelPlan
    gpus_per_replica: int
    replicas: int
    prefill_s_per_query: float
    decode_s_per_query: float
    queries_per_s_per_replica: float  # at full load
    decode_tokens_per_s_per_replica: float
    throughput_source: str  # "model" | "measured"
    cost_per_month: float
    cost_per_query: float  # at the given volume (always-on replicas, so falls with volume)
    cost_per_query_at_capacity: float  # the floor: replicas busy at ``utilization``
    cost_per_mtok: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["plan"] = {k: v for k, v in self.plan.to_dict().items() if k != "capacity"}
        return d


def self_host_cost(model: ModelConfig | str, gpu: GPUSpec, precision: str = "fp16", *, input_tokens: int,
                   output_tokens: int, queries_per_month: float, utilization: float = 0.5, batch: int | None = None,
                   price_per_hour: float | None = None, kv_dtype: str = "fp16",
                   hours_per_month: float = HOURS_PER_MONTH,
                   measured_tokens_per_s: float | None = None) -> SelfHostCost:
    """``measured_tokens_per_s``: a replica's measured aggregate decode throughput (e.g. from an engine benchmark)
    replaces the modelled one."""
    m = resolve_model(model)
    if measured_tokens_per_s is not None and measured_tokens_per_s <= 0:
        raise InvalidRequestError("measured_tokens_per_s must be > 0", param="measured_tokens_per_s")
    _check_workload(input_tokens, output_tokens, queries_per_month)
    if not 0 < utilization <= 1:
        raise InvalidRequestError("utilization must be in (0, 1]", param="utilization")
    if batch is not None and batch < 1:
        raise InvalidRequestError("batch must be >= 1", param="batch")
    price = gpu.price_per_hour if price_per_hour is None else price_per_hour
    if price < 0:
        raise InvalidRequestError("price_per_hour must be >= 0", param="price_per_hour")
    context = input_tokens + max(1, output_tokens)
    plan, chosen = None, batch
    for b in ([batch] if batch else [64, 32, 16, 8, 4, 2, 1]):
        report = plan_parallelism(m, gpu, precision, context=context, concurrency=b, kv_dtype=kv_dtype)
        if report.recommended is not None:
            plan, chosen = report.recommended, b
            break
    if plan is None or chosen is None:
        raise InvalidRequestError(f"{m.id} at {precision} does not fit on up to 512 {gpu.id} GPUs for a "
                                  f"{context}-token request; choose another GPU or precision", param="gpu")
    replica_gpus = plan.tensor_parallel * plan.pipeline_parallel
    prefill = prefill_estimate(m, gpu, precision, tokens=input_tokens, tensor_parallel=plan.tensor_parallel).time_s
    replica_tps = measured_tokens_per_s or plan.tokens_per_s / plan.data_parallel
    decode = output_tokens / replica_tps if output_tokens else 0.0
    qps = 1.0 / (prefill + decode)  # GPU-seconds per query: prefill runs alone, decode shares the batch
    monthly_capacity = qps * 3600 * hours_per_month * utilization
    replicas = max(1, math.ceil(queries_per_month / monthly_capacity))
    replica_month = replica_gpus * price * hours_per_month
    monthly = replicas * replica_month
    per_query = monthly / queries_per_month
    floor = replica_month / monthly_capacity
    return SelfHostCost(model=m.id, gpu=gpu.id, precision=precision, price_per_gpu_hour=price,
                        utilization=utilization, batch=chosen, plan=plan, gpus_per_replica=replica_gpus,
                        replicas=replicas, prefill_s_per_query=prefill, decode_s_per_query=decode,
                        queries_per_s_per_replica=qps, decode_tokens_per_s_per_replica=replica_tps,
                        throughput_source="measured" if measured_tokens_per_s else "model", cost_per_month=monthly, cost_per_query=per_query,
                        cost_per_query_at_capacity=floor,
                        cost_per_mtok=floor / (input_tokens + output_tokens) * 1e6)


@dataclass(frozen=True)
class BreakEven:
    queries_per_month: float | None  # None: self-hosting never beats the API per query
    tokens_per_month: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def break_even(api: ApiCost, host: SelfHostCost, *, input_tokens: int, output_tokens: int) -> BreakEven:
    """Monthly volume at which one always-on replica costs the same as the API: replica $/month / API $/query.

    Beyond one replica both costs grow linearly, so if the API is cheaper per query than a replica at its usable
    capacity, there is no break-even at any volume.
    """
    if api.cost_per_query <= 0:
        return BreakEven(None, None, "the API is free at these prices")
    if host.cost_per_query_at_capacity >= api.cost_per_query:
        return BreakEven(None, None, f"a busy replica costs ${host.cost_per_query_at_capacity:.5f}/query, more than "
                                     f"the API's ${api.cost_per_query:.5f}: self-hosting never breaks even here")
    replica_month = host.gpus_per_replica * host.price_per_gpu_hour * HOURS_PER_MONTH
    q = replica_month / api.cost_per_query
    return BreakEven(q, q * (input_tokens + output_tokens),
                     f"one replica (${replica_month:,.0f}/month) equals the API bill at {q:,.0f} queries/month")


@dataclass(frozen=True)
class Recommendation:
    decision: str  # "build" (self-host) | "buy" (API)
    reasons: list[str] = field(default_factory=list)
    cost_favours: str = ""  # "self-host" | "api" at the given volume

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_vs_buy(tokens_per_month: float, *, fine_tuning: bool = False, data_on_premises: bool = False,
                 api: ApiCost | None = None, host: SelfHostCost | None = None,
                 threshold_tokens: float = BUILD_THRESHOLD_TOKENS_PER_MONTH) -> Recommendation:
    """The seed's rule: build when volume > 50M tokens/month, or fine-tuning is needed, or data must stay in."""
    reasons: list[str] = []
    if data_on_premises:
        reasons.append("the data cannot leave the premises, so a hosted API is ruled out")
    if fine_tuning:
        reasons.append("the use case needs fine-tuning, which needs weights you control")
    if tokens_per_month > threshold_tokens:
        reasons.append(f"volume {tokens_per_month / 1e6:,.1f}M tokens/month exceeds the "
                       f"{threshold_tokens / 1e6:,.0f}M build threshold")
    decision = "build" if reasons else "buy"
    if not reasons:
        reasons.append(f"volume {tokens_per_month / 1e6:,.2f}M tokens/month is under the "
                       f"{threshold_tokens / 1e6:,.0f}M threshold, no fine-tuning, and data may leave: an API needs "
                       f"no GPUs, no on-call and scales to zero")
    favours = ""
    if api is not None and host is not None:
        favours = "self-host" if host.cost_per_month < api.cost_per_month else "api"
        reasons.append(f"at this volume self-hosting costs ${host.cost_per_month:,.0f}/month "
                       f"({host.replicas} x {host.gpus_per_replica} {host.gpu}) vs ${api.cost_per_month:,.0f}/month "
                       f"for {api.api}")
        if decision == "build" and favours == "api" and not (fine_tuning or data_on_premises):
            reasons.append("note: the volume rule says build, but the API is still cheaper at this volume; "
                           "compare the break-even volume before committing")
        if decision == "buy" and favours == "self-host":
            reasons.append("note: self-hosting is already cheaper here; revisit as volume grows")
    return Recommendation(decision=decision, reasons=reasons, cost_favours=favours)


@dataclass(frozen=True)
class CostReport:
    input_tokens: int
    output_tokens: int
    queries_per_month: float
    tokens_per_month: float
    api: ApiCost
    self_host: SelfHostCost
    break_even: BreakEven
    recommendation: Recommendation
    other_apis: list[ApiCost] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "queries_per_month": self.queries_per_month, "tokens_per_month": self.tokens_per_month,
                "api": self.api.to_dict(), "self_host": self.self_host.to_dict(),
                "break_even": self.break_even.to_dict(), "recommendation": self.recommendation.to_dict(),
                "other_apis": [o.to_dict() for o in self.other_apis]}


def cost_report(model: ModelConfig | str, gpu: GPUSpec, price: ApiPrice, precision: str = "fp16", *,
                input_tokens: int = 500, output_tokens: int = 250, queries_per_month: float = 100_000,
                utilization: float = 0.5, batch: int | None = None, price_per_hour: float | None = None,
                fine_tuning: bool = False, data_on_premises: bool = False,
                measured_tokens_per_s: float | None = None,
                compare_prices: list[ApiPrice] | None = None) -> CostReport:
    """The full comparison; ``compare_prices`` adds the API cost of every price listed (the seed's cost per query
    by approach)."""
    a = api_cost(price, input_tokens=input_tokens, output_tokens=output_tokens, queries_per_month=queries_per_month)
    h = self_host_cost(model, gpu, precision, input_tokens=input_tokens, output_tokens=output_tokens,
                       queries_per_month=queries_per_month, utilization=utilization, batch=batch,
                       price_per_hour=price_per_hour, measured_tokens_per_s=measured_tokens_per_s)
    others = [api_cost(p, input_tokens=input_tokens, output_tokens=output_tokens, queries_per_month=queries_per_month)
              for p in compare_prices or [] if p.id != price.id]
    tokens = queries_per_month * (input_tokens + output_tokens)
    return CostReport(input_tokens=input_tokens, output_tokens=output_tokens, queries_per_month=queries_per_month,
                      tokens_per_month=tokens, api=a, self_host=h,
                      break_even=break_even(a, h, input_tokens=input_tokens, output_tokens=output_tokens),
                      recommendation=build_vs_buy(tokens, fine_tuning=fine_tuning, data_on_premises=data_on_premises,
                                                  api=a, host=h),
                      other_apis=others)


def _check_workload(input_tokens: int, output_tokens: int, queries_per_month: float) -> None:
    if input_tokens < 1:
        raise InvalidRequestError("input_tokens must be >= 1", param="input_tokens")
    if output_tokens < 0:
        raise InvalidRequestError("output_tokens must be >= 0", param="output_tokens")
    if not queries_per_month > 0 or queries_per_month == float("inf"):
        raise InvalidRequestError("queries_per_month must be a positive number", param="queries_per_month")
