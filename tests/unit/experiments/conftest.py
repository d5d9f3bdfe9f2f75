"""Fixtures for the experiments tests: a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aisd.experiments.store import ExperimentStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ExperimentStore]:
    s = ExperimentStore(tmp_path / "exp.duckdb")
    yield s
    s.close()
