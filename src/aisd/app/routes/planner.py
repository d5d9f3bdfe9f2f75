"""Routes: capacity and cost planner (/v1/plan/...)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
