"""Model loading: a bundled name, a GGUF file or a Hugging Face safetensors folder -> ModelConfig + fp32 weights.

Weights come back in Hugging Face naming (``model.layers.0.self_attn.q_proj.weight`` ...), as float32 torch
tensors of shape [out_features, in_features], whatever the source format, so the model code has one path.

GGUF notes: llama.cpp's converter permutes the rows of Q and K for ``llama`` models so its rotary kernel can rotate
adjacent pairs (convert_hf_to_gguf.py ``LlamaModel.permute``); we undo it the way transformers' GGUF loader does.
Qwen2 files are not permuted. Quantized tensors are dequantized with ``gguf.quants.dequantize``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisd.core.errors import CorruptDataError, ModelNotFoundError, UnsupportedError
from aisd.core.progress import progress

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "mistral")
SUPPORTED_GGML_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                        "Q6_K")
HF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "MistralForCausalLM": "mistral"}


@dataclass(frozen=True)
class ModelConfig:
    """Llama-family hyper-parameters (Llama, SmolLM2, Mistral, Qwen2)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    rope_scaling: dict[str, Any] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedError(f"architecture {self.architecture!r} is not supported; supported: "
                                   f"{', '.join(SUPPORTED_ARCHITECTURES)}", param="model")
        if self.num_heads % self.num_kv_heads:
            raise CorruptDataError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V for every layer, fp32 (PagedAttention sizing)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 4


@dataclass
class LoadedModel:
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    source: Path
    format: str  # "gguf" | "safetensors"
    metadata: dict[str, Any] = field(default_factory=dict)  # GGUF key/values (tokenizer.*, chat template ...)


# ---- resolving the name ----------------------------------------------------------------------------------------------
def resolve_model_path(model: str) -> Path:
    """A bundled name, a .gguf file or a folder with config.json; ModelNotFoundError otherwise."""
    from aisd import assets

    path = Path(model).expanduser()
    if path.exists():
        return path
    if assets.is_bundled(model):
        return assets.resolve(model)
    raise ModelNotFoundError(
        f"model {model!r} not found: not a file or folder on disk and not a bundled model "
        f"(bundled: {', '.join(sorted(n for n, m in assets.BUNDLED.items() if m.kind == 'llm'))})", param="model")


def load_model(model: str | Path) -> LoadedModel:
    path = resolve_model_path(str(model))
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").exists():
            return load_safetensors(path)
        if len(ggufs) == 1:
            return load_gguf(ggufs[0])
        raise ModelNotFoundError(f"{path} has neither config.json + *.safetensors nor exactly one .gguf file",
                                 param="model")
    if path.suffix == ".gguf" or _is_gguf(path):
        return load_gguf(path)
    raise UnsupportedError(f"{path}: not a GGUF file (no GGUF magic) and not a safetensors folder", param="model")


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


# ---- GGUF ---------------------------------------------------------------------------------------------------------
def gguf_metadata(reader: Any) -> dict[str, Any]:
    """All key/values of a GGUFReader as Python values (strings, numbers, lists)."""
    out: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            if len(fld.types) == 2 and fld.types[0].name == "ARRAY" and fld.types[1].name == "STRING":
                # fast path for the 50k-entry vocab/merges arrays (contents() is ~50x slower)
                parts = fld.parts
                out[key] = [bytes(parts[i]).decode("utf-8", errors="replace") for i in fld.data]
            else:
                out[key] = fld.contents()
        except Exception:  # noqa: BLE001 - an odd field must not stop loading; the model may not need it
            log.debug("could not decode GGUF field %s", key)
    return out


