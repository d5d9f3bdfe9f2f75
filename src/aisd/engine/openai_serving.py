"""Translation between OpenAI's wire types (``aisd.llm.schema``) and engine calls, with no HTTP in it.

The route module parses and validates the JSON body, then calls ``OpenAIServing``: it applies the chat template,
tokenizes, checks the context length (400 naming the field, as OpenAI does), builds ``SamplingParams``, submits to the
``AsyncLLMEngine`` and turns ``RequestOutput`` objects into responses or streaming chunks: cumulative engine text
becomes per-chunk deltas, logprobs take OpenAI's two shapes (chat ``content[]`` and legacy completions
``tokens/token_logprobs/top_logprobs/text_offset``), and usage reports ``prompt_tokens_details.cached_tokens`` from
the prefix cache. Field semantics follow OpenAI's API reference and vLLM's extensions (top_k, min_p, ignore_eos ...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aisd.core.errors import AisdError, InvalidRequestError, ModelNotFoundError, UnsupportedError
from aisd.engine.async_engine import AsyncLLMEngine, RequestStream
from aisd.engine.openai_convert import (
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    chat_logprobs,
    completion_logprobs,
    finish_reason,
    resolve_max_tokens,
    sampling_kwargs,
    usage_of,
)
from aisd.llm.schema import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    new_id,
)


@dataclass
class _Progress:
    """What has already been streamed for one choice: characters of text and number of tokens."""

    chars: int = 0
    tokens: int = 0
    finished: bool = False


@dataclass
class _Submitted:
    """Engine requests behind one API call; ``close()`` aborts whatever is still running."""

    streams: list[RequestStream] = field(default_factory=list)
    engine: AsyncLLMEngine | None = None

    def close(self) -> None:
        for s in self.streams:
            if not s.finished and self.engine is not None:
                self.engine.abort(s.request_id)


# ---- the serving object ----------------------------------------------------------------------------------------
class OpenAIServing:
    """OpenAI-compatible completions and chat completions over one ``AsyncLLMEngine``."""

    def __init__(self, engine: AsyncLLMEngine, *, sampling_params_cls: Callable[..., Any] | None = None,
                 aliases: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self._params_cls = sampling_params_cls
        self.aliases = aliases  # other names accepted in the request's "model" field

    # ---- models ----
    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.model_name, max_model_len=self.engine.max_model_len)])

    def check_model(self, name: str | None) -> None:
        """Accept the served name, its aliases, or no name; anything else is a 404 ``model_not_found``."""
        if name is None or name == "" or name == self.model_name or name in self.aliases:
            return
        raise ModelNotFoundError(f"The model `{name}` does not exist. This server serves `{self.model_name}`.",
                                 param="model", code="model_not_found")

    # ---- building engine inputs ----
    def sampling_params(self, kwargs: dict[str, Any]) -> Any:
        cls = self._params_cls
        if cls is None:
            from aisd.engine.sampling import SamplingParams as cls  # noqa: N813 - imported lazily
        try:
            return cls(**kwargs)
        except AisdError:
            raise
        except (ValueError, TypeError) as exc:
            head = str(exc).split(" ", 1)[0].strip(":'\"`")
            raise InvalidRequestError(str(exc), param=head if head in kwargs else None) from exc

    def chat_prompt_ids(self, request: ChatCompletionRequest) -> list[int]:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in request.messages]
        tok = self.engine.tokenizer
        try:
            text = tok.apply_chat_template(messages, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - a template that rejects the conversation is the caller's 400
            raise InvalidRequestError(f"the chat template rejected the messages: {exc}", param="messages") from exc
        return list(tok.encode(text))

    def completion_prompts(self, request: CompletionRequest) -> list[list[int]]:
        p = request.prompt
        tok = self.engine.tokenizer
        if isinstance(p, str):
            prompts = [tok.encode(p)]
        elif p and all(isinstance(x, int) for x in p):
            prompts = [list(p)]  # one prompt as token ids
        elif p and all(isinstance(x, str) for x in p):
            prompts = [tok.encode(x) for x in p]
        elif p and all(isinstance(x, list) for x in p):
            prompts = [list(x) for x in p]
        else:
            raise InvalidRequestError("prompt must be a string, a list of strings, a list of token ids or a list "
                                      "of token-id lists, and not empty", param="prompt")
        for i, ids in enumerate(prompts):
            if not ids:
                raise InvalidRequestError(f"prompt {i} is empty", param="prompt")
        return prompts

    def _chat_params(self, request: ChatCompletionRequest, prompt_len: int) -> Any:
        if request.top_logprobs and not request.logprobs:
            raise InvalidRequestError("top_logprobs requires logprobs to be true", param="top_logprobs")
        max_tokens = resolve_max_tokens(prompt_len, request.effective_max_tokens(), self.engine.max_model_len,
                                        default=None, prompt_param="messages")
        logprobs = (request.top_logprobs or 0) if request.logprobs else None
        return self.sampling_params(sampling_kwargs(request, max_tokens=max_tokens, logprobs=logprobs))

    async def _submit(self, base_id: str, prompts: list[list[int]], params: list[Any],
                      priority: int) -> _Submitted:
        sub = _Submitted(engine=self.engine)
        try:
            for i, (ids, p) in enumerate(zip(prompts, params, strict=True)):
                rid = base_id if len(prompts) == 1 else f"{base_id}-{i}"
                sub.streams.append(await self.engine.add_request(rid, ids, p, priority=priority))
        except BaseException:
            sub.close()
            raise
        return sub

    # ---- chat completions ----
    async def start_chat(self, request: ChatCompletionRequest) -> tuple[str, _Submitted]:
        """Validate and submit; raises 4xx errors before any byte of a response is sent."""
        self.check_model(request.model)
        ids = self.chat_prompt_ids(request)
        params = self._chat_params(request, len(ids))
        cid = new_id("chatcmpl")
        return cid, await self._submit(cid, [ids], [params], request.priority)

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        cid, sub = await self.start_chat(request)
        try:
            final = await sub.streams[0].final()
        finally:
            sub.close()
        tok = self.engine.tokenizer
        choices = []
        for c in final.outputs:
            lp = chat_logprobs(c.token_ids, c.logprobs, request.top_logprobs or 0, tok) if request.logprobs else None
            choices.append(ChatChoice(index=c.index, message=ChatMessage(role="assistant", content=c.text),
                                      finish_reason=finish_reason(c.finish_reason), logprobs=lp))
        return ChatCompletionResponse(id=cid, model=self.model_name, choices=choices, usage=usage_of([final]))

    async def chat_chunks(self, request: ChatCompletionRequest, cid: str,
                          sub: _Submitted) -> AsyncIterator[ChatCompletionChunk]:
        """Streaming chunks: a role chunk per choice, content deltas, a finish chunk, then usage if asked."""
        created = int(time.time())
        tok = self.engine.tokenizer
        top_n = request.top_logprobs or 0

        def chunk(index: int, delta: ChatDelta, reason: str | None = None,
                  logprobs: ChoiceLogprobs | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=cid, created=created, model=self.model_name,
                                       choices=[ChunkChoice(index=index, delta=delta, finish_reason=reason,
                                                            logprobs=logprobs)])

        try:
            for i in range(request.n):
                yield chunk(i, ChatDelta(role="assistant", content=""))
            seen = [_Progress() for _ in range(request.n)]
            final = None
            async for out in sub.streams[0]:
                final = out
                for c in out.outputs:
                    prog = seen[c.index]
                    if prog.finished:
                        continue
                    text = c.text[prog.chars:] if len(c.text) > prog.chars else ""
                    new_tokens = c.token_ids[prog.tokens:]
                    lp = None
                    if request.logprobs and new_tokens:
                        lp = chat_logprobs(new_tokens, (c.logprobs or [])[prog.tokens:], top_n, tok)
                    reason = finish_reason(c.finish_reason)
                    prog.chars, prog.tokens = max(prog.chars, len(c.text)), len(c.token_ids)
                    if text or lp is not None:
                        yield chunk(c.index, ChatDelta(content=text), None, lp)
                    if reason is not None:
                        prog.finished = True
                        yield chunk(c.index, ChatDelta(), reason)
            if request.stream_options and request.stream_options.include_usage and final is not None:
                yield ChatCompletionChunk(id=cid, created=created, model=self.model_name, choices=[],
                                          usage=usage_of([final]))
        finally:
            sub.close()

    # ---- completions ----
    async def start_completion(self, request: CompletionRequest) -> tuple[str, list[list[int]], _Submitted]:
        self.check_model(request.model)
        if request.suffix:
            raise UnsupportedError("suffix (fill-in-the-middle) is not supported by this model", param="suffix")
        if request.echo and request.logprobs is not None:
            raise UnsupportedError("echo with logprobs needs prompt logprobs, which this engine does not compute",
                                   param="echo")
        prompts = self.completion_prompts(request)
        params = []
        for ids in prompts:
            max_tokens = resolve_max_tokens(len(ids), request.max_tokens, self.engine.max_model_len,
                                            default=COMPLETIONS_DEFAULT_MAX_TOKENS, prompt_param="prompt")
            params.append(self.sampling_params(sampling_kwargs(request, max_tokens=max_tokens,
                                                               logprobs=request.logprobs)))
        cid = new_id("cmpl")
        return cid, prompts, await self._submit(cid, prompts, params, request.priority)

    def _echo(self, request: CompletionRequest, ids: list[int]) -> str:
        return self.engine.tokenizer.decode(ids) if request.echo else ""

    async def completion(self, request: CompletionRequest) -> CompletionResponse:
        cid, prompts, sub = await self.start_completion(request)
        try:
            finals = await asyncio.gather(*(s.final() for s in sub.streams))
        finally:
            sub.close()
        tok = self.engine.tokenizer
        choices = []
        for p_idx, (ids, final) in enumerate(zip(prompts, finals, strict=True)):
            prefix = self._echo(request, ids)
            for c in final.outputs:
                lp = (completion_logprobs(c.token_ids, c.logprobs, request.logprobs or 0, tok, len(prefix))
                      if request.logprobs is not None else None)
                choices.append(CompletionChoice(index=p_idx * request.n + c.index, text=prefix + c.text,
                                                finish_reason=finish_reason(c.finish_reason), logprobs=lp))
        return CompletionResponse(id=cid, model=self.model_name, choices=choices, usage=usage_of(list(finals)))

    async def completion_chunks(self, request: CompletionRequest, cid: str, prompts: list[list[int]],
                                sub: _Submitted) -> AsyncIterator[CompletionResponse]:
        """Streaming completions: text deltas per choice (several prompts interleave), then usage if asked."""
        created = int(time.time())
        tok = self.engine.tokenizer
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(p_idx: int, stream: RequestStream) -> None:
            try:
                async for out in stream:
                    await queue.put((p_idx, out))
            except Exception as exc:  # noqa: BLE001 - forwarded to the consumer
                await queue.put((p_idx, exc))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(sub.streams)]
        try:
            seen: dict[tuple[int, int], _Progress] = {}
            finals: dict[int, Any] = {}
            offsets = {i: len(self._echo(request, ids)) for i, ids in enumerate(prompts)}
            if request.echo:
                for i, ids in enumerate(prompts):
                    for j in range(request.n):
                        yield CompletionResponse(id=cid, created=created, model=self.model_name, choices=[
                            CompletionChoice(index=i * request.n + j, text=self._echo(request, ids))])
            while len(finals) < len(sub.streams):
                p_idx, out = await queue.get()
                if isinstance(out, BaseException):
                    raise out
                if out.finished:
                    finals[p_idx] = out
                for c in out.outputs:
                    prog = seen.setdefault((p_idx, c.index), _Progress())
                    if prog.finished:
                        continue
                    text = c.text[prog.chars:] if len(c.text) > prog.chars else ""
                    new_tokens = c.token_ids[prog.tokens:]
                    lp = None
                    if request.logprobs is not None and new_tokens:
                        lp = completion_logprobs(new_tokens, (c.logprobs or [])[prog.tokens:], request.logprobs,
                                                 tok, offsets[p_idx] + prog.chars)
                    reason = finish_reason(c.finish_reason)
                    prog.chars, prog.tokens = max(prog.chars, len(c.text)), len(c.token_ids)
                    prog.finished = reason is not None
                    if text or reason is not None or lp is not None:
                        yield CompletionResponse(id=cid, created=created, model=self.model_name, choices=[
                            CompletionChoice(index=p_idx * request.n + c.index, text=text, finish_reason=reason,
                                             logprobs=lp)])
            if request.stream_options and request.stream_options.include_usage:
                yield CompletionResponse(id=cid, created=created, model=self.model_name, choices=[],
                                         usage=usage_of([finals[i] for i in sorted(finals)]))
        finally:
            for t in tasks:
                t.cancel()
            sub.close()
