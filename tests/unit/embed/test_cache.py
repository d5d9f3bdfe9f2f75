"""CachedEmbedder: exact-match hits, only misses reach the model, hit rate, persistence and sharing across
processes (SQLite WAL)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from aisd.core.errors import CorruptDataError
from aisd.embed import CachedEmbedder, HashingEmbedder


def test_hits_skip_the_model_and_return_identical_vectors(tmp_path: Path) -> None:
    inner = HashingEmbedder(dim=32)
    cache = CachedEmbedder(inner, tmp_path / "e.sqlite")
    first = cache.embed(["alpha beta", "gamma", "alpha beta"])
    assert inner.texts_embedded == 2  # the repeated text is embedded once
    second = cache.embed(["gamma", "alpha beta", "delta"])
    assert inner.texts_embedded == 3  # only "delta" was new
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[1], first[0])
    np.testing.assert_allclose(second, inner.embed(["gamma", "alpha beta", "delta"]))
    s = cache.stats()
    assert (s.hits, s.misses, s.entries) == (3, 3, 3)
    assert s.hit_rate == pytest.approx(0.5)


def test_persists_and_keys_by_model(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    CachedEmbedder(HashingEmbedder(dim=32), path).embed(["one", "two"])
    again = HashingEmbedder(dim=32)
    c2 = CachedEmbedder(again, path)
    c2.embed(["one", "two"])
    assert again.calls == 0 and c2.stats().hit_rate == 1.0
    other = HashingEmbedder(dim=16)  # another model never reads the first one's rows
    c3 = CachedEmbedder(other, path)
    assert c3.embed(["one"]).shape == (1, 16)
    assert other.texts_embedded == 1


def test_empty_input_and_protocol_passthrough(tmp_path: Path) -> None:
    inner = HashingEmbedder(dim=8)
    c = CachedEmbedder(inner, tmp_path / "e.sqlite")
    assert c.embed([]).shape == (0, 8)
    assert c.dim == 8 and c.model_name == inner.model_name and c.max_tokens == inner.max_tokens
    assert c.token_spans("hi there") == inner.token_spans("hi there")
    assert c.count_tokens("hi there") == 2


def test_wal_mode(tmp_path: Path) -> None:
    c = CachedEmbedder(HashingEmbedder(dim=8), tmp_path / "e.sqlite")
    c.embed(["x"])
    (mode,) = sqlite3.connect(tmp_path / "e.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "e.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptDataError, match="e.sqlite"):
        CachedEmbedder(HashingEmbedder(dim=8), bad).embed(["x"])


def _worker(path: str, start: int, q: mp.Queue) -> None:
    c = CachedEmbedder(HashingEmbedder(dim=16), path, batch_size=7)
    texts = [f"text number {i}" for i in range(start, start + 60)]
    c.embed(texts)
    q.put(c.stats().misses)


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, s, q)) for s in (0, 30)]  # 30 texts overlap
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = CachedEmbedder(HashingEmbedder(dim=16), path)
    assert c.stats().entries == 90
    vecs = c.embed([f"text number {i}" for i in range(90)])
    assert c.stats().hit_rate == 1.0
    np.testing.assert_allclose(vecs, HashingEmbedder(dim=16).embed([f"text number {i}" for i in range(90)]))
