"""Reading a model's architecture from a GGUF header and from a config.json on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisd.core.errors import CorruptDataError, InvalidRequestError, ModelNotFoundError, UnsupportedError
from aisd.planner import config_from_dict, count_parameters, kv_bytes_per_token, model_config

LLAMA3_8B_CONFIG = {  # the published config.json of Meta-Llama-3-8B (fields the planner reads, plus noise)
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 128256,
}


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    from aisd.assets import resolve

    try:
        return resolve("smollm2-135m-instruct")
    except ModelNotFoundError as e:
        pytest.fail(f"bundled GGUF not installed (make test installs it): {e}")


def test_gguf_header_of_the_bundled_smollm2(smollm2_gguf: Path) -> None:
    m = model_config(smollm2_gguf)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (30, 576, 9, 3, 64)
    assert m.vocab_size == 49_152 and m.intermediate_size == 1536 and m.tied_embeddings
    assert m.family == "llama" and m.max_context == 8192
    # the formula over the header equals the sum of the file's tensor shapes and the catalog entry
    assert m.published_params == 134_515_008
    assert count_parameters(m).total == 134_515_008 == model_config("smollm2-135m").params
    assert kv_bytes_per_token(m) == kv_bytes_per_token("smollm2-135m") == 2 * 30 * 3 * 64 * 2


def test_gguf_folder_is_accepted(smollm2_gguf: Path) -> None:
    assert model_config(smollm2_gguf.parent).num_layers == 30


def test_config_json_on_disk_matches_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "Meta-Llama-3-8B" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(LLAMA3_8B_CONFIG))
    for ref in (path, path.parent, str(path)):
        m = model_config(ref)
        assert m.id == "meta-llama-3-8b"
        assert m.params == 8_030_261_248
        assert kv_bytes_per_token(m) == 131_072
        assert m.head_dim == 128 and not m.tied_embeddings and m.max_context == 8192


def test_config_with_explicit_head_dim_moe_and_nested_text_config() -> None:
    mixtral = config_from_dict({"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
                                "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
                                "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2,
                                "max_position_embeddings": 32768})
    assert mixtral.params == model_config("mixtral-8x7b").params
    assert mixtral.active_params == model_config("mixtral-8x7b").active_params
    nested = config_from_dict({"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048, "num_attention_heads": 4,
        "num_hidden_layers": 18, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144}})
    assert nested.head_dim == 256 and nested.num_kv_heads == 1
    assert kv_bytes_per_token(nested) == 2 * 18 * 1 * 256 * 2


def test_qwen2_has_qkv_bias_and_disabled_sliding_window() -> None:
    m = config_from_dict({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
                          "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
                          "vocab_size": 151936, "tie_word_embeddings": True, "sliding_window": 32768,
                          "use_sliding_window": False, "max_position_embeddings": 32768})
    assert m.qkv_bias and m.sliding_window is None
    assert m.params == 494_032_768


def test_bad_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="num_hidden_layers"):
        config_from_dict({"hidden_size": 64})
    with pytest.raises(InvalidRequestError, match="multiple of num_kv_heads"):
        config_from_dict({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                          "num_key_value_heads": 3})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidRequestError):
        model_config(bad)
    with pytest.raises(ModelNotFoundError):
        model_config(tmp_path / "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(CorruptDataError):
        model_config(junk)


def _write_gguf(path: Path, *, untied: bool, big_vocab: int = 5000) -> None:
    """A tiny MoE-style GGUF written with the gguf package's own writer."""
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(1024)
    w.add_embedding_length(32)
    w.add_feed_forward_length(48)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_sliding_window(256)
    w.add_token_list([f"t{i}" for i in range(big_vocab)])  # long string array: kept by length only
    w.add_array("llama.custom_per_layer", [1, 2])
    w.add_tensor("token_embd.weight", np.zeros((big_vocab, 32), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float32))
    if untied:
        w.add_tensor("output.weight", np.zeros((big_vocab, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_written_by_the_gguf_package(tmp_path: Path) -> None:
    from aisd.planner.gguf_header import ArrayInfo, read_gguf_header

    path = tmp_path / "tiny-moe.gguf"
    _write_gguf(path, untied=True)
    header = read_gguf_header(path)
    assert header.get("tokenizer.ggml.tokens") == ArrayInfo(element_type=8, length=5000)
    assert header.get("llama.custom_per_layer") == [1, 2]
    assert [t.name for t in header.tensors] == ["token_embd.weight", "blk.0.attn_q.weight", "output.weight"]
    m = model_config(path)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim) == (2, 32, 4, 2, 8)
    assert (m.num_experts, m.experts_per_token, m.sliding_window, m.vocab_size) == (4, 2, 256, 5000)
    assert not m.tied_embeddings and m.published_params == 2 * 5000 * 32 + 32 * 32
    tied = tmp_path / "tiny-tied.gguf"
    _write_gguf(tied, untied=False)
    assert model_config(tied).tied_embeddings


def test_truncated_gguf_is_corrupt_data(tmp_path: Path) -> None:
    path = tmp_path / "whole.gguf"
    _write_gguf(path, untied=False)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptDataError):
        model_config(cut)


def test_gguf_stored_bytes_versus_the_precision_estimate(smollm2_gguf: Path) -> None:
    m = model_config(smollm2_gguf)
    # Q4_1 blocks for the layers, Q8_0 for the tied embedding, F32 norms: exact bytes of the file's tensors
    assert m.file_weight_bytes == 96_576_768
    assert m.file_weight_bytes < smollm2_gguf.stat().st_size < m.file_weight_bytes + 5_000_000  # + header/vocab
    from aisd.planner import weight_bytes

    # the all-Q4_1 estimate is 13% low because this file keeps its embedding at Q8_0
    assert 0.85 < weight_bytes(m, "q4_1") / m.file_weight_bytes < 0.9
