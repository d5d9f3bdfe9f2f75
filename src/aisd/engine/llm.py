"""LLM: the offline batch API (vLLM's ``LLM``): give it all prompts, get one RequestOutput per prompt, in order."""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.core.progress import progress
from aisd.engine.config import EngineConfig
from aisd.engine.llm_engine import LLMEngine
from aisd.engine.outputs import RequestOutput
from aisd.engine.sampling import SamplingParams


class LLM:
    """``LLM("smollm2-135m-instruct").generate(["Hello"], SamplingParams(max_tokens=32))``.

    ``model`` is a bundled name, a GGUF file or a safetensors folder; other keyword arguments are EngineConfig fields.
    """

    def __init__(self, model: str = "smollm2-135m-instruct", **config_kwargs: Any) -> None:
        self.config = EngineConfig(model=str(model), **config_kwargs)
        self.engine = LLMEngine.from_config(self.config)
        self._ids = itertools.count()

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def get_tokenizer(self) -> Any:
        return self.engine.tokenizer

    def generate(self, prompts: str | list[str] | list[list[int]], sampling_params: SamplingParams | Seq[SamplingParams]
                 | None = None, use_tqdm: bool = False, *, priority: list[int] | None = None) -> list[RequestOutput]:
        """Run every prompt to completion with continuous batching; outputs come back in the prompts' order.
        ``use_tqdm=True`` reports progress (finished requests) through aisd.core.progress."""
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]  # type: ignore[list-item]
        prompts = list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = [sampling_params] * len(prompts) if isinstance(sampling_params, SamplingParams) \
            else list(sampling_params)
        if len(params) != len(prompts):
            raise InvalidRequestError(f"got {len(params)} sampling params for {len(prompts)} prompts",
                                      param="sampling_params")
        ids = [f"offline-{next(self._ids)}" for _ in prompts]
        for i, (rid, prompt, p) in enumerate(zip(ids, prompts, params, strict=True)):
            self.engine.add_request(rid, prompt, p, priority=priority[i] if priority else 0)
        return self._run(ids, use_tqdm)

    def reset_prefix_cache(self) -> bool:
        """Forget the cached prompt prefixes (vLLM's ``LLM.reset_prefix_cache``); False while requests are running."""
        return self.engine.reset_prefix_cache()

    def chat(self, messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
             sampling_params: SamplingParams | Seq[SamplingParams] | None = None, use_tqdm: bool = False,
             add_generation_prompt: bool = True) -> list[RequestOutput]:
        """Apply the model's chat template to one conversation or a list of them, then generate."""
        convs = [messages] if messages and isinstance(messages[0], dict) else messages
        prompts = [self.engine.tokenizer.apply_chat_template(c, add_generation_prompt=add_generation_prompt)
                   for c in convs]  # type: ignore[arg-type]
        return self.generate(prompts, sampling_params, use_tqdm)

    def _run(self, ids: list[str], use_tqdm: bool) -> list[RequestOutput]:
        done: dict[str, RequestOutput] = {}
        wanted = set(ids)

        def steps():
            while len(done) < len(wanted) and self.engine.has_unfinished_requests():
                finished = 0
                for out in self.engine.step():
                    if out.finished and out.request_id in wanted:
                        done[out.request_id] = out
                        finished += 1
                for _ in range(finished):
                    yield None

        runner = progress(steps(), total=len(ids), desc="generating") if use_tqdm else steps()
        for _ in runner:
            pass
        return [done[i] for i in ids]
