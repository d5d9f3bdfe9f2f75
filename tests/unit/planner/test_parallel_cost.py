"""Parallelism plans, cost per query, break-even and the build-vs-buy rule."""

from __future__ import annotations

import pytest

from aisd.core.errors import InvalidRequestError
from aisd.planner import (
    api_cost,
    api_price,
    build_vs_buy,
    cost_report,
    default_catalog,
    plan_parallelism,
    self_host_cost,
    weight_bytes,
)


def gpu(name: str):
    return default_catalog().gpu(name)


def test_small_model_fits_one_gpu() -> None:
    r = plan_parallelism("llama-3-8b", gpu("h100-80"), context=8192, concurrency=8)
    assert r.recommended is not None and r.recommended.kind == "single" and r.recommended.gpus == 1


def test_70b_fp16_needs_several_a100_80s_and_every_plan_fits() -> None:
    r = plan_parallelism("llama-3-70b", gpu("a100-80"), context=4096, concurrency=16)
    assert r.recommended is not None and r.recommended.gpus >= 2  # 141 GB of weights
    kinds = {p.kind for p in r.plans}
    assert {"tp", "pp"} <= kinds
    for p in r.plans:
        cap = p.capacity
        assert cap.fits
        assert cap.weights_per_gpu <= cap.budget_per_gpu
        assert cap.max_concurrency >= p.requests_per_replica
        assert p.trade_off.endswith(".") and len(p.trade_off) > 40
    tp = next(p for p in r.plans if p.kind == "tp")
    assert 64 % tp.tensor_parallel == 0 and tp.tensor_parallel <= 8
    pp = next(p for p in r.plans if p.kind == "pp")
    assert pp.tpot_ms > tp.tpot_ms  # PP gives no latency gain, TP does


def test_int4_needs_fewer_gpus_than_fp16() -> None:
    fp16 = plan_parallelism("llama-3-70b", gpu("a100-80"), "fp16", context=4096, concurrency=4).recommended
    int4 = plan_parallelism("llama-3-70b", gpu("a100-80"), "int4", context=4096, concurrency=4).recommended
    assert int4.gpus == 1 < fp16.gpus


def test_405b_spans_nodes_with_tp_inside_and_pp_across() -> None:
    r = plan_parallelism("llama-3.1-405b", gpu("a100-80"), "fp16", context=8192, concurrency=8)
    assert weight_bytes("llama-3.1-405b") > 8 * 80e9
    tp_pp = next(p for p in r.plans if p.kind == "tp_pp")
    assert tp_pp.tensor_parallel == 8 and tp_pp.pipeline_parallel >= 2 and tp_pp.nodes >= 2


def test_throughput_target_adds_dp_replicas() -> None:
    r = plan_parallelism("llama-3-8b", gpu("l4"), "fp16", context=2048, concurrency=8, target_tokens_per_s=5000)
    rec = r.recommended
    assert rec is not None and rec.tokens_per_s >= 5000 and rec.data_parallel > 1 and rec.kind == "dp"


def test_impossible_workload_reports_no_plan() -> None:
    r = plan_parallelism("llama-3.1-405b", gpu("l4"), "fp32", context=131072, concurrency=1000, max_gpus=16)
    assert r.plans == [] and r.recommended is None and "no plan" in r.note


def test_api_cost_is_tokens_times_price() -> None:
    price = api_price("gpt-4o")  # 2.50 in / 10.00 out per 1M tokens
    c = api_cost(price, input_tokens=1000, output_tokens=500, queries_per_month=1_000_000)
    assert c.cost_per_query == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6)
    assert c.cost_per_month == pytest.approx(7500.0)
    assert c.prices_as_of == "2025-06"


def test_self_hosting_cost_and_break_even_are_consistent() -> None:
    rep = cost_report("llama-3-8b", gpu("h100-80"), api_price("gpt-4o"), input_tokens=500, output_tokens=250,
                      queries_per_month=2_000_000, utilization=0.5)
    h, be = rep.self_host, rep.break_even
    assert h.gpus_per_replica == 1 and h.replicas >= 1
    assert h.cost_per_month == pytest.approx(h.replicas * h.gpus_per_replica * 2.99 * 730)
    assert h.cost_per_query == pytest.approx(h.cost_per_month / 2_000_000)
    assert be.queries_per_month is not None
    # at the break-even volume the API bill equals one always-on replica
    assert be.queries_per_month * rep.api.cost_per_query == pytest.approx(2.99 * 730)
    more = self_host_cost("llama-3-8b", gpu("h100-80"), input_tokens=500, output_tokens=250,
                          queries_per_month=200_000_000, utilization=0.5)
    assert more.replicas > h.replicas


def test_no_break_even_when_the_api_is_cheaper_per_query() -> None:
    rep = cost_report("llama-3-70b", gpu("l4"), api_price("gpt-4.1-nano"), input_tokens=2000, output_tokens=500,
                      queries_per_month=10_000)
    assert rep.break_even.queries_per_month is None and "never" in rep.break_even.reason


@pytest.mark.parametrize("tokens,ft,prem,decision", [
    (49e6, False, False, "buy"),
    (51e6, False, False, "build"),
    (1e6, True, False, "build"),
    (1e6, False, True, "build"),
])
def test_build_vs_buy_applies_the_seed_rule(tokens, ft, prem, decision) -> None:
    rec = build_vs_buy(tokens, fine_tuning=ft, data_on_premises=prem)
    assert rec.decision == decision
    text = " ".join(rec.reasons)
    if ft:
        assert "fine-tuning" in text
    if prem:
        assert "premises" in text
    if tokens > 50e6:
        assert "50M" in text


def test_cost_inputs_are_validated() -> None:
    with pytest.raises(InvalidRequestError) as e:
        self_host_cost("llama-3-8b", gpu("h100-80"), input_tokens=100, output_tokens=10, queries_per_month=0)
    assert e.value.param == "queries_per_month"
    with pytest.raises(InvalidRequestError) as e2:
        self_host_cost("llama-3-8b", gpu("h100-80"), input_tokens=100, output_tokens=10, queries_per_month=10,
                       utilization=0)
    assert e2.value.param == "utilization"


def test_measured_throughput_replaces_the_model_and_other_apis_are_listed() -> None:
    from aisd.planner import list_prices

    modelled = self_host_cost("llama-3-8b", gpu("h100-80"), input_tokens=500, output_tokens=250,
                              queries_per_month=1e6)
    measured = self_host_cost("llama-3-8b", gpu("h100-80"), input_tokens=500, output_tokens=250,
                              queries_per_month=1e6, measured_tokens_per_s=500.0)
    assert modelled.throughput_source == "model" and measured.throughput_source == "measured"
    assert measured.decode_s_per_query == pytest.approx(250 / 500.0)
    assert measured.queries_per_s_per_replica == pytest.approx(1 / (measured.prefill_s_per_query + 0.5))
    assert measured.cost_per_query_at_capacity > modelled.cost_per_query_at_capacity
    rep = cost_report("llama-3-8b", gpu("h100-80"), api_price("gpt-4o"), queries_per_month=1e5,
                      compare_prices=list_prices())
    assert len(rep.other_apis) == len(list_prices()) - 1
    assert all(o.api != "gpt-4o" for o in rep.other_apis)
