"""Routes: feature store (/v1/features/...)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
