"""Pure conversions between OpenAI's wire fields and the engine's (no engine, no I/O): sampling parameters,
context-length checks, both logprob shapes, usage and finish reasons. Field semantics follow OpenAI's API reference
(defaults: temperature 1, top_p 1, 16 completion tokens) and vLLM's extensions (top_k, min_p, ignore_eos ...).
"""

from __future__ import annotations

from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.llm.schema import (
    ChatCompletionRequest,
    ChoiceLogprobs,
    CompletionLogprobs,
    CompletionRequest,
    TokenLogprob,
    TopLogprob,
    Usage,
)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions


def sampling_kwargs(request: ChatCompletionRequest | CompletionRequest, *, max_tokens: int,
                    logprobs: int | None) -> dict[str, Any]:
    """Keyword arguments of ``SamplingParams`` for a request (OpenAI defaults where the field is absent)."""
    return {
        "n": request.n,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": -1 if request.top_k is None else request.top_k,
        "min_p": 0.0 if request.min_p is None else request.min_p,
        "seed": request.seed,
        "max_tokens": max_tokens,
        "stop": list(request.stop) if request.stop else None,
        "stop_token_ids": list(request.stop_token_ids) if request.stop_token_ids else None,
        "ignore_eos": request.ignore_eos,
        "logprobs": logprobs,
        "presence_penalty": request.presence_penalty or 0.0,
        "frequency_penalty": request.frequency_penalty or 0.0,
        "repetition_penalty": 1.0 if request.repetition_penalty is None else request.repetition_penalty,
    }


def resolve_max_tokens(prompt_len: int, requested: int | None, max_model_len: int | None, *, default: int | None,
                       prompt_param: str) -> int:
    """Completion budget for a prompt; a prompt or budget beyond the context raises a 400 naming the field.

    ``default=None`` means "the rest of the context window" (vLLM's chat default).
    """
    if max_model_len is None:
        return requested or default or COMPLETIONS_DEFAULT_MAX_TOKENS
    if prompt_len >= max_model_len:
        raise InvalidRequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, your {prompt_param} "
            f"has {prompt_len} tokens, leaving no room for a completion. Please reduce the length of the "
            f"{prompt_param}.", param=prompt_param, code="context_length_exceeded")
    room = max_model_len - prompt_len
    if requested is not None:
        if requested > room:
            raise InvalidRequestError(
                f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                f"{prompt_len + requested} tokens ({prompt_len} in the {prompt_param}, {requested} in the "
                f"completion). Please reduce the length of the {prompt_param} or the completion.",
                param="max_tokens", code="context_length_exceeded")
        return requested
    return room if default is None else min(default, room)


def token_text(token_id: int, logprob: Any, tokenizer: Any) -> str:
    decoded = getattr(logprob, "decoded_token", None)
    return decoded if decoded is not None else tokenizer.decode([token_id])


def top_entries(step: dict[int, Any], k: int) -> list[tuple[int, Any]]:
    """The ``k`` most likely entries of one position's logprob dict, by rank (the sampled token may rank lower)."""
    ranked = sorted(step.items(), key=lambda kv: (kv[1].rank if kv[1].rank is not None else 1 << 30,
                                                   -kv[1].logprob))
    return ranked[:k]


def chat_logprobs(token_ids: list[int], steps: list[dict[int, Any]] | None, top_n: int,
                  tokenizer: Any) -> ChoiceLogprobs:
    """OpenAI chat logprobs: one entry per generated token with its ``top_logprobs`` alternatives."""
    content: list[TokenLogprob] = []
    for tok, step in zip(token_ids, steps or [], strict=False):
        chosen = step.get(tok)
        text = token_text(tok, chosen, tokenizer)
        top = [TopLogprob(token=token_text(t, lp, tokenizer), logprob=max(lp.logprob, -9999.0),
                          bytes=list(token_text(t, lp, tokenizer).encode("utf-8")))
               for t, lp in top_entries(step, top_n)] if top_n else []
        content.append(TokenLogprob(token=text, logprob=max(chosen.logprob, -9999.0) if chosen else -9999.0,
                                    bytes=list(text.encode("utf-8")), top_logprobs=top))
    return ChoiceLogprobs(content=content)


def completion_logprobs(token_ids: list[int], steps: list[dict[int, Any]] | None, top_n: int, tokenizer: Any,
                        text_offset: int) -> CompletionLogprobs:
    """Legacy completions logprobs: parallel lists of tokens, their logprobs, top alternatives and text offsets."""
    out = CompletionLogprobs()
    offset = text_offset
    for tok, step in zip(token_ids, steps or [], strict=False):
        chosen = step.get(tok)
        text = token_text(tok, chosen, tokenizer)
        out.tokens.append(text)
        out.token_logprobs.append(chosen.logprob if chosen else None)
        out.top_logprobs.append({token_text(t, lp, tokenizer): lp.logprob for t, lp in top_entries(step, top_n)}
                                if top_n else None)
        out.text_offset.append(offset)
        offset += len(text)
    return out


def usage_of(outputs: list[Any]) -> Usage:
    """Token usage of finished engine outputs, with the prefix cache's ``cached_tokens``."""
    prompt = sum(len(o.prompt_token_ids) for o in outputs)
    completion = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    cached = sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details={"cached_tokens": cached})


def finish_reason(reason: str | None) -> str | None:
    """OpenAI knows ``stop`` and ``length``; an engine-side abort surfaces as ``stop`` with what was generated."""
    return None if reason is None else ("length" if reason == "length" else "stop")
