"""Generation metrics: SQuAD EM/F1 (official-script semantics), judge-free and LLM-judged faithfulness / relevancy,
refusal accuracy, and mean +- run-to-run spread."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisd.embed.fake import HashingEmbedder
from aisd.evals.generation_metrics import (
    GenerationEvaluator,
    GenerationSample,
    RunScores,
    answer_relevancy_embedding,
    answer_relevancy_judge,
    answer_span,
    context_relevancy_embedding,
    context_relevancy_judge,
    faithfulness_judge,
    faithfulness_lexical,
    parse_verdict,
    split_statements,
    squad_exact_match,
    squad_f1,
    squad_normalize,
    summarize_runs,
)
from aisd.llm.fake import FakeLLMClient
from aisd.llm.schema import ChatCompletionRequest

EMB = HashingEmbedder(dim=256)


def test_squad_normalize_and_em() -> None:
    assert squad_normalize("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert squad_exact_match("the Normans.", ["Normans", "the Norse"]) == 1.0
    assert squad_exact_match("Norse men", ["Normans"]) == 0.0
    assert squad_exact_match("", []) == 1.0  # unanswerable: the empty prediction is right
    assert squad_exact_match("France", []) == 0.0


def test_squad_f1_hand_computed() -> None:
    # pred tokens: [10th, and, 11th, centuries]; gold: [in, 10th, and, 11th, centuries] -> common 4
    # precision 4/4, recall 4/5 -> F1 = 2 * 1 * 0.8 / 1.8
    assert squad_f1("10th and 11th centuries", ["in the 10th and 11th centuries"]) == pytest.approx(1.6 / 1.8)
    assert squad_f1("10th and 11th centuries", ["in the 10th and 11th centuries", "10th and 11th centuries"]) == 1.0
    # repeated tokens count with multiplicity (Counter intersection): pred [a1 a1 b1], gold [a1 b1 b1] -> common 2
    assert squad_f1("a1 a1 b1", ["a1 b1 b1"]) == pytest.approx(2 / 3)
    assert squad_f1("", [""]) == 1.0 and squad_f1("x", [""]) == 0.0 and squad_f1("", ["x"]) == 0.0
    assert squad_f1("completely different", ["gold answer"]) == 0.0


@given(st.text(max_size=30), st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_squad_metric_properties(pred: str, golds: list[str]) -> None:
    em, f1 = squad_exact_match(pred, golds), squad_f1(pred, golds)
    assert 0.0 <= em <= f1 + 1e-12 <= 1.0 + 1e-12  # an exact match is a perfect F1
    assert squad_f1(golds[0], golds) == 1.0


def test_answer_span_and_statements() -> None:
    assert answer_span("The Normans [1] [2, 3].") == "The Normans"
    assert split_statements("Cats purr [1]. Dogs bark!\nBirds sing [2]. [3]") == ["Cats purr.", "Dogs bark!",
                                                                                   "Birds sing."]


def test_faithfulness_lexical() -> None:
    ctx = ["Lions live in Africa. They hunt zebras."]
    assert faithfulness_lexical("Lions live in Africa [1].", ctx) == 1.0
    assert faithfulness_lexical("Lions live in Africa. Penguins fly over Mars.", ctx) == 0.5
    assert faithfulness_lexical("", ctx) is None


def test_embedding_relevancies() -> None:
    q = "where do lions live"
    assert answer_relevancy_embedding(q, "lions live in africa", EMB) > answer_relevancy_embedding(
        q, "rockets burn fuel", EMB)
    assert answer_relevancy_embedding(q, "   ", EMB) is None
    ctx = ["Lions live in Africa. Rockets burn fuel. Lions live in prides."]
    v = EMB.embed([q, "Lions live in Africa.", "Rockets burn fuel.", "Lions live in prides."])
    expected = float(np.mean(v[1:] @ v[0] >= 0.35))
    assert context_relevancy_embedding(q, ctx, EMB, threshold=0.35) == pytest.approx(expected)
    assert context_relevancy_embedding(q, [], EMB) is None


def yes_if_supported(request: ChatCompletionRequest) -> str:
    """A judge that says YES when every content word of the statement / answer occurs in the passage."""
    p = request.messages[-1].text()
    if p.startswith("Context:"):
        ctx, stmt = p.split("\n\nStatement: ")
        stmt = stmt.split("\n\n")[0]
        return "YES" if all(w in ctx.lower() for w in stmt.lower().rstrip(".").split()) else "NO"
    if p.startswith("Question:"):
        return "Yes." if "lion" in p.split("Answer:")[1].lower() else "No."
    if p.startswith("Passage:"):
        return "yes" if "lion" in p.split("\n\nQuestion:")[0].lower() else "hmm, unsure"
    return ""


def test_llm_judged_metrics_and_unparsed_verdicts() -> None:
    judge = FakeLLMClient(yes_if_supported)
    f = faithfulness_judge("lions live in africa. penguins fly.", ["Lions live in Africa."], judge)
    assert f.score == 0.5 and f.verdicts == (True, False)
    assert answer_relevancy_judge("where?", "lions in africa", judge).score == 1.0
    c = context_relevancy_judge("where do lions live", ["Lions live in Africa.", "Rockets burn fuel."], judge)
    assert c.score == 1.0 and c.unparsed == 1  # "hmm, unsure" is left out of the mean, not counted as NO
    assert judge.requests[0].max_tokens == 4 and judge.requests[0].temperature == 0.0
    assert parse_verdict("No, it is not") is False and parse_verdict("nothing") is None


def test_evaluator_scores_a_run() -> None:
    samples = [
        GenerationSample("Where do lions live?", "Africa [1].", ("Lions live in Africa.",), ("Africa",), True),
        GenerationSample("Where do tigers live?", "I could not find the answer in the sources.", (), (), False,
                         refused=True),
        GenerationSample("Where do bears live?", "In caves.", ("Bears live in forests.",), (), False),
        GenerationSample("Who wrote it?", "not found", (), ("Tolstoy",), True, refused=True),
    ]
    run = GenerationEvaluator(embedder=EMB, judge=FakeLLMClient(yes_if_supported)).score_run(samples)
    means = run.means()
    assert means["squad_em"] == 0.5 and means["squad_f1"] == 0.5
    assert means["not_in_sources_accuracy"] == 0.5 and means["false_refusal_rate"] == 0.5
    assert len(run.values["faithfulness"]) == 2  # refused answers are not scored for faithfulness
    assert means["faithfulness"] == 0.5  # "Africa" supported, "In caves" not
    assert {"answer_relevancy", "context_relevancy", "faithfulness_judge", "answer_relevancy_judge",
            "context_relevancy_judge"} <= set(means)


def test_summarize_runs_mean_and_spread() -> None:
    runs = []
    for values in ([1.0, 0.0], [1.0, 1.0], [0.0, 0.0]):
        r = RunScores()
        for v in values:
            r.add("m", v)
        r.add("m", float("nan"))  # NaN is never averaged in
        runs.append(r)
    m = summarize_runs(runs)["m"]
    assert m.runs == (0.5, 1.0, 0.0) and m.mean == pytest.approx(0.5)
    assert m.std == pytest.approx(float(np.std([0.5, 1.0, 0.0], ddof=1))) and m.n == 6
    assert str(m) == "0.500 \u00b1 0.500"
    single = summarize_runs([runs[0]])["m"]
    assert single.std == 0.0 and not math.isnan(single.mean)
    empty = RunScores()
    empty.add("x", None)
    assert summarize_runs([empty])["x"].mean is None


def test_logprob_verdicts_when_the_text_has_none() -> None:
    from aisd.evals.generation_metrics import _judge, verdict_from_logprobs
    from aisd.llm.schema import (
        ChatChoice,
        ChatCompletionResponse,
        ChatMessage,
        ChoiceLogprobs,
        TokenLogprob,
        TopLogprob,
    )

    assert verdict_from_logprobs([("Yes", -0.5), ("No", -1.0), ("The", -2.0)]) is True
    assert verdict_from_logprobs([(" no", -0.2), ("Y", -3.0), ("yes", -2.5)]) is False
    assert verdict_from_logprobs([("The", -0.1)]) is None

    class WithLogprobs(FakeLLMClient):
        def chat(self, request):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            top = [TopLogprob(token="The", logprob=-0.3), TopLogprob(token="Yes", logprob=-1.2),
                   TopLogprob(token="No", logprob=-2.0)]
            lp = ChoiceLogprobs(content=[TokenLogprob(token="The", logprob=-0.3, top_logprobs=top)])
            return ChatCompletionResponse(model="x", choices=[ChatChoice(
                index=0, message=ChatMessage(role="assistant", content="The statement"), logprobs=lp)])

    judge = WithLogprobs()
    assert _judge(judge, "Is it?") is True
    assert judge.requests[0].logprobs is True and judge.requests[0].top_logprobs == 10
