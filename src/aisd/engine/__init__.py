"""aisd's LLM inference engine: paged KV cache, continuous batching, chunked prefill, prefix caching (vLLM's API).

``from aisd.engine import LLM, SamplingParams`` is the offline entry point; ``LLMEngine`` is the step-wise engine the
server drives. Names are imported lazily so ``import aisd.engine`` stays cheap until something is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aisd.engine.config import EngineConfig
    from aisd.engine.llm import LLM
    from aisd.engine.llm_engine import LLMEngine
    from aisd.engine.outputs import CompletionOutput, EngineStats, Logprob, RequestMetrics, RequestOutput
    from aisd.engine.sampling import SamplingParams

_EXPORTS = {
    "EngineConfig": "aisd.engine.config",
    "SamplingParams": "aisd.engine.sampling",
    "LLM": "aisd.engine.llm",
    "LLMEngine": "aisd.engine.llm_engine",
    "RequestOutput": "aisd.engine.outputs",
    "CompletionOutput": "aisd.engine.outputs",
    "Logprob": "aisd.engine.outputs",
    "RequestMetrics": "aisd.engine.outputs",
    "EngineStats": "aisd.engine.outputs",
}

__all__ = ["EngineConfig", "SamplingParams", "LLM", "LLMEngine", "RequestOutput", "CompletionOutput", "Logprob",
           "RequestMetrics", "EngineStats"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aisd.engine' has no attribute {name!r}")
