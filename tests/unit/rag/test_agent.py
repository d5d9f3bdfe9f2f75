"""Agentic RAG: routing, decomposition, judge-driven iteration with a cap, trace, streaming, usage."""

from __future__ import annotations

from aisd.embed.fake import HashingEmbedder
from aisd.llm.fake import FakeLLMClient
from aisd.llm.schema import ChatCompletionRequest
from aisd.rag.agent import AgentConfig, AgenticRAG, parse_judgement, parse_route
from aisd.rag.documents import Chunk, RetrievedChunk
from aisd.rag.generate import CitedGenerator

EMB = HashingEmbedder(dim=256)
CORPUS = {
    "assert": "The assert statement raises AssertionError when the expression is false.",
    "break": "The break statement terminates the nearest enclosing loop.",
    "continue": "The continue statement skips to the next iteration of the loop.",
}


def search(query: str, k: int) -> list[RetrievedChunk]:
    """Keyword search over CORPUS: a chunk matches when its key word is in the query."""
    q = query.lower()
    return [RetrievedChunk(Chunk(f"{key}::0", key, text, 0, len(text), metadata={"title": key}), 1.0)
            for key, text in CORPUS.items() if key in q][:k]


class Scripted(FakeLLMClient):
    """Answers by the kind of prompt it gets (route / decompose / judge / answer)."""

    def __init__(self, route: str, judge: list[str], decompose: str = "", answer: str = "Answer [1].") -> None:
        super().__init__(self._respond)
        self.route, self.judge, self.decompose, self.answer = route, list(judge), decompose, answer

    def _respond(self, request: ChatCompletionRequest) -> str:
        prompt = request.messages[-1].text()
        if prompt.startswith("Choose how to answer"):
            return self.route
        if prompt.startswith("Split the question"):
            return self.decompose
        if "Does the context answer the question?" in prompt:
            return self.judge.pop(0) if self.judge else "YES"
        return self.answer


def _agent(llm: FakeLLMClient, **cfg: object) -> AgenticRAG:
    return AgenticRAG(llm, search, CitedGenerator(llm, embedder=EMB), AgentConfig(**cfg))  # type: ignore[arg-type]


def test_parsers() -> None:
    assert parse_route("RETRIEVE.") == "retrieve" and parse_route("Decompose it") == "decompose"
    assert parse_route("**Direct**") == "direct"
    assert parse_route("hmm") is None and parse_route("I think RETRIEVE") is None
    assert parse_route("REVES, DIRECT or DEC") is None  # SmolLM2-135M echoing the options
    assert parse_route("RETRIEVE, DIRECT or DECOMPOSE") is None
    assert parse_judgement("YES, it does") == parse_judgement("yes")
    assert parse_judgement("Yes").sufficient is True
    j = parse_judgement("NO. Better search query: break statement loop")
    assert j.sufficient is False and j.next_query == "break statement loop"
    assert parse_judgement("No").next_query is None and parse_judgement("maybe").sufficient is None
    assert parse_judgement("The context does not answer the question. It says ...") == parse_judgement("NO")


def test_retrieve_then_judge_sufficient() -> None:
    llm = Scripted("RETRIEVE", ["YES"], answer="It raises AssertionError [1].")
    ans = _agent(llm).run("What does assert do?")
    assert [t.name for t in ans.trace] == ["route", "search", "judge", "generate", "citations"]
    assert ans.text == "It raises AssertionError [1]." and ans.citations[0].doc_id == "assert"
    assert ans.usage.llm_calls == 3  # route + judge + answer


def test_judge_iterates_with_new_query_up_to_the_cap() -> None:
    llm = Scripted("RETRIEVE", ["NO. search query: break statement", "NO. search query: continue statement",
                                "NO. search query: something else"])
    ans = _agent(llm, max_iterations=3).run("How do loops end early?")
    searches = [t for t in ans.trace if t.name == "search"]
    assert [s.detail["query"] for s in searches] == ["How do loops end early?", "break statement",
                                                     "continue statement"]
    assert len([t for t in ans.trace if t.name == "judge"]) == 3  # the third judgement ends the loop at the cap
    assert {s.doc_id for s in ans.sources} == {"break", "continue"}


def test_repeated_query_stops_early() -> None:
    llm = Scripted("RETRIEVE", ["NO. search query: What does assert do?"])
    ans = _agent(llm, max_iterations=5).run("What does assert do?")
    assert [t.name for t in ans.trace][:4] == ["route", "search", "judge", "stop"]


def test_decompose_searches_each_subquestion() -> None:
    llm = Scripted("DECOMPOSE", ["YES"], decompose="1. What does break do?\n2. What does continue do?")
    ans = _agent(llm).run("What do break and continue do?")
    assert [s.detail["query"] for s in ans.trace if s.name == "search"] == ["What does break do?",
                                                                          "What does continue do?"]
    assert ans.trace[1].name == "decompose" and [s.doc_id for s in ans.sources] == ["break", "continue"]


def test_direct_route_answers_without_sources() -> None:
    llm = Scripted("DIRECT", [], answer="Hello! How can I help?")
    ans = _agent(llm).run("hi there")
    assert ans.text == "Hello! How can I help?" and ans.sources == [] and not ans.not_in_sources
    assert _agent(Scripted("DIRECT", []), allow_direct=False).run("What does assert do?").sources


def test_unparseable_route_defaults_to_retrieve_and_no_hits_is_not_in_sources() -> None:
    llm = Scripted("banana", [])
    ans = _agent(llm).run("What is a monad?")
    assert ans.trace[0].detail["route"] == "retrieve" and "unparseable" in ans.trace[0].detail["reason"]
    assert ans.not_in_sources and ans.sources == []


def test_routing_disabled_skips_the_call() -> None:
    llm = Scripted("DIRECT", ["YES"])
    ans = _agent(llm, route=False).run("What does assert do?")
    assert ans.trace[0].detail["reason"] == "routing disabled" and ans.usage.llm_calls == 2


def test_stream_emits_steps_then_answer() -> None:
    llm = Scripted("RETRIEVE", ["YES"], answer="Break ends the loop [1].")
    events = list(_agent(llm).stream("What does break do?"))
    types = [e.type for e in events]
    assert types[:3] == ["step", "step", "step"] and "sources" in types and types[-1] == "done"
    assert "".join(e.text for e in events if e.type == "delta") == "Break ends the loop [1]."
    assert events[-1].answer.usage.llm_calls == 3