def _gguf_name(name: str) -> str | None:
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight", "rope_freqs.weight": "rope_freqs"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if not m:
        return None
    layer, part, kind = m.groups()
    parts = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    if part not in parts:
        return None
    return f"model.layers.{layer}.{parts[part]}.{kind}"


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K row permutation (convert_hf_to_gguf.py LlamaModel.permute)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def load_gguf(path: Path) -> LoadedModel:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"GGUF file {path} does not exist", param="model")
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure means a bad file
        raise CorruptDataError(f"{path}: cannot read as GGUF ({type(e).__name__}: {e}); the file is truncated "
                               f"or not a GGUF model") from e
    meta = gguf_metadata(reader)
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedError(f"{path}: architecture {arch!r} is not supported; supported: "
                               f"{', '.join(SUPPORTED_ARCHITECTURES)}", param="model")

    def g(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    names = {t.name for t in reader.tensors}
    n_head = int(g("attention.head_count"))
    n_kv = int(g("attention.head_count_kv", n_head))
    hidden = int(g("embedding_length"))
    tokens = meta.get("tokenizer.ggml.tokens")
    config = ModelConfig(
        architecture=arch,
        vocab_size=int(g("vocab_size", len(tokens) if tokens else 0)),
        hidden_size=hidden,
        intermediate_size=int(g("feed_forward_length")),
        num_layers=int(g("block_count")),
        num_heads=n_head,
        num_kv_heads=n_kv,
        head_dim=int(g("attention.key_length", hidden // n_head)),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(g("rope.freq_base", 10000.0)),
        max_position_embeddings=int(g("context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        name=str(meta.get("general.name", path.stem)),
    )
    weights: dict[str, torch.Tensor] = {}
    for t in progress(reader.tensors, total=len(reader.tensors), desc=f"loading {path.name}"):
        hf = _gguf_name(t.name)
        if hf is None:
            raise UnsupportedError(f"{path}: tensor {t.name!r} is not part of a {arch} model this engine knows",
                                   param="model")
        qtype = t.tensor_type.name
        if qtype not in SUPPORTED_GGML_TYPES:
            raise UnsupportedError(f"{path}: tensor {t.name!r} has type {qtype}; supported types: "
                                   f"{', '.join(SUPPORTED_GGML_TYPES)}", param="model")
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # GGUF lists dims innermost first
        if t.data.nbytes != int(t.n_bytes):
            raise CorruptDataError(f"{path}: tensor {t.name!r} should have {int(t.n_bytes)} bytes but the file holds "
                                   f"{t.data.nbytes}: the file is truncated")
        try:
            arr = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32, copy=False)
        except Exception as e:  # noqa: BLE001
            raise CorruptDataError(f"{path}: cannot dequantize tensor {t.name!r} ({qtype}, shape {shape}): {e}") from e
        if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_q.bias")):
            arr = unpermute_qk(arr, n_head)
        elif arch == "llama" and t.name.endswith(("attn_k.weight", "attn_k.bias")):
            arr = unpermute_qk(arr, n_kv)
        if not arr.flags.writeable or not arr.flags.c_contiguous:  # F32 tensors are views of the read-only mmap
            arr = np.array(arr, copy=True, order="C")
        weights[hf] = torch.from_numpy(arr)
    _check_complete(weights, config, path)
    return LoadedModel(config, weights, path, "gguf", meta)


# ---- safetensors ----------------------------------------------------------------------------------------------------
def load_safetensors(folder: Path) -> LoadedModel:
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptDataError(f"{folder / 'config.json'}: cannot read model config: {e}") from e
    archs = cfg.get("architectures") or []
    arch = next((HF_ARCHITECTURES[a] for a in archs if a in HF_ARCHITECTURES), cfg.get("model_type"))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedError(f"{folder}: architecture {archs or cfg.get('model_type')!r} is not supported; "
                               f"supported: {', '.join(HF_ARCHITECTURES)}", param="model")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"{folder}: no *.safetensors weight files", param="model")
    weights: dict[str, torch.Tensor] = {}
    for f in progress(files, desc=f"loading {folder.name}"):
        try:
            part = load_file(str(f))
        except Exception as e:  # noqa: BLE001
            raise CorruptDataError(f"{f}: cannot read safetensors ({e}); the file is truncated or corrupt") from e
        weights.update({k: v.to(torch.float32) for k, v in part.items()})
    n_head = int(cfg["num_attention_heads"])
    eos = cfg.get("eos_token_id")
    config = ModelConfig(
        architecture=arch,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=n_head,
        num_kv_heads=int(cfg.get("num_key_value_heads") or n_head),
        head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // n_head),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        tie_word_embeddings="lm_head.weight" not in weights,
        attention_bias="model.layers.0.self_attn.q_proj.bias" in weights,
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
        rope_scaling=cfg.get("rope_scaling"),
        name=folder.name,
    )
    _check_complete(weights, config, folder)
    return LoadedModel(config, weights, folder, "safetensors", {"hf_config": cfg})


def _check_complete(weights: dict[str, torch.Tensor], c: ModelConfig, where: Path) -> None:
    """Every tensor the model needs is present with the expected shape; the message names the first that is not."""
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    expected: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c.vocab_size, c.hidden_size),
                                            "model.norm.weight": (c.hidden_size,)}
    if not c.tie_word_embeddings:
        expected["lm_head.weight"] = (c.vocab_size, c.hidden_size)
    for i in range(c.num_layers):
        p = f"model.layers.{i}."
        expected.update({
            p + "input_layernorm.weight": (c.hidden_size,), p + "post_attention_layernorm.weight": (c.hidden_size,),
            p + "self_attn.q_proj.weight": (q, c.hidden_size), p + "self_attn.k_proj.weight": (kv, c.hidden_size),
            p + "self_attn.v_proj.weight": (kv, c.hidden_size), p + "self_attn.o_proj.weight": (c.hidden_size, q),
            p + "mlp.gate_proj.weight": (c.intermediate_size, c.hidden_size),
            p + "mlp.up_proj.weight": (c.intermediate_size, c.hidden_size),
            p + "mlp.down_proj.weight": (c.hidden_size, c.intermediate_size)})
        if c.attention_bias:
            expected.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                             p + "self_attn.v_proj.bias": (kv,)})
    for name, shape in expected.items():
        if name not in weights:
            raise CorruptDataError(f"{where}: tensor {name!r} is missing (expected shape {list(shape)})")
        if tuple(weights[name].shape) != shape:
            raise CorruptDataError(f"{where}: tensor {name!r} has shape {list(weights[name].shape)}, "
                                   f"expected {list(shape)}")
