"""``model_config(name_or_path)``: a catalog id, a GGUF file, a config.json, or a folder holding one of them.

GGUF: the key-value header (``<arch>.block_count``, ``<arch>.attention.head_count_kv`` ...) read by
``gguf_header.read_gguf_header`` (no tensor data is read; cross-checked against ``gguf.GGUFReader`` in
tests/reference); tied embeddings = no ``output.weight`` tensor; the exact weight count comes from the tensor shapes. config.json: the Hugging Face field names
(``num_hidden_layers``, ``num_key_value_heads``, ``head_dim`` ...), including a nested ``text_config``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from aisd.core.errors import InvalidRequestError, ModelNotFoundError, UnsupportedError
from aisd.planner.catalog import Catalog, ModelConfig, default_catalog
from aisd.planner.gguf_header import ArrayInfo, GGUFHeader, read_gguf_header

# Architectures whose MLP is gated (3 matrices) like Llama's; the parameter formula assumes this.
GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2", "gemma3",
                   "gemma3_text", "phi3", "granite", "olmo", "olmo2", "smollm3", "deepseek", "internlm2", "yi"}


def model_config(name_or_path: str | Path, catalog: Catalog | None = None) -> ModelConfig:
    """The architecture of a catalog model (``llama-3-8b``) or of a model on disk (.gguf, config.json, folder)."""
    text = str(name_or_path).strip()
    if not text:
        raise InvalidRequestError("model must be a catalog id or a path, got an empty string", param="model")
    path = Path(text).expanduser()
    if path.exists() or path.suffix.lower() in (".gguf", ".json"):
        return config_from_path(path)
    cat = catalog or default_catalog()
    try:
        return cat.model(text)
    except ModelNotFoundError:
        # "org/Model-Name" hub-style ids: try the bare model name before giving up
        if "/" in text and not text.startswith(("/", ".", "~")):
            try:
                return cat.model(text.rsplit("/", 1)[-1])
            except ModelNotFoundError:
                pass
        raise


def resolve_model(model: ModelConfig | str | Path) -> ModelConfig:
    """A ModelConfig as is, else ``model_config(model)``."""
    return model if isinstance(model, ModelConfig) else model_config(model)


def config_from_path(path: Path) -> ModelConfig:
    if path.is_dir():
        if (path / "config.json").is_file():
            return config_from_json(path / "config.json")
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return config_from_gguf(ggufs[0])
        raise ModelNotFoundError(f"folder {str(path)!r} holds neither config.json nor a .gguf file", param="model")
    if not path.is_file():
        raise ModelNotFoundError(f"model file {str(path)!r} does not exist", param="model")
    if path.suffix.lower() == ".gguf":
        return config_from_gguf(path)
    return config_from_json(path)


def config_from_json(path: Path) -> ModelConfig:
    """Read a Hugging Face config.json (or any JSON object with the same field names)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRequestError(f"{path}: not a readable JSON config ({e})", param="model") from e
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"{path}: expected a JSON object", param="model")
    return config_from_dict(raw, name=path.parent.name or path.stem, source=str(path))


