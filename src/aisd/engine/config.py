"""EngineConfig: every knob of the inference engine, validated once, frozen.

Names follow vLLM's engine arguments (``max_num_seqs``, ``max_num_batched_tokens``, ``block_size``,
``enable_prefix_caching``, ``enable_chunked_prefill``) so vLLM users can carry their settings over.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")
SCHEDULING = ("fcfs", "priority")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class EngineConfig:
    """Configuration of one LLMEngine.

    model: a bundled model name (``smollm2-135m-instruct``), a ``.gguf`` file or a Hugging Face safetensors folder.
    num_gpu_blocks: number of KV-cache blocks; None derives it from ``kv_cache_memory_gb`` (vLLM's name kept even on
    CPU). max_model_len: None takes the model's context length.
    """

    model: str = "smollm2-135m-instruct"
    served_model_name: str | None = None
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512
    block_size: int = 16
    num_gpu_blocks: int | None = None
    kv_cache_memory_gb: float = 1.0
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    num_threads: int | None = None
    dtype: str = "float32"
    seed: int = 0
    scheduling: str = "fcfs"
    device: str = "cpu"
    max_logprobs: int = 20

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be a bundled model name, a GGUF file or a safetensors directory")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "max_logprobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_gpu_blocks is not None and self.num_gpu_blocks < 1:
            raise ValueError(f"num_gpu_blocks must be >= 1 or None, got {self.num_gpu_blocks}")
        if self.kv_cache_memory_gb <= 0:
            raise ValueError(f"kv_cache_memory_gb must be > 0, got {self.kv_cache_memory_gb}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2 or None, got {self.max_model_len}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULING)}; got {self.scheduling!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if not self.enable_chunked_prefill and self.max_model_len is not None \
                and self.max_model_len > self.max_num_batched_tokens:
            # Without chunking a whole prompt must fit in one step's token budget (vLLM enforces the same).
            raise ValueError(
                f"without chunked prefill max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_model_len ({self.max_model_len}); enable chunked prefill or raise the budget")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> EngineConfig:
        """Build from any object with matching attributes (``aisd.app.settings.EngineSettings``) plus overrides."""
        names = {f.name for f in fields(cls)}
        values = {n: getattr(settings, n) for n in names if hasattr(settings, n)}
        values.update(overrides)
        return cls(**values)
