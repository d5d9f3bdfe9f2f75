"""Answerability: the judge-free coverage score, the LLM yes/no check, calibration, and the generator's use of them."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.llm.schema import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChoiceLogprobs,
    TokenLogprob,
    TopLogprob,
)
from aisd.rag.answerability import (
    DEFAULT_THRESHOLDS,
    AnswerabilityChecker,
    AnswerabilityConfig,
    StrategySpec,
    best_threshold,
    coverage_score,
    llm_answerability_score,
    parse_strategy,
    question_entities,
)
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.generate import NOT_IN_SOURCES, CitedGenerator, GenerationConfig
from aisd.rag.pipeline import RagConfig, RAGPipeline

EMB = HashingEmbedder(dim=256)
PARAGRAPH = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region "
             "in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, "
             "under their leader Rollo, agreed to swear fealty to King Charles III of West Francia. The distinct "
             "cultural and ethnic identity of the Normans emerged initially in the first half of the 10th century.")


def _rc(i: int, text: str, score: float = 1.0) -> RetrievedChunk:
    return RetrievedChunk(Chunk(f"doc{i}::0", f"doc{i}", text, 0, len(text), metadata={"title": f"T{i}"}), score)


def test_strategy_parsing_and_config_validation() -> None:
    assert parse_strategy("coverage+llm") == (StrategySpec("coverage", DEFAULT_THRESHOLDS["coverage"]),
                                              StrategySpec("llm", DEFAULT_THRESHOLDS["llm"]))
    assert parse_strategy("evidence:1.25") == (StrategySpec("evidence", 1.25),)
    assert parse_strategy(" sentence : 0.5 + llm:-1") == (StrategySpec("sentence", 0.5), StrategySpec("llm", -1.0))
    assert parse_strategy("none") == () and parse_strategy(None) == ()
    with pytest.raises(ValueError, match="answerability must be one of"):
        parse_strategy("coverage+magic")
    with pytest.raises(ValueError, match="must be a number"):
        AnswerabilityConfig(strategy="coverage:high")
    with pytest.raises(ValueError, match="sources"):
        AnswerabilityConfig(sources=0)
    with pytest.raises(ValueError, match="answerability must be one of"):
        GenerationConfig(answerability="vibes")
    with pytest.raises(ValueError, match="answerability must be one of"):
        RagConfig(answerability="vibes")


def test_question_entities_skip_the_first_word() -> None:
    assert question_entities("Who was the leader of the Normans in 911?") == ["Normans", "911"]
    assert question_entities("What did King Charles III of West Francia give?") == ["King Charles III of West Francia"]


def test_coverage_prefers_the_answerable_question_over_adversarial_rewrites() -> None:
    answerable = coverage_score("Who was the leader of the Norse raiders?", [PARAGRAPH])
    swapped = coverage_score("Who was the leader of the Viking raiders from Sweden?", [PARAGRAPH])
    negated = coverage_score("Who was not the leader of the Norse raiders?", [PARAGRAPH])
    unrelated = coverage_score("What is the boiling point of mercury?", [PARAGRAPH])
    assert answerable.coverage == pytest.approx(1.0) and not answerable.missing_entities
    assert "leader" in answerable.best_window and answerable.score == pytest.approx(1.0)
    assert "Sweden" in swapped.missing_entities and swapped.score < answerable.score
    assert negated.question_negated and negated.negation_mismatch and negated.score < answerable.score - 0.5
    assert unrelated.coverage == 0.0 and unrelated.score <= 0.0 < swapped.coverage
    # a window of neighbouring sentences: terms split over two sentences still count as covered
    two = coverage_score("Which leader of Norse raiders agreed to swear fealty?", ["Rollo was a leader of Norse raiders. Later he "
                                                                                "agreed to swear fealty."])
    assert two.coverage == pytest.approx(1.0)
    alone = coverage_score("Which leader of Norse raiders agreed to swear fealty?", ["Rollo was a leader of Norse raiders. Later he "
                                                                                  "agreed to swear fealty."],
                           window=0)
    assert alone.coverage < 1.0


def test_best_threshold_respects_the_false_refusal_budget() -> None:
    rng = np.random.default_rng(0)
    pos = rng.normal(1.0, 1.0, 200)
    for budget in (0.0, 0.05, 0.2, 0.5):
        thr = best_threshold(pos, budget)
        assert (pos < thr).mean() <= budget + 1e-12
        # the highest such threshold: moving it up to the next answerable score breaks the budget
        above = np.sort(pos)[np.sort(pos) > thr]
        if above.size:
            assert (pos < above[0] + 1e-12).mean() > budget
    assert best_threshold([0.3], 1.0) > 0.3
    with pytest.raises(ValueError):
        best_threshold([], 0.1)


def _logprob_llm(yes: float, no: float) -> FakeLLMClient:
    class Client(FakeLLMClient):
        def chat(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
            self.requests.append(request)
            tops = [TopLogprob(token="Yes", logprob=yes), TopLogprob(token=" No", logprob=no)]
            first = "Yes" if yes >= no else "No"
            lp = ChoiceLogprobs(content=[TokenLogprob(token=first, logprob=max(yes, no), top_logprobs=tops)])
            return ChatCompletionResponse(model="fake", choices=[ChatChoice(index=0, message=ChatMessage(
                role="assistant", content=first), logprobs=lp, finish_reason="length")])
    return Client()


def test_llm_score_reads_logprobs_and_falls_back_to_text() -> None:
    llm = _logprob_llm(-0.2, -2.0)
    assert llm_answerability_score(llm, "Who led them?", [PARAGRAPH, "other"]) == pytest.approx(1.8)
    req = llm.requests[0]
    assert req.max_tokens == 1 and req.logprobs and req.top_logprobs == 10
    prompt = req.messages[-1].text()
    assert "[1] The Normans" in prompt and "[2] other" in prompt and "Question: Who led them?" in prompt
    assert llm_answerability_score(FakeLLMClient(script=["No."]), "q", ["p"]) == -1.0
    assert llm_answerability_score(FakeLLMClient(script=["Yes"]), "q", ["p"]) == 1.0
    assert llm_answerability_score(FakeLLMClient(script=["Maybe"]), "q", ["p"]) == 0.0
    long = llm_answerability_score(llm, "q", ["x" * 5000], max_chars=200)
    assert long == pytest.approx(1.8) and len(llm.requests[-1].messages[-1].text()) < 400


def test_generator_refuses_without_calling_the_model_when_coverage_fails() -> None:
    llm = FakeLLMClient(lambda r: "Rollo led them [1].")
    gen = CitedGenerator(llm, GenerationConfig(answerability="coverage"), embedder=EMB)
    refused = gen.generate("Who was the leader of the Viking raiders from Sweden?", [_rc(1, PARAGRAPH)])
    assert refused.not_in_sources and refused.text == NOT_IN_SOURCES and llm.requests == []
    step = refused.trace[-1]
    assert step.name == "answerability" and not step.detail["passed"]
    assert "coverage score" in step.detail["reason"] and step.detail["checks"][0]["missing_entities"] == ["Viking", "Sweden"]
    ok = gen.generate("Who was the leader of the Norse raiders?", [_rc(1, PARAGRAPH)])
    assert not ok.not_in_sources and ok.text == "Rollo led them [1]." and len(llm.requests) == 1
    assert [t.name for t in ok.trace] == ["answerability", "generate", "citations"]
    assert ok.trace[0].detail["passed"] and ok.trace[0].detail["checks"][0]["score"] == pytest.approx(1.0)


def test_llm_check_and_all_must_pass_order() -> None:
    no = _logprob_llm(-3.0, -0.1)
    gen = CitedGenerator(no, GenerationConfig(answerability="llm"), embedder=EMB)
    ans = gen.generate("Who was the leader of the Norse raiders?", [_rc(1, PARAGRAPH)])
    assert ans.not_in_sources and len(no.requests) == 1 and ans.trace[-1].detail["llm_calls"] == 1
    assert ans.usage.llm_calls == 1
    # coverage fails first: the LLM check is never asked
    both = _logprob_llm(-0.1, -3.0)
    gen = CitedGenerator(both, GenerationConfig(answerability="coverage+llm"), embedder=EMB)
    ans = gen.generate("What is the boiling point of mercury?", [_rc(1, PARAGRAPH)])
    assert ans.not_in_sources and both.requests == []
    # both pass: the yes/no call, then the answer
    ans = gen.generate("Who was the leader of the Norse raiders?", [_rc(1, PARAGRAPH)])
    assert not ans.not_in_sources and len(both.requests) == 2 and both.requests[0].max_tokens == 1


def test_similarity_strategy_and_missing_embedder() -> None:
    chunks = [_rc(1, PARAGRAPH)]
    checker = AnswerabilityChecker(AnswerabilityConfig(strategy="similarity:0.99"), embedder=EMB)
    verdict = checker.check("Who gave their name to Normandy?", chunks)
    assert not verdict.answerable and verdict.checks[0].score < 0.99
    low = AnswerabilityChecker(AnswerabilityConfig(strategy="similarity:-1"), embedder=EMB)
    assert low.check("Who gave their name to Normandy?", chunks).answerable
    assert not low.check("anything", []).answerable  # nothing retrieved: not answerable
    gen = CitedGenerator(FakeLLMClient(), GenerationConfig(answerability="similarity"))
    with pytest.raises(InvalidRequestError, match="needs an embedder") as e:
        gen.generate("q", chunks)
    assert e.value.param == "answerability"


def test_stream_refusal_and_pipeline_override() -> None:
    llm = FakeLLMClient(lambda r: "Rollo led them [1].")
    pipe = RAGPipeline.in_memory(embedder=EMB, llm=llm, retriever="bm25", min_similarity=None,
                                 answerability="none")  # hashing vectors: the default evidence check is off
    from aisd.rag.documents import Document

    pipe.ingest([Document(id="normans", text=PARAGRAPH, source="test", title="Normans")])
    q = "Who was the leader of the Viking raiders from Sweden?"
    assert not pipe.ask(q).not_in_sources  # the check is off by default in this config: the model answers
    calls = len(llm.requests)
    refused = pipe.ask(q, answerability="coverage")
    assert refused.not_in_sources and len(llm.requests) == calls
    events = list(pipe.ask_stream(q, answerability="coverage"))
    assert [e.type for e in events][-3:] == ["sources", "delta", "done"]
    assert events[-1].answer is not None and events[-1].answer.not_in_sources
    assert events[-2].text == NOT_IN_SOURCES
    with pytest.raises(InvalidRequestError):
        pipe.ask(q, answerability="nonsense")
    cfg = RagConfig.from_mapping({"answerability": "coverage:0.3", "answerability_sources": 2})
    acfg = cfg.generation().answerability_config()
    assert acfg.strategies == (StrategySpec("coverage", 0.3),) and acfg.sources == 2


def test_coverage_separates_squad2_unanswerable_questions(shared_data) -> None:  # noqa: ANN001
    """Real data: on SQuAD 2.0 with each question's own paragraph, the coverage score ranks answerable questions
    above unanswerable ones clearly better than chance (AUC measured ~0.63-0.71 on 1,500+ questions)."""
    from aisd.rag.loaders import load_squad

    data = load_squad(shared_data / "squad2-dev")
    docs = {d.id: d.text for d in data.documents}
    qs = random.Random(0).sample(data.questions, 600)
    pos = np.array([coverage_score(q.question, [docs[q.doc_id]]).score for q in qs if q.answerable])
    neg = np.array([coverage_score(q.question, [docs[q.doc_id]]).score for q in qs if not q.answerable])
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    assert 0.58 < auc < 0.9


def test_sentence_and_evidence_strategies_use_the_best_sentence() -> None:
    from aisd.rag.answerability import EVIDENCE_SENTENCE_WEIGHT, best_sentence_similarity

    chunks = [_rc(1, PARAGRAPH), _rc(2, "Lions live in Africa. They hunt at night.")]
    sim, sent = best_sentence_similarity("Where do lions live?", [c.chunk.text for c in chunks], EMB)
    assert sent == "Lions live in Africa."
    vecs = EMB.embed(["Where do lions live?", sent])
    assert sim == pytest.approx(float(vecs[0] @ vecs[1]), abs=1e-6)
    checker = AnswerabilityChecker(AnswerabilityConfig(strategy="sentence:-1+evidence:-5"), embedder=EMB)
    verdict = checker.check("Where do lions live?", chunks)
    assert verdict.answerable and [c.strategy for c in verdict.checks] == ["sentence", "evidence"]
    ev = verdict.checks[1]
    assert ev.score == pytest.approx(ev.detail["coverage_score"] + EVIDENCE_SENTENCE_WEIGHT
                                     * ev.detail["sentence_similarity"], abs=1e-3)
    assert ev.detail["best_sentence"] == "Lions live in Africa."
    with pytest.raises(ValueError, match="needs an embedder"):
        AnswerabilityChecker(AnswerabilityConfig(strategy="evidence")).check("q", chunks)


def test_a_separate_judge_answers_the_llm_check_and_the_generator_the_question(tmp_path) -> None:  # noqa: ANN001
    """rag.answerability_llm_url: the yes/no check goes to its own client (a larger model judges much better), the
    answer to the generator; calibration scores with the same judge; unset, the generator judges too."""
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.llm.client import OpenAIClient
    from aisd.rag.calibrate import checker_for
    from aisd.rag.documents import Document

    generator, judge = FakeLLMClient(lambda r: "Rollo led them [1]."), _logprob_llm(-0.1, -3.0)
    pipe = RAGPipeline.in_memory(embedder=EMB, llm=generator, answerability_llm=judge, retriever="bm25",
                                 min_similarity=None, answerability="llm")
    pipe.ingest([Document(id="normans", text=PARAGRAPH, source="test", title="Normans")])
    ans = pipe.ask("Who was the leader of the Norse raiders?")
    assert not ans.not_in_sources and ans.text.startswith("Rollo")
    assert [r.max_tokens for r in judge.requests] == [1]  # the judge got the yes/no question only
    assert len(generator.requests) == 1 and generator.requests[0].max_tokens != 1
    assert checker_for(pipe, "llm").llm is judge
    refusing = RAGPipeline.in_memory(embedder=EMB, llm=generator, answerability_llm=_logprob_llm(-3.0, -0.1),
                                     retriever="bm25", min_similarity=None, answerability="llm")
    refusing.ingest([Document(id="normans", text=PARAGRAPH, source="test", title="Normans")])
    assert refusing.ask("Who was the leader of the Norse raiders?").not_in_sources
    assert len(generator.requests) == 1  # refused by the judge: the generator was not asked

    services = Services(Settings(home=tmp_path, rag={"answerability_llm_url": "http://127.0.0.1:8001",
                                                     "answerability_llm_model": "qwen-1.5b"}))
    client = services.answerability_llm_client
    assert isinstance(client, OpenAIClient) and client.base_url == "http://127.0.0.1:8001/v1"
    assert client.model_name == "qwen-1.5b"
    assert Services(Settings(home=tmp_path)).answerability_llm_client is None
