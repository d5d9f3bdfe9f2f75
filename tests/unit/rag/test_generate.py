"""Cited generation: prompt, citation parsing and checking, refusals, relevance gate, context window, streaming."""

from __future__ import annotations

import pytest

from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.rag.citations import attribute, is_refusal, parse_citations, strip_invalid_citations
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.generate import NOT_IN_SOURCES, CitedGenerator, GenerationConfig

EMB = HashingEmbedder(dim=256)


def _rc(i: int, text: str, score: float = 1.0, **meta: object) -> RetrievedChunk:
    return RetrievedChunk(Chunk(f"doc{i}::0", f"doc{i}", text, 0, len(text),
                                metadata={"title": f"Title {i}", "source": f"/src/{i}.md", **meta}), score)


CHUNKS = [_rc(1, "The assert statement raises AssertionError when its expression is false.", 3.0),
          _rc(2, "The break statement terminates the nearest enclosing loop.", 2.0, page=4),
          _rc(3, "Python lists are mutable sequences.", 1.0)]


def test_parse_and_strip_citations() -> None:
    assert parse_citations("a [1] b [2, 3] c [4-6] d [1] e [7\u20138]") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert parse_citations("no cites [x] [] [1a]") == []
    assert strip_invalid_citations("Fact [1, 9]. Other [9].", {1, 2}) == "Fact [1]. Other."


@pytest.mark.parametrize("text,expected", [
    (NOT_IN_SOURCES, True), ("The answer is not in the sources.", True), ("I don't know.", True),
    ("The context does not mention this.", True), ("", True), ("I cannot find that in the provided text", True),
    ("Sets do not contain duplicates [3].", False), ("If no value is provided, None is used [2].", False),
    ("The assert statement raises AssertionError [1].", False), ("It is not a loop [2].", False)])
def test_refusal_detection(text: str, expected: bool) -> None:
    assert is_refusal(text) is expected


def test_prompt_has_numbered_sources_and_answer_is_checked() -> None:
    llm = FakeLLMClient(lambda r: "It raises AssertionError [1]. Loops end with break [2][5].")
    gen = CitedGenerator(llm, GenerationConfig(attribute_uncited=False), embedder=EMB)
    ans = gen.generate("What does assert do?", CHUNKS)
    prompt = llm.requests[0].messages[-1].text()
    assert "[1] Title 1\nThe assert statement" in prompt and "[2] Title 2 (page 4)" in prompt
    assert "[3] Title 3" in prompt and prompt.rstrip().endswith("Answer (cite sources like [1]):")
    assert "[1]" in llm.requests[0].messages[0].text()  # the system prompt asks for [n] citations
    assert [c.number for c in ans.citations if c.valid] == [1, 2]
    assert ans.invalid_citations == [5] and ans.text == "It raises AssertionError [1]. Loops end with break [2]."
    assert ans.citations[0].chunk_id == "doc1::0" and ans.citations[0].doc_id == "doc1"
    assert [s.number for s in ans.cited_sources] == [1, 2]
    assert not ans.not_in_sources and ans.usage.llm_calls == 1 and ans.usage.prompt_tokens > 0
    assert ans.sources[1].page == 4 and ans.sources[0].source == "/src/1.md"
    assert [t.name for t in ans.trace] == ["generate", "citations"]


def test_model_refusal_marks_not_in_sources() -> None:
    gen = CitedGenerator(FakeLLMClient(script=["The sources do not say."]), embedder=EMB)
    ans = gen.generate("What is the capital of France?", CHUNKS)
    assert ans.not_in_sources and ans.citations == [] and ans.sources  # sources were shown, the model refused


