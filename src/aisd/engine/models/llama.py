"""Llama-family decoder (Llama, SmolLM2, Mistral, Qwen2 with q/k/v biases) over a paged KV cache.

Functional forward on flattened tokens [T]: weights are kept as contiguous tensors with Q/K/V and gate/up fused into
one matmul each. Numerics follow transformers' LlamaForCausalLM (RMSNorm in float32, rotate-half RoPE,
SiLU-gated MLP) so greedy outputs match it token for token in float32.

``dtype`` is the dtype of the matmul weights (and, in the runner, of the KV cache). With bfloat16 or float16 the
model runs mixed precision, as llama.cpp and oneDNN-backed servers do on CPU: the residual stream, norms, RoPE,
attention and softmax stay float32, and only the matmuls run in the low dtype (inputs cast down, outputs cast back
up). On CPUs with AVX512-BF16 a bfloat16 matmul is ~3x faster than a float32 one (measured: 620 vs 195 GFLOPS at
64 x 576 x 3072 on 2 cores); the tokens then follow float32 closely but not exactly (see docs/engine.md).

With packed weights on CPU and the native library built, ``forward`` runs ``_forward_fused``: the elementwise steps
between the matmuls in fused native passes (``aisd.engine.fused_ops``); ``AISD_NATIVE_KERNELS=0`` keeps the torch ops
below, the reference path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aisd.core.errors import UnsupportedError
from aisd.engine import fused_ops
from aisd.engine.attention import AttentionMetadata, ensure_slot_indices, paged_attention
from aisd.engine.loader import ModelConfig


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [hidden]
    qkv: torch.Tensor  # [(H + 2 KVH) * D, hidden]
    qkv_bias: torch.Tensor | None
    o: torch.Tensor  # [hidden, H * D]
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # [2 * intermediate, hidden]
    down: torch.Tensor  # [hidden, intermediate]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm (Zhang & Sennrich 2019), computed in float32 like transformers' LlamaRMSNorm."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rope_inv_freq(c: ModelConfig, freq_factors: torch.Tensor | None = None) -> torch.Tensor:
    """Rotary inverse frequencies theta^(-2i/d) (Su et al. 2021), with Llama-3 / linear scaling when configured."""
    d = c.head_dim
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    if freq_factors is not None:  # GGUF rope_freqs (llama.cpp's per-dimension divisors)
        return inv / freq_factors.float()
    rs = c.rope_scaling or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind in (None, "default"):
        return inv
    if kind == "linear":
        return inv / float(rs["factor"])
    if kind == "llama3":  # transformers' _compute_llama3_parameters
        factor, low, high = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old = float(rs["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        mid = (1 - smooth) * scaled / factor + smooth * scaled
        is_mid = ~(wavelen < old / high) & ~(wavelen > old / low)
        return torch.where(is_mid, mid, scaled)
    raise UnsupportedError(f"rope scaling {kind!r} is not supported (supported: default, linear, llama3)",
                           param="model")


class LlamaModel:
    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                 max_positions: int | None = None) -> None:
        c = self.config = config
        self.dtype = dtype  # matmul weights
        act = self.act_dtype = torch.float32  # residual stream, norms, RoPE, attention: always float32
        w = weights
        self.embed = w["model.embed_tokens.weight"].to(dtype).contiguous()
        self.lm_head = self.embed if c.tie_word_embeddings else w["lm_head.weight"].to(dtype).contiguous()
        self.norm = w["model.norm.weight"].to(act)
        self.layers: list[LayerWeights] = []
        for i in range(c.num_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            bias = None
            if c.attention_bias:
                bias = torch.cat([w[a + "q_proj.bias"], w[a + "k_proj.bias"], w[a + "v_proj.bias"]]).to(act)
            self.layers.append(LayerWeights(
                input_norm=w[p + "input_layernorm.weight"].to(act),
                qkv=torch.cat([w[a + "q_proj.weight"], w[a + "k_proj.weight"], w[a + "v_proj.weight"]]).to(dtype)
                .contiguous(),
                qkv_bias=bias,
                o=w[a + "o_proj.weight"].to(dtype).contiguous(),
                post_norm=w[p + "post_attention_layernorm.weight"].to(act),
                gate_up=torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]]).to(dtype).contiguous(),
                down=w[p + "mlp.down_proj.weight"].to(dtype).contiguous()))
        n = max_positions or c.max_position_embeddings
        inv = rope_inv_freq(c, w.get("rope_freqs"))
        freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv)  # [n, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)  # [n, D]
        self.cos, self.sin = emb.cos(), emb.sin()  # float32, like the activations
        self.packed = False
        self.fused: bool | None = None  # fused native steps in forward (decided on the first call; see _use_fused)
        # Activation capture (probes, interpretability): called as observer(layer index, residual stream [T, hidden]
        # float32) after every decoder layer of every forward. The tensor may be updated in place later: copy what
        # you keep. None (the default) costs one check per layer.
        self.layer_observer: Callable[[int, torch.Tensor], None] | None = None

    def pack_weights(self) -> bool:
        """Pre-pack every linear weight into oneDNN's blocked layout (what inductor's CPU "freezing" and IPEX do):
        the matmul then skips the per-call weight reorder, ~1.4-3x faster than the default sgemm for these shapes
        on x86. Same maths; the summation order differs from MKL's (~1e-6 relative). Returns False (nothing changed)
        when this torch build has no oneDNN linear."""
        if self.packed:
            return True
        if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
            return False
        try:
            probe = torch.ops.mkldnn._reorder_linear_weight(self.layers[0].o, 64)
            x = torch.randn(3, self.layers[0].o.shape[1], dtype=self.dtype)
            got = torch.ops.mkldnn._linear_pointwise(x, probe, None, "none", [], "").float()
            want = F.linear(x, self.layers[0].o).float()
            # float32: the same sums in another order; 16-bit outputs: rounded to 8 (bf16) or 11 (fp16) bits
            atol = 1e-3 if self.dtype == torch.float32 else 2e-2 * float(want.abs().max())
            if not torch.allclose(got, want, rtol=1e-2, atol=atol):
                return False
        except (RuntimeError, AttributeError):  # an op missing or unsupported in this build
            return False

        def pack(w: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), 64)  # 64: the typical decode batch

        for layer in self.layers:
            layer.qkv, layer.o, layer.gate_up, layer.down = (pack(layer.qkv), pack(layer.o), pack(layer.gate_up),
                                                             pack(layer.down))
        self.lm_head = pack(self.lm_head)  # a separate tensor when tied: the embedding lookup keeps the plain one
        self.packed = True
        return True

    def _linear(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x [T, in] (float32) @ w[out, in]^T (+ bias) -> [T, out] float32, through the pre-packed oneDNN weight when
        packed; with 16-bit weights the matmul runs in their dtype (x cast down, the result cast back up)."""
        if not self.packed and self.dtype == x.dtype:
            return F.linear(x, w, bias)
        out = self._matmul(x, w) if self.packed else F.linear(x.to(self.dtype), w)
        out = out.to(self.act_dtype)  # a no-op in float32
        return out if bias is None else out + bias

    def _matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [T, in] @ packed w[out, in]^T -> [T, out] in the weight dtype (x cast down first; no cast back up)."""
        return torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), w, None, "none", [], "")

    def _use_fused(self, kv_caches: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """The fused path needs packed weights (CPU), float32 or bfloat16 weights and cache, and the native library
        (``AISD_NATIVE_KERNELS=0`` turns it off: the torch ops below are the reference path)."""
        if self.fused is None:
            ok = self.packed and self.dtype in (torch.float32, torch.bfloat16) and fused_ops.available()
            self.fused = bool(ok)
        cache = kv_caches[0][0]
        return self.fused and cache.dtype in (torch.float32, torch.bfloat16) and cache.device.type == "cpu"

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [T, heads, D] rotated by rotate-half RoPE; cos/sin [T, 1, D]."""
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                kv_caches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """input_ids, positions [T] -> final hidden states [T, hidden] (before the final norm)."""
        if self._use_fused(kv_caches):
            return self._forward_fused(input_ids, positions, meta, kv_caches)
        c = self.config
        H, KVH, D = c.num_heads, c.num_kv_heads, c.head_dim
        T = input_ids.shape[0]
        x = F.embedding(input_ids, self.embed).to(self.act_dtype)  # [T, hidden]
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # [T, 1, D]
        k_end = (H + KVH) * D
        observe = self.layer_observer
        for i, (layer, (k_cache, v_cache)) in enumerate(zip(self.layers, kv_caches, strict=True)):
            h = rms_norm(x, layer.input_norm, c.rms_norm_eps)
            qkv = self._linear(h, layer.qkv, layer.qkv_bias)  # [T, (H + 2 KVH) D]
            qk = self._rope(qkv[:, :k_end].view(T, H + KVH, D), cos, sin)  # q and k heads rotated in one pass
            q, k = qk[:, :H], qk[:, H:]  # [T, H, D], [T, KVH, D] (views)
            v = qkv[:, k_end:].view(T, KVH, D)
            attn = paged_attention(q, k, v, k_cache, v_cache, meta)  # [T, H, D]
            x = x + self._linear(attn.view(T, H * D), layer.o)
            h = rms_norm(x, layer.post_norm, c.rms_norm_eps)
            gate, up = self._linear(h, layer.gate_up).chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, layer.down)
            if observe is not None:
                observe(i, x)
        return x

    def _forward_fused(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                       kv_caches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``forward`` through fused_ops: bias + RoPE + cache store in one pass (bit-identical to the torch ops); in
        bfloat16 also residual add + RMSNorm and SiLU x up, so each matmul gets its bfloat16 input directly and its
        bfloat16 output is read once (never widened into a float32 copy)."""
        c = self.config
        H, KVH, D = c.num_heads, c.num_kv_heads, c.head_dim
        T, eps = input_ids.shape[0], c.rms_norm_eps
        low = self.dtype == torch.bfloat16
        ensure_slot_indices(meta, kv_caches[0][0].shape[2])
        x = F.embedding(input_ids, self.embed).to(self.act_dtype)  # [T, hidden], a fresh tensor: updated in place
        delta: torch.Tensor | None = None  # the previous layer's MLP output, not yet added to x (bfloat16 mode)
        observe = self.layer_observer
        for i, (layer, (k_cache, v_cache)) in enumerate(zip(self.layers, kv_caches, strict=True)):
            h = fused_ops.add_rms_norm(x, delta, layer.input_norm, eps) if low \
                else rms_norm(x, layer.input_norm, eps)
            qkv = fused_ops.rope_qkv_store(self._matmul(h, layer.qkv), layer.qkv_bias, self.cos, self.sin,
                                           positions, H, KVH, k_cache, v_cache, meta.slot_blocks,
                                           meta.slot_offsets)  # [T, H + 2 KVH, D] float32, k/v already cached
            attn = paged_attention(qkv[:, :H], qkv[:, H:H + KVH], qkv[:, H + KVH:], k_cache, v_cache, meta,
                                   store=False)  # [T, H, D]
            o = self._matmul(attn.view(T, H * D), layer.o)
            if low:
                h = fused_ops.add_rms_norm(x, o, layer.post_norm, eps)  # x += o; h = norm(x) in bfloat16
                delta = self._matmul(fused_ops.silu_mul_bf16(self._matmul(h, layer.gate_up)), layer.down)
            else:
                x = x + o
                gate, up = self._matmul(rms_norm(x, layer.post_norm, eps), layer.gate_up).chunk(2, dim=-1)
                x = x + self._matmul(F.silu(gate) * up, layer.down)
            if observe is not None:  # bfloat16 mode: the stream is x + the pending delta
                observe(i, x if delta is None else x + delta)
        if delta is not None:
            fused_ops.add_rms_norm(x, delta, None, eps)  # the last residual add
        return x

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [S, hidden] at the positions that sample -> float32 logits [S, vocab]."""
        return self._linear(rms_norm(hidden, self.norm, self.config.rms_norm_eps), self.lm_head).float()
