"""Routes: A/B testing (/v1/experiments/...)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
