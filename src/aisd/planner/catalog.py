"""The planner's catalogs: model architectures, accelerators and API prices, shipped as JSON in ``planner/data``.

Lookups are case-insensitive and accept aliases (``Meta-Llama-3-8B`` -> ``llama-3-8b``); an unknown name raises a
404-class error listing the closest known names. Users extend or override any table with a JSON file of the same
shape (``load_models_file`` / ``load_gpus_file`` / ``load_prices_file``) -- prices in particular are dated and meant to
be edited.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError, InvalidRequestError, ModelNotFoundError, NotFoundError


@dataclass(frozen=True)
class ModelConfig:
    """The architecture numbers that decide memory and speed (names follow a config.json)."""

    id: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool = False
    max_context: int = 4096
    family: str = "llama"
    num_experts: int = 1  # MoE: experts per layer (Mixtral: 8)
    experts_per_token: int = 1  # MoE: experts routed per token (Mixtral: 2)
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v projections
    sliding_window: int | None = None  # tokens of KV kept per sequence when the model uses windowed attention
    published_params: int | None = None
    source: str = ""
    file_weight_bytes: int | None = None  # GGUF only: exact bytes of the file's tensors at their stored types

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                     "vocab_size", "max_context", "num_experts", "experts_per_token"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model {self.id!r}: {name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model {self.id!r}: num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                             f"({self.num_kv_heads})")
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"model {self.id!r}: experts_per_token ({self.experts_per_token}) exceeds num_experts "
                             f"({self.num_experts})")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"model {self.id!r}: sliding_window must be a positive integer or null")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def gqa_group(self) -> int:
        """Query heads sharing one KV head (1 = multi-head attention, num_heads = multi-query attention)."""
        return self.num_heads // self.num_kv_heads

    @property
    def params(self) -> int:
        return count_parameters(self).total

    @property
    def active_params(self) -> int:
        return count_parameters(self).active

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        counts = count_parameters(self)
        d.update(params=counts.total, active_params=counts.active, embedding_params=counts.embedding,
                 gqa_group=self.gqa_group)
        return d


@dataclass(frozen=True)
class ParamCount:
    total: int  # every weight stored
    active: int  # weights touched per token (differs from total for MoE)
    embedding: int  # input embedding + untied output head
    per_layer: int  # one decoder layer, all experts


def count_parameters(m: ModelConfig) -> ParamCount:
    """Exact weight count of a Llama-style decoder (RMSNorm, SwiGLU MLP, optional MoE / qkv bias).

    Per layer: q (H x nh*hd), k and v (H x kv*hd each), o (nh*hd x H), MLP 3 x H x I per expert, router H x E, two
    norms; plus embeddings V x H, a final norm, and an untied head V x H. Reproduces Llama-3-8B = 8,030,261,248.
    """
    h, q_dim, kv_dim = m.hidden_size, m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    attn = h * q_dim + 2 * h * kv_dim + q_dim * h + (q_dim + 2 * kv_dim if m.qkv_bias else 0)
    expert = 3 * h * m.intermediate_size
    router = h * m.num_experts if m.is_moe else 0
    norms = 2 * h
    per_layer = attn + m.num_experts * expert + router + norms
    per_layer_active = attn + m.experts_per_token * expert + router + norms
    embedding = m.vocab_size * h * (1 if m.tied_embeddings else 2)
    total = m.num_layers * per_layer + h + embedding
    active = m.num_layers * per_layer_active + h + embedding
    return ParamCount(total=total, active=active, embedding=embedding, per_layer=per_layer)


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: memory, bandwidth, dense tensor throughput and an editable hourly price."""

    id: str
    name: str
    memory_mib: int
    bandwidth_gbs: float
    fp16_tflops: float
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    interconnect_gbs: float = 64.0
    interconnect: str = "PCIe"
    gpus_per_node: int = 8
    price_per_hour: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("memory_mib", "bandwidth_gbs", "fp16_tflops", "interconnect_gbs", "gpus_per_node"):
            if getattr(self, name) <= 0:
                raise ValueError(f"gpu {self.id!r}: {name} must be > 0, got {getattr(self, name)!r}")
        if self.price_per_hour < 0:
            raise ValueError(f"gpu {self.id!r}: price_per_hour must be >= 0")

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 2**20

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    def tflops(self, precision: str) -> float:
        """Dense tensor throughput for a weight precision: FP8 kernels where the part has them, else FP16."""
        if precision in ("fp8",) and self.fp8_tflops:
            return self.fp8_tflops
        return self.fp16_tflops

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(memory_gb=round(self.memory_gb, 2))
        return d


