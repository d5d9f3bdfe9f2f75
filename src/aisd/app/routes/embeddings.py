"""Routes: embeddings (/v1/embeddings from the local embedder)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
