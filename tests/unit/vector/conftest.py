"""Vector tests share two CPU cores with everything else: one FAISS thread is enough for small data."""

from __future__ import annotations

import faiss
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread() -> None:
    faiss.omp_set_num_threads(1)
