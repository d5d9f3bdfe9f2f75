"""The LLMClient protocol and an OpenAI-compatible HTTP client.

Everything that needs a language model (RAG, query transforms, judges, the gateway) takes an ``LLMClient``: aisd's
engine in process (``aisd.engine.client.LocalClient``), an aisd / vLLM / any OpenAI-compatible server
(``OpenAIClient``), the gateway, or ``FakeLLMClient`` in unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import httpx

from aisd.core.errors import AisdError, InvalidRequestError, RateLimitError, ServiceUnavailableError
from aisd.llm.schema import ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage


@runtime_checkable
class LLMClient(Protocol):
    """A chat model behind the OpenAI chat-completions shape."""

    @property
    def model_name(self) -> str: ...

    def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse: ...

    def chat_stream(self, request: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]: ...

    def context_window(self) -> int | None:
        """Maximum prompt + completion tokens, or None when unknown."""
        ...


def chat_request(messages: list[dict[str, str]] | list[ChatMessage], **params: Any) -> ChatCompletionRequest:
    """Build a request from plain ``{"role", "content"}`` dicts and sampling params."""
    msgs = [m if isinstance(m, ChatMessage) else ChatMessage(**m) for m in messages]
    return ChatCompletionRequest(messages=msgs, **params)


def ask(client: LLMClient, prompt: str, *, system: str | None = None, **params: Any) -> str:
    """One user turn in, the first choice's text out (for judges and query transforms)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return client.chat(chat_request(messages, **params)).text


_STATUS_ERRORS: dict[int, type[AisdError]] = {400: InvalidRequestError, 429: RateLimitError}


class OpenAIClient:
    """Sync client for any OpenAI-compatible ``/v1/chat/completions`` server (aisd, vLLM, llama.cpp, ...)."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0,
                 context_window: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self._model = model
        self._context_window = context_window
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @property
    def model_name(self) -> str:
        return self._model

    def context_window(self) -> int | None:
        if self._context_window is None:
            try:
                r = self._http.get("/models")
                r.raise_for_status()
                for card in r.json().get("data", []):
                    if card.get("id") == self._model and card.get("max_model_len"):
                        self._context_window = int(card["max_model_len"])
            except (httpx.HTTPError, ValueError):
                return None
        return self._context_window

    def _payload(self, request: ChatCompletionRequest, stream: bool) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True)
        body["model"] = request.model or self._model
        body["stream"] = stream
        return body

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        cls = _STATUS_ERRORS.get(response.status_code, ServiceUnavailableError)
        raise cls(f"{self.base_url} answered {response.status_code}: {message}")

    def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        try:
            r = self._http.post("/chat/completions", json=self._payload(request, stream=False))
        except httpx.HTTPError as e:
            raise ServiceUnavailableError(f"cannot reach {self.base_url}: {e}") from e
        self._raise_for(r)
        return ChatCompletionResponse.model_validate(r.json())

    def chat_stream(self, request: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]:
        try:
            with self._http.stream("POST", "/chat/completions", json=self._payload(request, stream=True)) as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise_for(r)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield ChatCompletionChunk.model_validate(json.loads(data))
        except httpx.HTTPError as e:
            raise ServiceUnavailableError(f"stream from {self.base_url} failed: {e}") from e

    def close(self) -> None:
        self._http.close()