def config_from_dict(raw: dict[str, Any], *, name: str = "custom", source: str = "config dict") -> ModelConfig:
    cfg = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else raw
    model_type = str(cfg.get("model_type", raw.get("model_type", "llama")))

    def first(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        return default

    layers = first("num_hidden_layers", "n_layer", "num_layers")
    hidden = first("hidden_size", "n_embd", "d_model")
    heads = first("num_attention_heads", "n_head")
    missing = [k for k, v in (("num_hidden_layers", layers), ("hidden_size", hidden),
                              ("num_attention_heads", heads)) if v is None]
    if missing:
        raise UnsupportedError(f"{source}: config has no {', '.join(missing)}; the planner needs a decoder-only "
                               f"transformer config", param="model")
    kv_heads = first("num_key_value_heads", "num_kv_heads", default=heads)
    head_dim = first("head_dim", default=hidden // heads)
    experts = first("num_local_experts", "num_experts", "n_routed_experts", default=1)
    moe_inter = first("moe_intermediate_size") if experts and experts > 1 else None
    inter = moe_inter or first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)
    sliding = first("sliding_window")
    if cfg.get("use_sliding_window") is False:  # Qwen2 ships sliding_window but disables it
        sliding = None
    qkv_bias = bool(first("attention_bias", "qkv_bias", default=model_type.startswith("qwen2")))
    note = "" if model_type in GATED_MLP_TYPES else f"; model_type {model_type!r}: parameter count assumes a gated MLP"
    try:
        return ModelConfig(
            id=name.lower(), family=model_type, num_layers=int(layers), hidden_size=int(hidden),
            num_heads=int(heads), num_kv_heads=int(kv_heads), head_dim=int(head_dim), intermediate_size=int(inter),
            vocab_size=int(first("vocab_size", "padded_vocab_size", default=32000)),
            tied_embeddings=bool(first("tie_word_embeddings", default=False)),
            max_context=int(first("max_position_embeddings", "n_positions", "max_sequence_length", default=4096)),
            num_experts=int(experts or 1), experts_per_token=int(first("num_experts_per_tok", default=1)),
            qkv_bias=qkv_bias, sliding_window=int(sliding) if sliding else None, source=source + note)
    except ValueError as e:
        raise InvalidRequestError(f"{source}: {e}", param="model") from e


def gguf_tensor_bytes(header: GGUFHeader) -> int | None:
    """Exact bytes of a GGUF file's tensors from their ggml types (block size and bytes per block come from the
    ``gguf`` package's ``GGML_QUANT_SIZES``); None when a type is unknown to the installed gguf version."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:  # pragma: no cover - gguf is a dependency of aisd
        return None
    total = 0
    for t in header.tensors:
        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(t.ggml_type)]
        except (ValueError, KeyError):
            return None
        total += math.prod(t.shape) // block * size
    return total


def config_from_gguf(path: Path) -> ModelConfig:
    """Read the GGUF key-value header; the weight count is exact (sum of tensor shapes). Cached per
    (file, size, mtime)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise ModelNotFoundError(f"model file {str(path)!r} cannot be read ({e})", param="model") from e
    return _config_from_gguf_cached(str(p), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _config_from_gguf_cached(path_str: str, size: int, mtime_ns: int) -> ModelConfig:
    path = Path(path_str)
    header = read_gguf_header(path)

    def value(key: str, default: Any = None) -> Any:
        v = header.get(key, default)
        return default if isinstance(v, ArrayInfo) else v

    def scalar(key: str, default: Any = None) -> Any:
        v = value(key, default)
        return max(v) if isinstance(v, list) and v else v  # per-layer lists: the largest layer decides

    arch = value("general.architecture", "llama")
    a = f"{arch}."
    layers, hidden, heads = scalar(a + "block_count"), scalar(a + "embedding_length"), scalar(
        a + "attention.head_count")
    if layers is None or hidden is None or heads is None:
        raise UnsupportedError(f"{path}: GGUF header lacks {a}block_count/embedding_length/attention.head_count",
                               param="model")
    kv_heads = scalar(a + "attention.head_count_kv", heads)
    tokens = header.get("tokenizer.ggml.tokens")
    vocab = scalar(a + "vocab_size") or (tokens.length if isinstance(tokens, ArrayInfo) else
                                         len(tokens) if isinstance(tokens, list) else None)
    names = {t.name for t in header.tensors}
    total = sum(math.prod(t.shape) for t in header.tensors)
    stored = gguf_tensor_bytes(header)
    if vocab is None:
        emb = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
        vocab = int(max(emb.shape)) if emb is not None else 32000
    experts = scalar(a + "expert_count", 1) or 1
    ffn = scalar(a + "expert_feed_forward_length") or scalar(a + "feed_forward_length", 4 * int(hidden))
    window = scalar(a + "attention.sliding_window")
    name = value("general.name") or path.stem
    try:
        return ModelConfig(
            id=str(path.stem).lower(), family=str(arch), num_layers=int(layers), hidden_size=int(hidden),
            num_heads=int(heads), num_kv_heads=int(kv_heads),
            head_dim=int(scalar(a + "attention.key_length", int(hidden) // int(heads))),
            intermediate_size=int(ffn), sliding_window=int(window) if window else None,
            vocab_size=int(vocab), tied_embeddings="output.weight" not in names,
            max_context=int(scalar(a + "context_length", 4096)), num_experts=int(experts),
            experts_per_token=int(scalar(a + "expert_used_count", 1) or 1),
            qkv_bias="blk.0.attn_q.bias" in names, published_params=total, file_weight_bytes=stored,
            source=f"GGUF v{header.version} header of {path.name} ({name}); published_params = sum of tensor shapes")
    except ValueError as e:
        raise UnsupportedError(f"{path}: {e}", param="model") from e
