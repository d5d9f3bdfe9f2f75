"""BM25 scores equal bm25s's (same method, same tokens) for every variant, on random and real text, including after
incremental adds and deletes (the index must then score like a fresh one over the live documents)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

bm25s = pytest.importorskip("bm25s")

from aisd.search.bm25 import METHODS, BM25Config, BM25Index, bm25_scores_reference  # noqa: E402
from aisd.search.tokenize import Tokenizer  # noqa: E402

WORDS = [f"w{i}" for i in range(60)]


def _corpus(seed: int, n: int = 80) -> list[list[str]]:
    rng = random.Random(seed)
    # Zipf-ish draws so some terms are in most documents (negative Robertson idf) and some in one
    return [[WORDS[min(int(rng.paretovariate(0.8)) - 1, 59)] for _ in range(rng.randint(1, 40))] for _ in range(n)]


def _bm25s_scores(corpus: list[list[str]], query: list[str], method: str) -> np.ndarray:
    ref = bm25s.BM25(method=method, k1=1.2, b=0.7, delta=0.5)
    ref.index(corpus, show_progress=False)
    return np.asarray(ref.get_scores(query), dtype=np.float64)


@pytest.mark.parametrize("method", METHODS)
def test_scores_equal_bm25s(method: str) -> None:
    corpus = _corpus(1)
    cfg = BM25Config(k1=1.2, b=0.7, delta=0.5, method=method)
    idx = BM25Index(cfg, Tokenizer(stopwords="none", stemmer="none"))
    ids = [str(i) for i in range(len(corpus))]
    idx.add_tokenized(ids, corpus)
    rng = random.Random(7)
    for _ in range(10):
        query = rng.sample(WORDS[:30], 3) + ["never-seen"]
        ours = idx.score_terms(query)
        order = [int(i) for i in idx.ids()]
        expected = _bm25s_scores(corpus, query, method)[order]
        np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=1e-5)
        np.testing.assert_allclose(ours, np.asarray(bm25_scores_reference(corpus, query, cfg))[order], rtol=1e-9)


def test_after_deletes_and_replacements_equals_fresh_index() -> None:
    corpus = _corpus(2)
    idx = BM25Index(BM25Config(k1=1.2, b=0.7), Tokenizer(stopwords="none", stemmer="none"))
    idx.add_tokenized([str(i) for i in range(len(corpus))], corpus)
    idx.delete([str(i) for i in range(0, 80, 3)])
    replacement = _corpus(3, 10)
    idx.add_tokenized([str(i) for i in range(1, 20, 2)], replacement)  # re-adding an id replaces it
    live = {str(i): d for i, d in enumerate(corpus) if i % 3}
    for j, i in enumerate(range(1, 20, 2)):
        live[str(i)] = replacement[j]
    ids = idx.ids()
    query = ["w0", "w3", "w11"]
    expected = _bm25s_scores([live[i] for i in ids], query, "lucene")
    np.testing.assert_allclose(idx.score_terms(query), expected, rtol=2e-5, atol=1e-5)
    assert len(idx) == len(live)


def test_real_text_with_default_analysis(shared_data) -> None:
    docs = []
    with open(shared_data / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d['title']} {d['text']}")
            if len(docs) == 300:
                break
    tok = Tokenizer()
    corpus = tok.tokenize_many(docs)
    idx = BM25Index(tokenizer=tok)
    idx.add([str(i) for i in range(len(docs))], docs)
    for q in ["Microstructural development of white matter in newborns", "cancer cells divide rapidly",
              "vitamin D deficiency and bone density"]:
        qt = tok.tokenize(q)
        np.testing.assert_allclose(idx.score_terms(qt), _bm25s_scores_default(corpus, qt), rtol=2e-5, atol=1e-5)
        top = idx.search(q, 5)
        ref = _bm25s_scores_default(corpus, qt)
        assert [h.id for h in top] == [str(i) for i in np.argsort(-ref, kind="stable")[:len(top)]]


def _bm25s_scores_default(corpus: list[list[str]], query: list[str]) -> np.ndarray:
    ref = bm25s.BM25()  # lucene, k1=1.5, b=0.75: our defaults
    ref.index(corpus, show_progress=False)
    return np.asarray(ref.get_scores(query), dtype=np.float64)
