"""Routes: vector database (/v1/collections)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
