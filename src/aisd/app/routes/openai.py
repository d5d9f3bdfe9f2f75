"""Routes: engine (OpenAI-compatible /v1/models, /v1/completions, /v1/chat/completions)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
