"""Roofline decode/prefill model and the latency budget, including measured engine numbers from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisd.core.errors import InvalidRequestError, NotFoundError
from aisd.planner import (
    decode_estimate,
    default_catalog,
    kv_bytes_per_token,
    latency_budget,
    load_measured,
    measured_from_dict,
    model_config,
    prefill_estimate,
    weight_bytes,
)
from aisd.planner.perf import expected_experts_touched, weight_bytes_read


@pytest.fixture()
def h100():
    return default_catalog().gpu("h100-80")


def test_decode_at_batch_one_is_weights_plus_kv_over_bandwidth(h100) -> None:
    est = decode_estimate("llama-3-8b", h100, "fp16", batch=1, context=1000, bandwidth_efficiency=1.0)
    nbytes = weight_bytes("llama-3-8b", "fp16") + 1000 * kv_bytes_per_token("llama-3-8b")
    assert est.bound == "memory"
    assert est.step_time_s == pytest.approx(nbytes / 3350e9)
    assert est.tokens_per_s_per_sequence == pytest.approx(3350e9 / nbytes)  # ~205 tok/s upper bound


def test_decode_is_batch_aware(h100) -> None:
    e1 = decode_estimate("llama-3-8b", h100, batch=1, context=1024)
    e32 = decode_estimate("llama-3-8b", h100, batch=32, context=1024)
    assert e32.bytes_per_step == e1.bytes_per_step + 31 * 1024 * 131_072  # weights read once, KV per sequence
    assert e32.tokens_per_s_total > 10 * e1.tokens_per_s_total  # batching amortizes the weights
    assert e32.tokens_per_s_per_sequence < e1.tokens_per_s_per_sequence
    huge = decode_estimate("llama-3-8b", h100, batch=4096, context=1)
    assert huge.bound == "compute"


def test_quantized_weights_decode_faster(h100) -> None:
    fp16 = decode_estimate("llama-3-70b", h100, "fp16", tensor_parallel=4)
    int4 = decode_estimate("llama-3-70b", h100, "int4", tensor_parallel=4)
    assert 3 < int4.tokens_per_s_per_sequence / fp16.tokens_per_s_per_sequence < 4


def test_moe_reads_only_the_experts_a_batch_touches() -> None:
    assert expected_experts_touched(8, 2, 1) == pytest.approx(2)
    assert expected_experts_touched(8, 2, 1000) == pytest.approx(8)
    m = model_config("mixtral-8x7b")
    assert weight_bytes_read(m, "fp16", 1) == pytest.approx(2 * m.active_params, rel=1e-9)
    assert weight_bytes_read(m, "fp16", 10_000) == pytest.approx(2 * m.params, rel=1e-6)


def test_prefill_is_compute_bound_2_n_t(h100) -> None:
    est = prefill_estimate("llama-3-8b", h100, tokens=2048, mfu=0.5)
    dense = 2 * 8_030_261_248 * 2048
    assert est.flops > dense and est.flops == pytest.approx(dense, rel=0.1)
    assert est.time_s == pytest.approx(est.flops / (989e12 * 0.5))
    # FP8 kernels double the peak on Hopper
    assert prefill_estimate("llama-3-8b", h100, "fp8", tokens=2048).compute_time_s == pytest.approx(
        est.compute_time_s / 2, rel=0.01)


def test_latency_budget_uses_the_seed_defaults_and_modelled_times(h100) -> None:
    b = latency_budget("llama-3-8b", h100, prompt_tokens=1000, output_tokens=200)
    parts = {i.component: i.ms for i in b.items}
    assert 50 <= parts["network"] <= 100 and 5 <= parts["tokenization"] <= 10 and 10 <= parts["postprocessing"] <= 20
    assert parts["decode"] == pytest.approx(200 * b.tpot_ms)
    assert 2 < b.tpot_ms < 20  # seed: decode 10-50 ms per token; an H100 runs an 8B faster
    assert b.total_ms == pytest.approx(sum(parts.values()))
    assert b.ttft_ms == pytest.approx(parts["network"] + parts["tokenization"] + parts["prefill"])


def test_latency_budget_prefers_measured_engine_numbers(tmp_path: Path, h100) -> None:
    path = tmp_path / "engine_latency.json"
    path.write_text(json.dumps({"machine": {"cores": 2}, "results": [
        {"model": "smollm2-135m-instruct", "batch_size": 1, "prompt_tokens": 256,
         "ttft_ms_median": 120.0, "tpot_ms_median": 38.5}]}))
    measured = load_measured(path)
    assert (measured.ttft_ms, measured.tpot_ms, measured.prompt_tokens) == (120.0, 38.5, 256)
    b = latency_budget("smollm2-135m", None, prompt_tokens=512, output_tokens=100, measured=measured,
                       network_ms=0, tokenization_ms=1, postprocessing_ms=2)
    parts = {i.component: i for i in b.items}
    assert parts["prefill"].ms == pytest.approx(240.0)  # scaled linearly 256 -> 512 prompt tokens
    assert parts["decode"].ms == pytest.approx(3850.0)
    assert "measured" in parts["decode"].source and parts["network"].source == "given"
    assert b.total_ms == pytest.approx(0 + 1 + 240 + 3850 + 2)


@pytest.mark.parametrize("doc,ttft,tpot", [
    ({"ttft_median_ms": 10, "tpot_median_ms": 2}, 10, 2),
    ({"summary": {"median_ttft_ms": 11, "median_itl_ms": 3}}, 11, 3),
    ({"ttft_s_median": 0.5, "decode_tokens_per_s": 25.0}, 500, 40),
    ([{"ttft_p50_ms": 7, "tpot_p50_ms": 1.5}], 7, 1.5),
])
def test_measured_files_are_read_defensively(doc, ttft, tpot) -> None:
    m = measured_from_dict(doc)
    assert m.ttft_ms == pytest.approx(ttft) and m.tpot_ms == pytest.approx(tpot)


def test_measured_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_measured(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"throughput": 5}))
    with pytest.raises(InvalidRequestError) as e:
        load_measured(bad)
    assert e.value.param == "measured"
    with pytest.raises(InvalidRequestError) as e2:
        latency_budget("llama-3-8b", None)
    assert e2.value.param == "gpu"


def test_reads_the_engine_serving_benchmark_layout(tmp_path: Path) -> None:
    # the shape bench/engine_serving.py writes: args.input_len, then rows whose first is the sequential baseline
    doc = {"benchmark": "engine_serving", "args": {"input_len": 128, "output_len": 32},
           "engine_stats_after": {"model": "smollm2-135m-instruct"},
           "rows": [{"rate": "sequential (1 at a time)", "ttft_p50_ms": 1040.7, "tpot_p50_ms": 250.9,
                     "itl_p50_ms": 300.7},
                    {"rate": "inf (burst)", "ttft_p50_ms": 13185.4, "tpot_p50_ms": 675.5}]}
    path = tmp_path / "engine_serving_quick.json"
    path.write_text(json.dumps(doc))
    m = load_measured(path)
    assert (m.ttft_ms, m.tpot_ms, m.prompt_tokens, m.model) == (1040.7, 250.9, 128, "smollm2-135m-instruct")
    b = latency_budget("smollm2-135m", None, prompt_tokens=128, output_tokens=32, measured=m)
    assert b.tpot_ms == 250.9 and {i.component: i.ms for i in b.items}["prefill"] == 1040.7

    burst = load_measured(path, row="inf")
    assert (burst.ttft_ms, burst.tpot_ms, burst.prompt_tokens) == (13185.4, 675.5, 128)
    with pytest.raises(InvalidRequestError) as e:
        load_measured(path, row="no such row")
    assert e.value.param == "measured_row"
