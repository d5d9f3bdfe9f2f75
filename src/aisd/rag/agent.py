"""Agentic RAG: route, search, judge, iterate (at most ``max_iterations`` searches), then answer with citations.

The loop (every decision is a short, explicit prompt so that small models can follow it; every step is recorded in
the Answer's ``trace`` as a named ``TraceStep``):
1. ``route``: RETRIEVE (search the sources), DIRECT (general knowledge or chit-chat: answer without sources) or
   DECOMPOSE (a multi-part question: split it into sub-questions, search each);
2. ``search``: retrieve for the current query (or each sub-question) and add new chunks to the context;
3. ``judge``: ask whether the context answers the question (YES / NO); on NO the judge proposes a better search
   query and the loop goes back to 2, until ``max_iterations`` searches were made;
4. ``generate``: the cited generator answers from the gathered context (with its relevance gate and "not in the
   sources" answer).
An unparseable routing or judging reply falls back to the safe choice (RETRIEVE; "not sufficient" until the budget
is spent), never to an error. This is the route/grade/rewrite loop of Self-RAG (Asai et al. 2023) and Corrective
RAG (Yan et al. 2024) in its simplest prompt-only form.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from aisd.llm.client import LLMClient, chat_request
from aisd.rag.documents import RetrievedChunk
from aisd.rag.generate import Answer, AnswerEvent, CitedGenerator, GenerationConfig, TraceStep, Usage
from aisd.rag.query import clean_line

ROUTES = ("retrieve", "direct", "decompose")

Search = Callable[[str, int], list[RetrievedChunk]]


@dataclass(frozen=True)
class AgentConfig:
    max_iterations: int = 3  # searches, including the first
    k: int = 5  # chunks per search
    max_context: int = 8  # chunks handed to generation
    route: bool = True  # False: always retrieve (skip the routing call)
    allow_direct: bool = True  # may the router answer without sources?
    max_subquestions: int = 3
    judge: bool = True
    decision_tokens: int = 48

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if self.k < 1 or self.max_context < 1:
            raise ValueError(f"k and max_context must be >= 1, got k={self.k}, max_context={self.max_context}")
        if self.max_subquestions < 1:
            raise ValueError(f"max_subquestions must be >= 1, got {self.max_subquestions}")


ROUTE_PROMPT = ("Choose how to answer the question.\n"
                "RETRIEVE: it needs facts from documents.\n"
                "DIRECT: it is a greeting or simple general knowledge.\n"
                "DECOMPOSE: it asks about two or more different things.\n"
                "Question: {question}\nReply with one word: RETRIEVE, DIRECT or DECOMPOSE.")
DECOMPOSE_PROMPT = ("Split the question into at most {n} simple questions, one per line.\n"
                    "Question: {question}\nQuestions:")
JUDGE_PROMPT = ("Context:\n{context}\n\nQuestion: {question}\n"
                "Does the context answer the question? Reply YES, or reply NO and then a better search query.")


def parse_route(text: str) -> str | None:
    """The routing keyword the reply starts with (case-insensitive), or None. Only the first word counts: small
    models echo the option list ("RETRIEVE, DIRECT or DECOMPOSE"), which must not pick an option."""
    m = re.match(r"\W*(retrieve|direct|decompose)\b", text, re.IGNORECASE)
    if m is None:
        return None
    rest = text[m.end():]
    if re.search(r"\b(retrieve|direct|decompose)\b", rest, re.IGNORECASE):  # the whole list echoed back
        return None
    return m.group(1).lower()


@dataclass(frozen=True)
class Judgement:
    sufficient: bool | None  # None: the reply had neither YES nor NO
    next_query: str | None


def parse_judgement(text: str) -> Judgement:
    """YES / NO (the first one that appears) and, after NO, a follow-up query if the judge wrote one."""
    m = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
    if not m:
        # prose such as "The context does not answer the question" is a NO without a follow-up query
        negative = re.search(r"\b(?:does not|doesn't|do not|don't|cannot|can't) (?:answer|contain|mention|say)|"
                             r"not enough|insufficient", text, re.IGNORECASE)
        return Judgement(False, None) if negative else Judgement(None, None)
    if m.group(1).lower() == "yes":
        return Judgement(True, None)
    rest = clean_line(text[m.end():].lstrip(" .,:;-\n"))
    rest = re.sub(r"^(?:a\s+)?(?:better\s+)?search\s+query\s*(?:is|:)?\s*", "", rest, flags=re.IGNORECASE)
    rest = clean_line(rest.splitlines()[0]) if rest else ""
    return Judgement(False, rest or None)


class AgenticRAG:
    """Route / search / judge / iterate, then cited generation. ``search(query, k)`` is any retrieval function
    (the pipeline passes its retriever with query transform and filter applied)."""

    def __init__(self, llm: LLMClient, search: Search, generator: CitedGenerator,
                 config: AgentConfig | None = None) -> None:
        self.llm = llm
        self.search = search
        self.generator = generator
        self.config = config or AgentConfig()

    def _ask(self, prompt: str, usage: list[Usage], max_tokens: int | None = None) -> str:
        resp = self.llm.chat(chat_request([{"role": "user", "content": prompt}],
                                          max_tokens=max_tokens or self.config.decision_tokens, temperature=0.0))
        u = resp.usage
        usage.append(Usage(u.prompt_tokens if u else 0, u.completion_tokens if u else 0, 1))
        return resp.text

    def _route(self, question: str, usage: list[Usage], trace: list[TraceStep]) -> str:
        cfg = self.config
        if not cfg.route:
            trace.append(TraceStep("route", {"route": "retrieve", "reason": "routing disabled"}))
            return "retrieve"
        t0 = time.perf_counter()
        reply = self._ask(ROUTE_PROMPT.format(question=question), usage, max_tokens=8)
        route = parse_route(reply)
        reason = "model" if route else "unparseable reply: default retrieve"
        if route == "direct" and not cfg.allow_direct:
            route, reason = "retrieve", "direct answers disabled"
        route = route or "retrieve"
        trace.append(TraceStep("route", {"route": route, "reply": reply.strip()[:200], "reason": reason},
                               (time.perf_counter() - t0) * 1000))
        return route

    def _gather(self, query: str, context: dict[str, RetrievedChunk], trace: list[TraceStep],
                iteration: int) -> None:
        t0 = time.perf_counter()
        hits = self.search(query, self.config.k)
        new = [h for h in hits if h.chunk.id not in context]
        for h in new:
            context[h.chunk.id] = h
        trace.append(TraceStep("search", {"iteration": iteration, "query": query, "hits": len(hits),
                                          "new": len(new), "chunk_ids": [h.chunk.id for h in hits]},
                               (time.perf_counter() - t0) * 1000))

    def _judge(self, question: str, context: dict[str, RetrievedChunk], usage: list[Usage],
               trace: list[TraceStep], iteration: int) -> Judgement:
        t0 = time.perf_counter()
        top = sorted(context.values(), key=lambda r: -r.score)[: self.config.max_context]
        ctx = "\n".join(f"- {' '.join(r.chunk.context_text.split())[:600]}" for r in top) or "(nothing found)"
        reply = self._ask(JUDGE_PROMPT.format(context=ctx, question=question), usage)
        judgement = parse_judgement(reply)
        trace.append(TraceStep("judge", {"iteration": iteration, "sufficient": judgement.sufficient,
                                         "next_query": judgement.next_query, "reply": reply.strip()[:200]},
                               (time.perf_counter() - t0) * 1000))
        return judgement

    def _plan(self, question: str, usage: list[Usage], trace: list[TraceStep]) -> tuple[str, list[str]]:
        """(route, queries for the first search round)."""
        route = self._route(question, usage, trace)
        if route != "decompose":
            return route, [question]
        t0 = time.perf_counter()
        reply = self._ask(DECOMPOSE_PROMPT.format(n=self.config.max_subquestions, question=question), usage,
                          max_tokens=32 * self.config.max_subquestions)
        subs = [s for s in (clean_line(x) for x in reply.splitlines()) if len(s) > 3]
        subs = list(dict.fromkeys(subs))[: self.config.max_subquestions] or [question]
        trace.append(TraceStep("decompose", {"subquestions": subs}, (time.perf_counter() - t0) * 1000))
        return route, subs

    def _research(self, question: str, queries: list[str], usage: list[Usage],
                  trace: list[TraceStep]) -> list[RetrievedChunk]:
        """Search / judge rounds; returns the context for generation, best first."""
        cfg = self.config
        context: dict[str, RetrievedChunk] = {}
        searches = 0
        for q in queries:  # the first round: the question, or every sub-question
            if searches >= max(cfg.max_iterations, len(queries)):
                break
            self._gather(q, context, trace, iteration=1)
            searches += 1
        iteration = 1
        while cfg.judge:  # also with no hits yet: the judge may propose a query that finds some
            judgement = self._judge(question, context, usage, trace, iteration)
            if judgement.sufficient or iteration >= cfg.max_iterations:
                break
            iteration += 1
            next_query = judgement.next_query or question
            if next_query in [s.detail.get("query") for s in trace if s.name == "search"]:
                trace.append(TraceStep("stop", {"reason": "the judge repeated an earlier query"}))
                break
            self._gather(next_query, context, trace, iteration)
        ranked = sorted(context.values(), key=lambda r: -r.score)
        if len(queries) > 1:  # sub-question results: interleave so each sub-question is represented
            ranked = _interleave_by_search(trace, context) or ranked
        return ranked[: cfg.max_context]

    def _direct(self, question: str, usage: list[Usage], trace: list[TraceStep]) -> Answer:
        t0 = time.perf_counter()
        gen = self.generator.config
        reply = self._ask(question, usage, max_tokens=gen.max_tokens)
        trace.append(TraceStep("generate", {"route": "direct", "model": self.llm.model_name},
                               (time.perf_counter() - t0) * 1000))
        return Answer(text=reply.strip(), citations=[], sources=[], not_in_sources=False,
                      usage=_total(usage), trace=trace, raw_text=reply)

    def run(self, question: str, *, config: GenerationConfig | None = None) -> Answer:
        usage: list[Usage] = []
        trace: list[TraceStep] = []
        route, queries = self._plan(question, usage, trace)
        if route == "direct":
            return self._direct(question, usage, trace)
        context = self._research(question, queries, usage, trace)
        answer = self.generator.generate(question, context, trace=trace, config=config)
        return _with_usage(answer, _total(usage) + answer.usage)

    def stream(self, question: str, *, config: GenerationConfig | None = None) -> Iterator[AnswerEvent]:
        """``step`` events while the agent works, then the generator's sources / delta / done events."""
        usage: list[Usage] = []
        trace: list[TraceStep] = []
        route, queries = self._plan(question, usage, trace)
        yield from (AnswerEvent("step", step=s) for s in trace)
        if route == "direct":
            answer = self._direct(question, usage, trace)
            yield AnswerEvent("sources", sources=[])
            yield AnswerEvent("delta", text=answer.text)
            yield AnswerEvent("done", answer=answer)
            return
        before = len(trace)
        context = self._research(question, queries, usage, trace)
        yield from (AnswerEvent("step", step=s) for s in trace[before:])
        for event in self.generator.stream(question, context, trace=trace, config=config):
            if event.type == "done" and event.answer is not None:
                event = AnswerEvent("done", answer=_with_usage(event.answer, _total(usage) + event.answer.usage))
            yield event


def _total(usage: Sequence[Usage]) -> Usage:
    out = Usage()
    for u in usage:
        out = out + u
    return out


def _with_usage(answer: Answer, usage: Usage) -> Answer:
    from dataclasses import replace

    return replace(answer, usage=usage)


def _interleave_by_search(trace: Sequence[TraceStep], context: dict[str, RetrievedChunk]) -> list[RetrievedChunk]:
    """Round-robin over the searches' result lists (rank 1 of each, then rank 2 ...), without repeats."""
    lists = [s.detail.get("chunk_ids", []) for s in trace if s.name == "search"]
    out: list[RetrievedChunk] = []
    seen: set[str] = set()
    for rank in range(max((len(x) for x in lists), default=0)):
        for ids in lists:
            if rank < len(ids) and ids[rank] not in seen and ids[rank] in context:
                seen.add(ids[rank])
                out.append(context[ids[rank]])
    return out
