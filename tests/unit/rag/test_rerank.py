"""LLMReranker (pointwise 0-10 through an LLMClient) and MaxSimReranker (late interaction), plus build_reranker."""

from __future__ import annotations

import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError, ModelNotFoundError, UnsupportedError
from aisd.embed import HashingEmbedder
from aisd.embed.base import l2_normalize
from aisd.llm.fake import FakeLLMClient
from aisd.rag.rerank import LLMReranker, MaxSimReranker, build_reranker, maxsim, parse_rating
from aisd.search.rerank import RemoteReranker


@pytest.mark.parametrize(("reply", "rating"), [("7", 7.0), ("Relevance: 8/10", 8.0), ("**10**", 10.0),
                                               ("9.5", 9.5), ("none", None), ("", None)])
def test_parse_rating(reply, rating) -> None:
    assert parse_rating(reply) == rating


def test_llm_reranker_orders_by_rating_and_falls_back() -> None:
    def judge(req):
        text = req.messages[-1].content
        return "9" if "lava" in text else ("I cannot say" if "ash" in text else "3")
    llm = FakeLLMClient(judge)
    rr = LLMReranker(llm, mode="rating", max_chars=200)
    out = rr.rerank("volcano", ["cats", "molten lava", "volcanic ash", "dogs"])
    assert [r.index for r in out] == [1, 0, 3, 2]
    assert out[0].score == 9.0 and out[-1].score == -100.0 and rr.unparsed == 1
    req = llm.requests[0]
    assert req.messages[0].role == "system" and "0 (unrelated) to 10" in req.messages[0].content
    assert req.max_tokens == 4 and req.temperature == 0.0
    assert len(rr.rerank("q", ["x" * 5000], top_n=1)) == 1
    assert len(llm.requests[-1].messages[-1].content) < 400  # passage trimmed to max_chars


def test_llm_reranker_yes_no_logprobs_and_text_fallback() -> None:
    from aisd.llm.schema import (
        ChatChoice,
        ChatCompletionResponse,
        ChatMessage,
        ChoiceLogprobs,
        TokenLogprob,
        TopLogprob,
    )

    def response(yes: float, no: float) -> ChatCompletionResponse:
        tops = [TopLogprob(token="No", logprob=no), TopLogprob(token=" yes", logprob=yes),
                TopLogprob(token="The", logprob=-9.0)]
        lp = ChoiceLogprobs(content=[TokenLogprob(token="No", logprob=no, top_logprobs=tops)])
        return ChatCompletionResponse(model="m", choices=[ChatChoice(index=0, message=ChatMessage(
            role="assistant", content="No"), logprobs=lp)])

    class LogprobLLM(FakeLLMClient):
        def chat(self, request):
            self.requests.append(request)
            relevant = "lava" in request.messages[-1].content
            return response(-0.5, -1.5) if relevant else response(-3.0, -0.2)

    llm = LogprobLLM()
    out = LLMReranker(llm).rerank("volcano", ["cats", "molten lava"])
    assert [r.index for r in out] == [1, 0]
    assert out[0].score == pytest.approx(1.0) and out[1].score == pytest.approx(-2.8)
    req = llm.requests[0]
    assert req.logprobs and req.top_logprobs == 10 and req.max_tokens == 1
    text_only = LLMReranker(FakeLLMClient(lambda r: "Yes" if "lava" in r.messages[-1].content else "No."))
    assert [r.score for r in text_only.rerank("v", ["lava", "cat"])] == [1.0, -1.0]
    with pytest.raises(ValueError, match="yes-no, rating"):
        LLMReranker(FakeLLMClient(), mode="pairwise")


def test_maxsim_math_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, d = l2_normalize(rng.normal(size=(5, 8))), l2_normalize(rng.normal(size=(9, 8)))
    brute = np.mean([max(float(qi @ dj) for dj in d) for qi in q])
    assert maxsim(q, d) == pytest.approx(brute, rel=1e-5)
    assert maxsim(q[:0], d) == 0.0


class TokenHashing(HashingEmbedder):
    """Per-token vectors from the hashing trick: a word-level stand-in for a transformer's token embeddings."""

    def __init__(self) -> None:
        super().__init__(dim=64)
        self.token_calls = 0

    def token_embeddings(self, texts):
        self.token_calls += len(texts)
        return [self.embed([text[s:e] for s, e in self.token_spans(text)]) for text in texts]


def test_maxsim_reranker_prefers_term_matches_and_caches() -> None:
    emb = TokenHashing()
    rr = MaxSimReranker(emb, cache_size=2)
    texts = ["the weather today", "neural ranking models rerank passages", "ranking passages"]
    out = rr.rerank("neural ranking", texts)
    assert out[0].index == 1 and out[0].score == pytest.approx(1.0, abs=1e-5)
    calls = emb.token_calls
    rr.rerank("ranking", texts[1:])  # both still cached (LRU of 2), only the query is embedded
    assert emb.token_calls == calls + 1
    with pytest.raises(UnsupportedError):
        MaxSimReranker(HashingEmbedder())


def test_build_reranker(tmp_path) -> None:
    assert build_reranker(None) is None and build_reranker("none") is None
    assert isinstance(build_reranker("maxsim", embedder=TokenHashing()), MaxSimReranker)
    assert isinstance(build_reranker("llm", llm=FakeLLMClient()), LLMReranker)
    remote = build_reranker("remote:http://srv:8000#bge")
    assert isinstance(remote, RemoteReranker) and remote.model == "bge"
    ce = build_reranker(f"cross-encoder:{tmp_path / 'missing'}")
    with pytest.raises(ModelNotFoundError, match="no cross-encoder weights|not found"):
        ce.rerank("q", ["d"])
    for bad in ("colbert", "remote:http://x", "llm"):
        with pytest.raises(InvalidRequestError):
            build_reranker(bad)


def test_maxsim_token_vectors_persist_across_processes_and_detect_corruption(tmp_path) -> None:
    import sqlite3

    from aisd.core.errors import CorruptDataError
    from aisd.embed.cache import CachedEmbedder
    from aisd.rag.token_cache import TokenVectorCache

    texts = ["the weather today", "neural ranking models rerank passages", "ranking passages", "ranking passages"]
    first = MaxSimReranker(TokenHashing(), store=TokenVectorCache(tmp_path / "tok.sqlite"))
    before = first.rerank("neural ranking", texts)
    assert first.computed == 3  # the repeated text is computed once
    emb = TokenHashing()
    second = MaxSimReranker(emb, store=TokenVectorCache(tmp_path / "tok.sqlite"))  # a new process: empty memory
    after = second.rerank("neural ranking", texts)
    assert second.computed == 0 and emb.token_calls == 1  # only the query was embedded
    assert [(r.index, round(r.score, 3)) for r in after] == [(r.index, round(r.score, 3)) for r in before]
    assert second.store is not None and second.store.count() == 3
    # build_reranker keeps the token vectors beside a CachedEmbedder's SQLite file
    built = build_reranker("maxsim", embedder=CachedEmbedder(TokenHashing(), tmp_path / "embed" / "cache.sqlite"))
    assert built.store is not None and built.store.path == tmp_path / "embed" / "token_vectors.sqlite"
    # a damaged row is reported, not silently used
    con = sqlite3.connect(tmp_path / "tok.sqlite")
    con.execute("UPDATE token_vectors SET matrix = x'0000'")
    con.commit()
    con.close()
    with pytest.raises(CorruptDataError):
        MaxSimReranker(TokenHashing(), store=TokenVectorCache(tmp_path / "tok.sqlite")).rerank("q", texts[:1])
