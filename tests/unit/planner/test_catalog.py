"""Catalog numbers against public figures: parameter counts, KV bytes per token, weights by precision."""

from __future__ import annotations

import json

import pytest

from aisd.core.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from aisd.planner import (
    count_parameters,
    default_catalog,
    kv_bytes_per_token,
    kv_bytes_per_token_hidden,
    list_models,
    load_catalog_file,
    model_config,
    weight_bytes,
    weights_by_precision,
)

ISSUE_MODELS = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3.1-8b",
                "llama-3.1-70b", "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "qwen2.5-0.5b", "qwen2.5-1.5b",
                "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "smollm2-135m",
                "smollm2-360m", "smollm2-1.7b"]


def test_catalog_covers_the_issue_models_with_lower_case_ids() -> None:
    ids = {m.id for m in list_models()}
    assert set(ISSUE_MODELS) <= ids
    assert all(i == i.lower() for i in ids)


def test_llama_3_8b_parameter_count_is_exact() -> None:
    assert model_config("llama-3-8b").params == 8_030_261_248


@pytest.mark.parametrize("model", [m for m in ISSUE_MODELS if m != "llama-3.1-405b"])
def test_computed_parameters_match_the_published_totals(model: str) -> None:
    m = model_config(model)
    assert m.published_params is not None
    assert count_parameters(m).total == m.published_params


def test_llama_3_1_405b_is_about_405b() -> None:
    assert 405e9 < model_config("llama-3.1-405b").params < 406e9


def test_mixtral_total_versus_active_parameters() -> None:
    m = model_config("mixtral-8x7b")
    counts = count_parameters(m)
    assert counts.total == 46_702_792_704
    # 2 of 8 experts per token: ~12.9B active (Mixtral paper: 13B active of 47B)
    assert 12.8e9 < counts.active < 13.0e9
    assert counts.active < counts.total


@pytest.mark.parametrize("model,expected", [("llama-2-7b", 524_288), ("llama-3-8b", 131_072),
                                            ("llama-3-70b", 327_680)])
def test_kv_bytes_per_token_fp16_public_figures(model: str, expected: int) -> None:
    assert kv_bytes_per_token(model) == expected
    assert kv_bytes_per_token(model, "fp8") == expected // 2


def test_seed_hidden_dim_formula_overstates_gqa_models() -> None:
    # the seed's 2 x L x hidden x bytes: right for MHA Llama-2-7B, 4x too big for Llama-3-8B, 8x for 70B
    assert kv_bytes_per_token_hidden("llama-2-7b") == kv_bytes_per_token("llama-2-7b")
    assert kv_bytes_per_token_hidden("llama-3-8b") == 524_288
    assert kv_bytes_per_token_hidden("llama-3-8b") / kv_bytes_per_token("llama-3-8b") == 4
    assert kv_bytes_per_token_hidden("llama-3-70b") / kv_bytes_per_token("llama-3-70b") == 8


def test_70b_weights_by_precision_match_the_seed() -> None:
    table = weights_by_precision("llama-3-70b")
    assert table["fp16"] / 1e9 == pytest.approx(141.1, abs=0.1)  # "about 140 GB"
    assert table["fp8"] / 1e9 == pytest.approx(70.55, abs=0.01)  # "FP8 70 GB"
    assert table["fp32"] == 2 * table["fp16"]
    # INT4: 4 bits + a 16-bit scale and 4-bit zero per 128 weights = 4.156 bits -> ~36.7 GB ("about 35 GB")
    assert 34e9 < table["int4"] < 38e9
    assert weight_bytes("llama-3-70b", "int4", group_size=None) == 70_553_706_496 // 2
    # GPTQ/AWQ checkpoints keep embeddings and head in FP16: bigger
    assert weight_bytes("llama-3-70b", "int4", keep_embeddings_fp16=True) > table["int4"] + 2e9


def test_lookup_is_case_insensitive_and_accepts_aliases() -> None:
    assert model_config("Meta-Llama-3-8B").id == "llama-3-8b"
    assert model_config("HuggingFaceTB/SmolLM2-135M-Instruct").id == "smollm2-135m"
    assert default_catalog().gpu("H100").id == "h100-80"


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ModelNotFoundError) as e:
        model_config("llama-3-9b")
    assert "llama-3-8b" in str(e.value) and e.value.param == "model" and e.value.status_code == 404


def test_unknown_gpu_and_price_list_close_names() -> None:
    with pytest.raises(NotFoundError) as e:
        default_catalog().gpu("h100-81")
    assert "h100-80" in str(e.value) and e.value.param == "gpu"
    with pytest.raises(NotFoundError) as e2:
        default_catalog().price("gpt-4")
    assert "gpt-4o" in str(e2.value)


def test_gpu_catalog_has_the_issue_parts_and_dated_prices() -> None:
    cat = default_catalog()
    for g in ("a100-40", "a100-80", "h100-80", "h200", "l4", "rtx-4090", "cpu"):
        spec = cat.gpu(g)
        assert spec.memory_bytes > 0 and spec.bandwidth_gbs > 0 and spec.price_per_hour > 0
    assert cat.gpu("h100-80").fp8_tflops == pytest.approx(2 * cat.gpu("h100-80").fp16_tflops, rel=0.01)
    assert cat.gpu_prices_as_of and cat.prices_as_of


def test_user_catalog_file_adds_and_overrides(tmp_path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({
        "models": [{"id": "My-Model", "num_layers": 2, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2,
                    "head_dim": 16, "intermediate_size": 128, "vocab_size": 100}],
        "gpus": [{"id": "h100-80", "name": "H100 (our contract)", "memory_mib": 81559, "bandwidth_gbs": 3350,
                  "fp16_tflops": 989, "price_per_hour": 1.85}],
        "prices": [{"id": "in-house-llm", "provider": "us", "input_per_mtok": 0.01, "output_per_mtok": 0.02}],
        "as_of": "2026-01"}))
    cat = load_catalog_file(path)
    assert model_config("my-model", cat).num_kv_heads == 2
    assert cat.gpu("h100-80").price_per_hour == 1.85
    assert cat.price("in-house-llm").as_of == "2026-01"
    assert default_catalog().gpu("h100-80").price_per_hour != 1.85  # the shipped catalog is untouched


def test_bad_catalog_entries_are_rejected(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"models": [{"id": "x", "num_layers": 0, "hidden_size": 64, "num_heads": 4,
                                            "num_kv_heads": 3, "head_dim": 16, "intermediate_size": 1,
                                            "vocab_size": 1}]}))
    with pytest.raises(InvalidRequestError):
        load_catalog_file(path)
    with pytest.raises(NotFoundError):
        load_catalog_file(tmp_path / "missing.json")
