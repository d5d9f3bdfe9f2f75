"""Routes: RAG (/v1/rag/ingest, /v1/rag/query)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
