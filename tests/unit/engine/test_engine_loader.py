"""Model loading: GGUF dequantization per quant type, a tiny GGUF written with GGUFWriter (Q/K permutation undone),
safetensors folders, and clear errors for missing, unsupported and truncated models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.quants import dequantize, quantize

from aisd.core.errors import CorruptDataError, ModelNotFoundError, UnsupportedError
from aisd.engine import LLM, SamplingParams
from aisd.engine.loader import load_model
from aisd.engine.tokenizer import _bytes_to_unicode

from .conftest import hf_greedy

torch.set_num_threads(1)


@pytest.mark.parametrize("qtype,tol", [(Q.F32, 0.0), (Q.F16, 1e-3), (Q.BF16, 1e-2), (Q.Q8_0, 0.02), (Q.Q4_0, 0.35),
                                       (Q.Q4_1, 0.25)])
def test_quantize_dequantize_round_trip(qtype: Q, tol: float) -> None:
    x = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    y = dequantize(quantize(x, qtype), qtype)
    assert y.shape == x.shape and np.abs(y - x).max() <= tol + 1e-7
    # the error is bounded by the block's scale: check relative to each row's range as well
    assert np.abs(y - x).mean() < max(tol / 3, 1e-7) + 1e-7


@pytest.mark.parametrize("qtype,block_bytes,f16_at", [(Q.Q4_K, 144, (0, 2)), (Q.Q5_K, 176, (0, 2)),
                                                      (Q.Q6_K, 210, (208,))])
def test_k_quants_agree_with_transformers_independent_dequantizer(qtype: Q, block_bytes: int, f16_at) -> None:
    from transformers.integrations.gguf.dequant import dequantize as hf_dequantize

    rng = np.random.default_rng(int(qtype))
    raw = rng.integers(0, 256, size=(4, 2 * block_bytes), dtype=np.uint8)  # 4 rows of 2 super-blocks (512 values)
    for blk in range(2):
        for off in f16_at:  # scales must be finite: write small float16 values
            scale = rng.uniform(0.01, 0.5, size=4).astype(np.float16)
            raw[:, blk * block_bytes + off: blk * block_bytes + off + 2] = scale.view(np.uint8).reshape(4, 2)
    ours = dequantize(raw, qtype)
    ref = hf_dequantize(torch.from_numpy(raw.copy()), int(qtype)).reshape(ours.shape).numpy()
    assert ours.shape == (4, 512)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (what a GGUF file stores for Q and K)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(src: Path, out: Path, arch: str = "llama", embed_type: Q = Q.F32, extra: bool = False) -> Path:
    from safetensors.torch import load_file

    w = {k: v.numpy() for k, v in load_file(str(src / "model.safetensors")).items()}
    wr = GGUFWriter(str(out), arch)
    wr.add_block_count(2)
    wr.add_context_length(512)
    wr.add_embedding_length(64)
    wr.add_feed_forward_length(128)
    wr.add_head_count(4)
    wr.add_head_count_kv(2)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_rope_freq_base(10000.0)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("default")
    byte_tokens = [ch for _, ch in sorted(_bytes_to_unicode().items())]
    tokens = byte_tokens + ["<s>", "</s>"] + [f"<pad{i}>" for i in range(320 - 258)]
    wr.add_token_list(tokens)
    wr.add_token_types([1] * 256 + [3, 3] + [5] * (320 - 258))
    wr.add_token_merges([])
    wr.add_bos_token_id(256)
    wr.add_eos_token_id(257)
    wr.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    emb = w["model.embed_tokens.weight"]
    if embed_type == Q.F32:
        wr.add_tensor("token_embd.weight", emb)
    else:
        wr.add_tensor("token_embd.weight", quantize(emb, embed_type), raw_dtype=embed_type)
    wr.add_tensor("output_norm.weight", w["model.norm.weight"])
    wr.add_tensor("output.weight", w["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(2):
        for hf, gg in names.items():
            t = w[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, 4)
            elif gg == "attn_k":
                t = _permute(t, 2)
            wr.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(t))
    if extra:  # a tensor type this engine does not dequantize
        wr.add_tensor("blk.0.extra.weight", np.zeros((2, 18), np.uint8), raw_dtype=Q.IQ4_NL)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return out


def test_tiny_gguf_loads_with_qk_unpermuted_and_generates_like_transformers(tiny_llama: Path, hf_tiny_llama,
                                                                            tmp_path: Path) -> None:
    from safetensors.torch import load_file

    path = write_tiny_gguf(tiny_llama, tmp_path / "tiny.gguf")
    loaded = load_model(path)
    ref = load_file(str(tiny_llama / "model.safetensors"))
    assert loaded.format == "gguf" and loaded.config.num_kv_heads == 2 and not loaded.config.tie_word_embeddings
    for name, tensor in ref.items():
        assert torch.equal(loaded.weights[name], tensor), name
    llm = LLM(str(path), num_gpu_blocks=64, block_size=4)
    prompt = [5, 17, 200, 33, 90, 1, 250]
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))[0]
    assert out.outputs[0].token_ids == hf_greedy(hf_tiny_llama, prompt, 8)
    assert llm.tokenizer.decode(llm.tokenizer.encode("héllo wörld")) == "héllo wörld"
    assert llm.tokenizer.eos_token_id == 257


def test_quantized_embedding_is_dequantized(tiny_llama: Path, tmp_path: Path) -> None:
    path = write_tiny_gguf(tiny_llama, tmp_path / "q8.gguf", embed_type=Q.Q8_0)
    emb = load_model(path).weights["model.embed_tokens.weight"]
    from safetensors.torch import load_file

    ref = load_file(str(tiny_llama / "model.safetensors"))["model.embed_tokens.weight"]
    assert emb.shape == ref.shape and (emb - ref).abs().max() < 0.05 * ref.abs().max()


def test_safetensors_folder_loads(tiny_qwen2: Path) -> None:
    m = load_model(tiny_qwen2)
    assert m.format == "safetensors" and m.config.architecture == "qwen2" and m.config.attention_bias


def test_missing_model_is_a_clear_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_model(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_truncated_gguf_is_corrupt_data_naming_the_file(tiny_llama: Path, tmp_path: Path) -> None:
    path = write_tiny_gguf(tiny_llama, tmp_path / "full.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(CorruptDataError, match="cut.gguf"):
        load_model(cut)


def test_unsupported_tensor_type_and_architecture(tiny_llama: Path, tmp_path: Path) -> None:
    path = write_tiny_gguf(tiny_llama, tmp_path / "extra.gguf", extra=True)
    with pytest.raises(UnsupportedError, match="blk.0.extra.weight"):
        load_model(path)
    other = write_tiny_gguf(tiny_llama, tmp_path / "bert.gguf", arch="bert")
    with pytest.raises(UnsupportedError, match="bert"):
        load_model(other)
