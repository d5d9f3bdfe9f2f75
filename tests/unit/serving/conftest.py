"""Fixtures of the serving tests: the fake engine behind the real AsyncLLMEngine (requests are built with the
engine's real SamplingParams, so field names are checked against it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_engine import FakeLLMEngine

from aisd.engine.async_engine import AsyncEngineConfig, AsyncLLMEngine


@pytest.fixture
def fake() -> FakeLLMEngine:
    return FakeLLMEngine()


@pytest.fixture
def engine(fake: FakeLLMEngine) -> Iterator[AsyncLLMEngine]:
    eng = AsyncLLMEngine(fake, AsyncEngineConfig(max_waiting_requests=64))
    eng.start()
    yield eng
    eng.close()


