"""Shared test set-up: offline hubs, a throwaway AISD_HOME, and the location of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _aisd_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own AISD_HOME so nothing touches ~/.aisd."""
    home = tmp_path_factory.mktemp("aisd_home")
    monkeypatch.setenv("AISD_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real evaluation data sets); tests that need it are skipped, saying so, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real evaluation data not found at {SHARED_DATA} (only present beside a full checkout)")
    return SHARED_DATA
