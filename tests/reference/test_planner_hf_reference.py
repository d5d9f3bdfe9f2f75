"""Reference check of the planner's formulas against Hugging Face transformers on tiny random models.

The parameter count of ``count_parameters`` must equal ``sum(p.numel())`` of the real module, and the KV bytes per
token must equal the bytes the real KV cache holds after a forward pass, for Llama (GQA), Qwen2 (qkv bias, tied)
and Mixtral (MoE) layouts.
"""

from __future__ import annotations

import pytest

from aisd.planner import config_from_dict, count_parameters, kv_bytes_per_token

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CASES = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=160, num_attention_heads=8,
                  num_key_value_heads=2, num_hidden_layers=3, vocab_size=300, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  num_key_value_heads=2, num_hidden_layers=2, vocab_size=200, tie_word_embeddings=True),
    "mixtral": dict(model_type="mixtral", hidden_size=32, intermediate_size=48, num_attention_heads=4,
                    num_key_value_heads=1, num_hidden_layers=2, vocab_size=100, num_local_experts=4,
                    num_experts_per_tok=2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_formulas_match_transformers(name: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg_dict = CASES[name]
    hf_config = transformers.AutoConfig.for_model(**cfg_dict)
    model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    mine = config_from_dict(hf_config.to_dict(), name=name)

    assert count_parameters(mine).total == sum(p.numel() for p in model.parameters())

    tokens = 7
    with torch.no_grad():
        out = model(torch.arange(tokens).unsqueeze(0), use_cache=True)
    cache = out.past_key_values
    total = 0
    for layer in range(mine.num_layers):
        k, v = cache.layers[layer].keys, cache.layers[layer].values
        assert k.shape[-2] == tokens
        total += k.numel() * k.element_size() + v.numel() * v.element_size()
    assert total == tokens * kv_bytes_per_token(mine, "fp32")