@dataclass(frozen=True)
class ApiPrice:
    """A hosted API's list price in USD per million tokens, dated."""

    id: str
    provider: str
    input_per_mtok: float
    output_per_mtok: float
    as_of: str = ""

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError(f"api price {self.id!r}: prices must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Catalog:
    """The three tables plus aliases; ``default_catalog()`` is the shipped one, ``extend`` layers a user file."""

    models: dict[str, ModelConfig] = field(default_factory=dict)
    model_aliases: dict[str, str] = field(default_factory=dict)
    gpus: dict[str, GPUSpec] = field(default_factory=dict)
    gpu_aliases: dict[str, str] = field(default_factory=dict)
    prices: dict[str, ApiPrice] = field(default_factory=dict)
    prices_as_of: str = ""
    gpu_prices_as_of: str = ""

    def model(self, name: str) -> ModelConfig:
        key = _key(name)
        key = self.model_aliases.get(key, key)
        if key in self.models:
            return self.models[key]
        raise ModelNotFoundError(_unknown("model", name, self.models, self.model_aliases) +
                                 "; or pass a path to a .gguf file or a config.json", param="model")

    def gpu(self, name: str) -> GPUSpec:
        key = _key(name)
        key = self.gpu_aliases.get(key, key)
        if key in self.gpus:
            return self.gpus[key]
        raise NotFoundError(_unknown("GPU", name, self.gpus, self.gpu_aliases), param="gpu")

    def price(self, name: str) -> ApiPrice:
        key = _key(name)
        if key in self.prices:
            return self.prices[key]
        raise NotFoundError(_unknown("API price", name, self.prices, {}), param="api")

    def extend(self, data: dict[str, Any], *, origin: str = "user file") -> Catalog:
        """A copy with the entries of ``data`` (same shape as the shipped JSON) added or replacing same-id ones."""
        out = Catalog(dict(self.models), dict(self.model_aliases), dict(self.gpus), dict(self.gpu_aliases),
                      dict(self.prices), self.prices_as_of, self.gpu_prices_as_of)
        try:
            for row in data.get("models", []):
                m = _model_from_row(row)
                out.models[m.id] = m
            out.model_aliases.update({_key(k): _key(v) for k, v in data.get("model_aliases", {}).items()})
            for row in data.get("gpus", []):
                g = GPUSpec(**{**row, "id": _key(row["id"])})
                out.gpus[g.id] = g
            as_of = data.get("as_of", "")
            for row in data.get("prices", []):
                p = ApiPrice(**{"as_of": as_of, **row, "id": _key(row["id"])})
                out.prices[p.id] = p
        except (TypeError, KeyError, ValueError) as e:
            raise InvalidRequestError(f"{origin}: bad catalog entry: {e}", param="catalog") from e
        out.prices_as_of = as_of or out.prices_as_of
        out.gpu_prices_as_of = data.get("prices_as_of", out.gpu_prices_as_of)
        return out


def _key(name: str) -> str:
    return name.strip().lower()


def _unknown(kind: str, name: str, table: dict[str, Any], aliases: dict[str, str]) -> str:
    close = difflib.get_close_matches(_key(name), list(table) + list(aliases), n=4, cutoff=0.5)
    close = list(dict.fromkeys(aliases.get(c, c) for c in close))
    parts = [f"unknown {kind} {name!r}"]
    if close:
        parts.append(f"did you mean {', '.join(close)}?")
    parts.append(f"known: {', '.join(sorted(table))}")
    return "; ".join(parts)


def _model_from_row(row: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**{**row, "id": _key(row["id"])})


def _read_json(name: str) -> dict[str, Any]:
    path = resources.files("aisd.planner").joinpath("data", name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptDataError(f"planner catalog {name} could not be read: {e}") from e


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The shipped catalog (read once per process)."""
    models_json, gpus_json, prices_json = _read_json("models.json"), _read_json("gpus.json"), _read_json(
        "api_prices.json")
    cat = Catalog()
    cat = cat.extend({"models": models_json["models"],
                      "model_aliases": models_json.get("aliases", {}),
                      "gpus": gpus_json["gpus"], "prices_as_of": gpus_json.get("prices_as_of", ""),
                      "prices": prices_json["prices"], "as_of": prices_json.get("as_of", "")}, origin="shipped")
    cat.gpu_aliases.update({_key(k): _key(v) for k, v in gpus_json.get("aliases", {}).items()})
    return cat


def load_catalog_file(path: str | Path, base: Catalog | None = None) -> Catalog:
    """``base`` (default: shipped) extended with a user JSON file holding any of "models", "gpus", "prices"."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"catalog file {str(p)!r} does not exist", param="catalog")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"catalog file {p}: not valid JSON ({e})", param="catalog") from e
    if not isinstance(data, dict):
        raise InvalidRequestError(f"catalog file {p}: expected a JSON object with models/gpus/prices",
                                  param="catalog")
    return (base or default_catalog()).extend(data, origin=str(p))


def list_models() -> list[ModelConfig]:
    return list(default_catalog().models.values())


def list_gpus() -> list[GPUSpec]:
    return list(default_catalog().gpus.values())


def list_prices() -> list[ApiPrice]:
    return list(default_catalog().prices.values())


def gpu(name: str) -> GPUSpec:
    return default_catalog().gpu(name)


def api_price(name: str) -> ApiPrice:
    return default_catalog().price(name)
