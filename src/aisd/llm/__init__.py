"""OpenAI wire types and the LLMClient protocol that RAG, the gateway and evals talk to."""

from aisd.llm.client import LLMClient, OpenAIClient
from aisd.llm.fake import FakeLLMClient
from aisd.llm.schema import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    CompletionRequest,
    CompletionResponse,
    Usage,
)

__all__ = [
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResponse",
    "FakeLLMClient",
    "LLMClient",
    "OpenAIClient",
    "Usage",
]