def test_gate_no_chunks_and_min_score_and_min_similarity() -> None:
    llm = FakeLLMClient()
    gen = CitedGenerator(llm, embedder=EMB)
    ans = gen.generate("q", [])
    assert ans.not_in_sources and ans.text == NOT_IN_SOURCES and not llm.requests
    ans = gen.generate("q", CHUNKS, config=GenerationConfig(min_score=5.0))
    assert ans.not_in_sources and "min_score" in ans.trace[-1].detail["reason"] and not llm.requests
    # cos(question, chunks) with the hashing embedder is ~0 for disjoint words, high for shared ones
    strict = GenerationConfig(min_similarity=0.3)
    assert gen.generate("quantum chromodynamics gluon", CHUNKS, config=strict).not_in_sources
    assert not llm.requests
    assert not gen.generate("assert statement AssertionError", CHUNKS, config=strict).not_in_sources
    assert len(llm.requests) == 1


def test_context_window_drops_and_cuts_sources() -> None:
    long_text = " ".join(f"tok{i}" for i in range(300))
    chunks = [_rc(i, long_text) for i in range(1, 6)]
    llm = FakeLLMClient(script=["ok [1]"], context_window=800)
    gen = CitedGenerator(llm, GenerationConfig(max_tokens=100, safety_margin=0.1), embedder=EMB)
    ans = gen.generate("question here", chunks)
    info = next(t for t in ans.trace if t.name == "generate").detail
    assert len(ans.sources) == 2 and ans.sources[-1].truncated and not ans.sources[0].truncated
    assert info["dropped"] == 3 and info["window"] == 800
    sent = sum(EMB.count_tokens(m.text()) for m in llm.requests[0].messages)
    assert sent * 1.1 + 100 <= 800  # prompt (counted with the embedder) + completion fit the window


def test_window_override_and_default() -> None:
    gen = CitedGenerator(FakeLLMClient(context_window=None), embedder=EMB)
    assert gen.window() == 2048
    assert gen.window(GenerationConfig(context_window=512)) == 512


def test_sentence_window_chunks_show_their_window() -> None:
    c = RetrievedChunk(Chunk("d::0", "d", "Middle sentence.", 6, 22, window="Before. Middle sentence. After."), 1.0)
    llm = FakeLLMClient(script=["x [1]"])
    ans = CitedGenerator(llm, embedder=EMB).generate("q", [c])
    assert "Before. Middle sentence. After." in llm.requests[0].messages[-1].text()
    assert ans.sources[0].text == "Before. Middle sentence. After."


def test_attribution_of_uncited_sentences() -> None:
    gen = CitedGenerator(FakeLLMClient(script=["The break statement terminates the nearest enclosing loop. "
                                               "Bananas are yellow."]), embedder=EMB)
    ans = gen.generate("what does break do", CHUNKS)
    assert ans.text == "The break statement terminates the nearest enclosing loop [2]. Bananas are yellow."
    assert [(c.number, c.inferred) for c in ans.citations] == [(2, True)]
    text, added = attribute("Lists are mutable sequences [3].", gen.fit_sources("q", CHUNKS)[0], 0.5)
    assert added == [] and text == "Lists are mutable sequences [3]."


def test_streaming_events() -> None:
    llm = FakeLLMClient(script=["Assert raises AssertionError [1] [9]."])
    events = list(CitedGenerator(llm, embedder=EMB).stream("What does assert do?", CHUNKS))
    assert [e.type for e in events][0] == "sources" and events[-1].type == "done"
    deltas = "".join(e.text for e in events if e.type == "delta")
    assert deltas == "Assert raises AssertionError [1] [9]."
    final = events[-1].answer
    assert final.invalid_citations == [9] and final.text == "Assert raises AssertionError [1]."
    assert llm.requests[0].stream is True
    gated = list(CitedGenerator(llm, embedder=EMB).stream("q", []))
    assert [e.type for e in gated] == ["sources", "delta", "done"] and gated[-1].answer.not_in_sources


def test_config_validation() -> None:
    for bad in ({"max_tokens": 0}, {"temperature": 3}, {"min_similarity": 2}, {"safety_margin": 1.0},
                {"max_sources": 0}):
        with pytest.raises(ValueError):
            GenerationConfig(**bad)  # type: ignore[arg-type]


