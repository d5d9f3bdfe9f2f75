"""A deterministic LLMClient for unit tests: answers come from a function of the request or a script."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aisd.llm.schema import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatMessage,
    ChunkChoice,
    Usage,
    new_id,
)

Responder = Callable[[ChatCompletionRequest], str]


class FakeLLMClient:
    """Replies with ``responder(request)``, or pops ``script`` in order, or echoes the last user message.

    Every request is recorded in ``self.requests`` so tests can assert on the prompts that were sent.
    Token counts are whitespace word counts.
    """

    def __init__(self, responder: Responder | None = None, *, script: list[str] | None = None,
                 model: str = "fake", context_window: int | None = 4096) -> None:
        self._responder = responder
        self._script = list(script or [])
        self._model = model
        self._context_window = context_window
        self.requests: list[ChatCompletionRequest] = []

    @property
    def model_name(self) -> str:
        return self._model

    def context_window(self) -> int | None:
        return self._context_window

    def _reply(self, request: ChatCompletionRequest) -> str:
        self.requests.append(request)
        if self._responder is not None:
            return self._responder(request)
        if self._script:
            return self._script.pop(0)
        users = [m for m in request.messages if m.role == "user"]
        return users[-1].text() if users else ""

    def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        text = self._reply(request)
        prompt_tokens = sum(len(m.text().split()) for m in request.messages)
        completion_tokens = len(text.split())
        return ChatCompletionResponse(
            model=self._model,
            choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content=text), finish_reason="stop")],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
        )

    def chat_stream(self, request: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]:
        text = self._reply(request)
        cid = new_id("chatcmpl")
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield ChatCompletionChunk(id=cid, model=self._model,
                                      choices=[ChunkChoice(index=0, delta=ChatDelta(content=piece))])
        yield ChatCompletionChunk(id=cid, model=self._model,
                                  choices=[ChunkChoice(index=0, delta=ChatDelta(), finish_reason="stop")])