def test_answer_serialises() -> None:
    ans = CitedGenerator(FakeLLMClient(script=["A [1]."]), embedder=EMB).generate("q", CHUNKS)
    d = ans.to_dict()
    assert d["citations"][0]["number"] == 1 and d["sources"][0]["chunk_id"] == "doc1::0"
    assert d["usage"]["llm_calls"] == 1 and d["trace"][0]["name"] == "generate"


def test_tidy_answer_drops_loops_and_unfinished_tail() -> None:
    from aisd.rag.citations import tidy_answer

    text, removed = tidy_answer("It checks [1]. It checks. It checks [2]. Another fact. And then it", truncated=True)
    assert text == "It checks [1]. Another fact."
    assert removed == {"repeated_sentences": 2, "unfinished_sentence": 1, "token_loop": 0}
    assert tidy_answer("- a [1]\n- b [2]", truncated=False)[0] == "- a [1]\n- b [2]"  # layout kept when clean
    assert tidy_answer("Only an unfinished", truncated=True)[0] == "Only an unfinished"


def test_length_cut_answer_is_tidied_and_penalty_is_sent() -> None:
    from aisd.llm.schema import ChatChoice, ChatCompletionResponse, ChatMessage

    class LengthCut(FakeLLMClient):
        def chat(self, request):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            msg = ChatMessage(role="assistant", content="Assert checks [1]. Assert checks [1]. It then")
            return ChatCompletionResponse(model="x", choices=[ChatChoice(index=0, message=msg,
                                                                         finish_reason="length")])

    llm = LengthCut()
    ans = CitedGenerator(llm, GenerationConfig(frequency_penalty=0.4), embedder=EMB).generate("q", CHUNKS)
    assert ans.text == "Assert checks [1]." and ans.raw_text.endswith("It then")
    step = ans.trace[-1].detail
    assert step["finish_reason"] == "length" and step["repeated_sentences"] == 1 and step["unfinished_sentence"] == 1
    assert llm.requests[0].frequency_penalty == 0.4
    assert CitedGenerator(FakeLLMClient(), embedder=EMB)._sampling(GenerationConfig()) == {
        "max_tokens": 256, "temperature": 0.0, "stop": ["\nQuestion:", "\nSources:", "\nAnswer (cite"]}


def test_one_shot_and_best_last_prompt() -> None:
    llm = FakeLLMClient(script=["x [1]"])
    cfg = GenerationConfig(one_shot=True, source_order="best-last")
    CitedGenerator(llm, cfg, embedder=EMB).generate("What does assert do?", CHUNKS)
    msgs = llm.requests[0].messages
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert "[1]" in msgs[2].text()  # the worked example's answer cites
    prompt = msgs[-1].text()
    assert prompt.index("[3] Title 3") < prompt.index("[2] Title 2") < prompt.index("[1] Title 1")  # best last
    with pytest.raises(ValueError, match="source_order"):
        GenerationConfig(source_order="random")


def test_rule_lines_are_removed_from_sources() -> None:
    llm = FakeLLMClient(script=["x"])
    c = _rc(1, 'The "assert" statement\n**********************\n\nAssert statements ...')
    CitedGenerator(llm, embedder=EMB).generate("q", [c])
    assert "****" not in llm.requests[0].messages[-1].text()


def test_token_loops_are_cut() -> None:
    from aisd.rag.citations import tidy_answer

    text, removed = tidy_answer("Asserts insert debugging checks:\n\nassert not (not (not (not (not (not (not ()))", False)
    assert text == "Asserts insert debugging checks:" and removed["token_loop"] == 1
    text, removed = tidy_answer("A fact [1]. Then no no no no no no no.", False)
    assert text == "A fact [1]." and removed["token_loop"] == 1
