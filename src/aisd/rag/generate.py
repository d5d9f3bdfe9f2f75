"""Cited generation: numbered sources in the prompt, [n] citations parsed and checked, an explicit "not in the
sources" answer, streaming, and the model's context window respected.

Flow of ``CitedGenerator.generate(question, retrieved)``:
1. relevance gate: no chunks, a best retrieval score under ``min_score``, or a best question-chunk cosine under
   ``min_similarity`` (embedder scale, comparable across retrievers) -> the fixed NOT_IN_SOURCES answer, no LLM call;
   then the answerability check (``answerability``: similarity | coverage | llm, see aisd.rag.answerability): the
   sources are on topic but do they state the answer? A failed check also gives NOT_IN_SOURCES;
2. sources are numbered [1..n] in rank order and trimmed to fit ``context window - max_tokens - prompt`` counted with
   the embedder's tokenizer (or any ``count_tokens``) times ``1 + safety_margin``, because the counting tokenizer
   is not the LLM's: lowest-ranked sources are dropped first and the last kept one is cut to the remaining budget;
3. the LLM answers; ``[n]`` / ``[n, m]`` / ``[n-m]`` citations are parsed; numbers that are not a source are
   reported in ``invalid_citations`` and removed from the text; a refusal phrase ("not in the sources", "I don't
   know" ...) marks the answer ``not_in_sources``;
4. optional post-hoc attribution (small models often forget to cite): an answer sentence without a citation gets
   the source that shares most of its content words, if that share is at least ``attribution_min_overlap``;
   such citations are flagged ``inferred=True``.
The text checks themselves are pure functions in ``aisd.rag.citations``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aisd.core.errors import InvalidRequestError
from aisd.embed.base import Embedder
from aisd.llm.client import LLMClient, chat_request
from aisd.rag.answer import Answer, AnswerEvent, Citation, Source, TraceStep, Usage
from aisd.rag.answerability import AnswerabilityChecker, AnswerabilityConfig
from aisd.rag.citations import (
    attribute,
    is_refusal,
    parse_citations,
    strip_invalid_citations,
    tidy_answer,
)
from aisd.rag.documents import RetrievedChunk

__all__ = ["NOT_IN_SOURCES", "Answer", "AnswerEvent", "CitedGenerator", "Citation", "GenerationConfig", "Source",
           "TraceStep", "Usage", "build_user_prompt", "format_source"]

NOT_IN_SOURCES = "I could not find the answer in the sources."

DEFAULT_SYSTEM = ("You answer questions using only the numbered sources. Answer in at most three sentences. After "
                  "each fact, cite its source number in brackets, like [1]. If the sources do not contain the "
                  f"answer, reply exactly: {NOT_IN_SOURCES}")

# A worked example for small models: the answer copies the fact and cites it; the second source is a distractor.
ONE_SHOT: list[dict[str, str]] = [
    {"role": "user", "content": "Sources:\n[1] Mount Everest\nMount Everest is 8,849 metres high and lies in the "
                                "Himalayas.\n\n[2] K2\nK2 is the second-highest mountain on Earth.\n\n"
                                "Question: How high is Mount Everest?\nAnswer (cite sources like [1]):"},
    {"role": "assistant", "content": "Mount Everest is 8,849 metres high [1]."},
]

STOP = ["\nQuestion:", "\nSources:", "\nAnswer (cite"]

_RULE = re.compile(r"([*=~^#_-])\1{3,}")


@dataclass(frozen=True)
class GenerationConfig:
    max_tokens: int = 256
    temperature: float = 0.0
    frequency_penalty: float = 0.0  # OpenAI semantics: penalises tokens repeated in the answer, not the sources
    min_score: float | None = None  # gate on the retriever's own score (its scale: BM25, cosine, RRF ...)
    min_similarity: float | None = None  # gate on cos(question, best chunk) with the embedder
    context_window: int | None = None  # override what the LLM client reports
    default_context_window: int = 2048  # when neither the client nor the config knows
    safety_margin: float = 0.15  # extra share of tokens assumed because the counting tokenizer differs
    max_sources: int = 10
    source_order: str = "best-first"  # best-last puts the top source next to the question (small models' recency)
    one_shot: bool = False  # show one worked example (sources -> cited answer) before the real question
    system_prompt: str = DEFAULT_SYSTEM
    detect_refusal: bool = True
    attribute_uncited: bool = True
    attribution_min_overlap: float = 0.5
    # none | similarity | sentence | coverage | evidence | llm, several joined by "+" (all must pass), each optionally
    # name:threshold (aisd.rag.answerability)
    answerability: str = "none"
    answerability_sources: int = 3  # top chunks the answerability check reads

    def __post_init__(self) -> None:
        self.answerability_config()  # validates the answerability fields
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}")
        if self.min_similarity is not None and not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {self.min_similarity}")
        if not 0.0 <= self.safety_margin < 1.0:
            raise ValueError(f"safety_margin must be in [0, 1), got {self.safety_margin}")
        if self.max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {self.max_sources}")
        if self.source_order not in ("best-first", "best-last"):
            raise ValueError(f"source_order must be one of: best-first, best-last; got {self.source_order!r}")
        if not 0.0 <= self.attribution_min_overlap <= 1.0:
            raise ValueError(f"attribution_min_overlap must be in [0, 1], got {self.attribution_min_overlap}")

    def answerability_config(self) -> AnswerabilityConfig:
        return AnswerabilityConfig(strategy=self.answerability, sources=self.answerability_sources)


# ---- pure helpers -----------------------------------------------------------------------------------------------


def format_source(source: Source) -> str:
    head = f"[{source.number}]"
    if source.title:
        head += f" {source.title}"
    if source.page is not None:
        head += f" (page {source.page})"
    text = _RULE.sub(" ", source.text)  # reST/Markdown underlines ("*****", "-----") are noise to the model
    return f"{head}\n{' '.join(text.split())}"


def build_user_prompt(question: str, sources: Sequence[Source], order: str = "best-first") -> str:
    shown = list(sources) if order == "best-first" else list(reversed(sources))
    blocks = "\n\n".join(format_source(s) for s in shown)
    return f"Sources:\n{blocks}\n\nQuestion: {question}\nAnswer (cite sources like [1]):"


def _heuristic_count(text: str) -> int:
    return max(1, len(text) // 4)  # ~4 characters per BPE token for English (OpenAI's rule of thumb)


class CitedGenerator:
    """Answers a question from retrieved chunks with checked [n] citations. Works with any LLMClient."""

    def __init__(self, llm: LLMClient, config: GenerationConfig | None = None, *, embedder: Embedder | None = None,
                 count_tokens: Callable[[str], int] | None = None, answerability_llm: LLMClient | None = None) -> None:
        self.llm = llm
        self.answerability_llm = answerability_llm  # judge of the "llm" answerability check; None: llm
        self.config = config or GenerationConfig()
        self.embedder = embedder
        self.count_tokens = count_tokens or (embedder.count_tokens if embedder is not None else _heuristic_count)

    # ---- stage 1: relevance gate ----
    def relevance(self, question: str, retrieved: Sequence[RetrievedChunk]) -> list[float] | None:
        """cos(question, chunk) for every chunk with the embedder (None without one)."""
        if self.embedder is None or not retrieved:
            return None
        vecs = self.embedder.embed([question, *[r.chunk.text for r in retrieved]])  # (1 + n, dim), unit rows
        return [float(x) for x in vecs[1:] @ vecs[0]]

    def gate(self, question: str, retrieved: Sequence[RetrievedChunk],
             config: GenerationConfig | None = None) -> TraceStep | None:
        """A TraceStep explaining why nothing relevant was found, or None when generation should go ahead."""
        cfg = config or self.config
        if not retrieved:
            return TraceStep("gate", {"passed": False, "reason": "no chunks retrieved"})
        best = max(r.score for r in retrieved)
        if cfg.min_score is not None and best < cfg.min_score:
            return TraceStep("gate", {"passed": False, "reason": f"best retrieval score {best:.4f} < min_score "
                                                                f"{cfg.min_score}"})
        if cfg.min_similarity is not None and self.embedder is not None:
            sims = self.relevance(question, retrieved) or [1.0]
            if max(sims) < cfg.min_similarity:
                return TraceStep("gate", {"passed": False, "reason": f"best question-chunk similarity "
                                                                    f"{max(sims):.3f} < min_similarity "
                                                                    f"{cfg.min_similarity}"})
        return None

    def check_answerable(self, question: str, retrieved: Sequence[RetrievedChunk],
                         config: GenerationConfig | None = None) -> TraceStep | None:
        """The ``answerability`` step (None when the check is off); its ``passed`` says whether to generate."""
        cfg = config or self.config
        acfg = cfg.answerability_config()
        if not acfg.strategies:
            return None
        t0 = time.perf_counter()
        checker = AnswerabilityChecker(acfg, llm=self.answerability_llm or self.llm, embedder=self.embedder,
                                       similarity=self.relevance)
        try:
            verdict = checker.check(question, retrieved)
        except ValueError as e:  # e.g. "similarity" without an embedder: a configuration error, said clearly
            raise InvalidRequestError(f"answerability {acfg.strategy!r}: {e}", param="answerability") from e
        detail = {"passed": verdict.answerable, "reason": verdict.reason(), "strategy": acfg.strategy,
                  "checks": [c.to_dict() for c in verdict.checks], "llm_calls": verdict.llm_calls}
        return TraceStep("answerability", detail, (time.perf_counter() - t0) * 1000)

    def _blocked(self, question: str, retrieved: Sequence[RetrievedChunk], cfg: GenerationConfig,
                 trace: Sequence[TraceStep]) -> tuple[TraceStep | None, list[TraceStep]]:
        """(the step that blocks generation or None, the trace so far): the relevance gate, then answerability."""
        blocked = self.gate(question, retrieved, cfg)
        if blocked is not None:
            return blocked, list(trace)
        step = self.check_answerable(question, retrieved, cfg)
        if step is None:
            return None, list(trace)
        if not step.detail["passed"]:
            return step, list(trace)
        return None, [*trace, step]

    # ---- stage 2: sources within the context window ----
    def window(self, config: GenerationConfig | None = None) -> int:
        cfg = config or self.config
        return cfg.context_window or self.llm.context_window() or cfg.default_context_window

    def fit_sources(self, question: str, retrieved: Sequence[RetrievedChunk],
                    config: GenerationConfig | None = None) -> tuple[list[Source], dict[str, Any]]:
        """Number the chunks as sources and drop / cut the lowest-ranked ones to fit the window."""
        cfg = config or self.config
        scale = 1.0 + cfg.safety_margin
        window = self.window(cfg)
        shot = "".join(m["content"] for m in ONE_SHOT) if cfg.one_shot else ""
        overhead = self.count_tokens(cfg.system_prompt + shot + build_user_prompt(question, [])) + 24  # + template
        budget = int(window / scale) - cfg.max_tokens - overhead
        sources: list[Source] = []
        info: dict[str, Any] = {"window": window, "budget_tokens": max(budget, 0), "dropped": 0, "truncated": 0}
        for r in list(retrieved)[: cfg.max_sources]:
            c = r.chunk
            src = Source(number=len(sources) + 1, chunk_id=c.id, doc_id=c.doc_id, title=str(c.metadata.get("title",
                         "")), source=str(c.metadata.get("source", c.doc_id)), text=c.context_text, score=r.score,
                         start=c.start, end=c.end, page=c.metadata.get("page"))  # type: ignore[arg-type]
            cost = self.count_tokens(format_source(src)) + 2
            if cost <= budget:
                sources.append(src)
                budget -= cost
                continue
            if budget > 32:  # room for a useful prefix: cut this source to fit, then stop
                cut = self._cut_to(src.text, budget - self.count_tokens(src.title) - 8)
                if cut:
                    sources.append(replace(src, text=cut, truncated=True))
                    info["truncated"] = 1
            break
        info["dropped"] = min(len(retrieved), cfg.max_sources) - len(sources)
        info["used_tokens"] = info["budget_tokens"] - max(budget, 0)
        return sources, info

    def _cut_to(self, text: str, tokens: int) -> str:
        if tokens <= 0:
            return ""
        if self.embedder is not None:
            spans = self.embedder.token_spans(text)
            return text[: spans[tokens - 1].end] if len(spans) > tokens else text
        return text[: tokens * 4]

    # ---- stage 3: the model ----
    @staticmethod
    def _sampling(cfg: GenerationConfig) -> dict[str, Any]:
        # small models continue the prompt's pattern ("Question: ..." again): stop there
        params: dict[str, Any] = {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "stop": STOP}
        if cfg.frequency_penalty:
            params["frequency_penalty"] = cfg.frequency_penalty
        return params

    def _messages(self, question: str, sources: Sequence[Source], cfg: GenerationConfig) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": cfg.system_prompt}]
        if cfg.one_shot:
            messages += ONE_SHOT
        return messages + [{"role": "user", "content": build_user_prompt(question, sources, cfg.source_order)}]

    def finish(self, raw: str, sources: list[Source], usage: Usage, trace: list[TraceStep],
               config: GenerationConfig | None = None, finish_reason: str | None = None) -> Answer:
        """Tidy the text, parse and check citations, detect a refusal, attribute uncited sentences."""
        cfg = config or self.config
        by_number = {s.number: s for s in sources}
        tidy, removed = tidy_answer(raw, truncated=finish_reason == "length")
        numbers = parse_citations(tidy)
        invalid = [n for n in numbers if n not in by_number]
        text = strip_invalid_citations(tidy, set(by_number)) if invalid else tidy
        refused = cfg.detect_refusal and is_refusal(text)
        inferred: list[int] = []
        if refused:
            text = text or NOT_IN_SOURCES
        elif cfg.attribute_uncited and sources:
            text, inferred = attribute(text, sources, cfg.attribution_min_overlap)
        citations = [Citation(n, True, by_number[n].chunk_id, by_number[n].doc_id, inferred=n in inferred)
                     for n in parse_citations(text) if n in by_number]
        citations += [Citation(n, False) for n in invalid]
        trace = [*trace, TraceStep("citations", {"cited": [c.number for c in citations if c.valid],
                                                 "invalid": invalid, "inferred": inferred, "refusal": refused,
                                                 "finish_reason": finish_reason, **removed})]
        return Answer(text=text, citations=citations, sources=sources, not_in_sources=refused, usage=usage,
                      trace=trace, invalid_citations=invalid, raw_text=raw)

    def not_found(self, step: TraceStep, trace: Sequence[TraceStep] = ()) -> Answer:
        calls = int(step.detail.get("llm_calls", 0))  # an LLM answerability check may have been asked
        return Answer(text=NOT_IN_SOURCES, citations=[], sources=[], not_in_sources=True, trace=[*trace, step],
                      usage=Usage(0, 0, calls), raw_text="")

    def generate(self, question: str, retrieved: Sequence[RetrievedChunk], *, trace: Sequence[TraceStep] = (),
                 config: GenerationConfig | None = None) -> Answer:
        cfg = config or self.config
        t0 = time.perf_counter()
        blocked, trace = self._blocked(question, retrieved, cfg, trace)
        if blocked is not None:
            return self.not_found(blocked, trace)
        sources, info = self.fit_sources(question, retrieved, cfg)
        if not sources:
            return self.not_found(TraceStep("gate", {"passed": False, "reason": "no source fits the context "
                                                                                  "window", **info}), trace)
        request = chat_request(self._messages(question, sources, cfg), **self._sampling(cfg))
        response = self.llm.chat(request)
        u = response.usage
        usage = Usage(u.prompt_tokens if u else 0, u.completion_tokens if u else 0, 1)
        steps = [*trace, TraceStep("generate", {"sources": len(sources), **info, "model": self.llm.model_name},
                                   (time.perf_counter() - t0) * 1000)]
        finish_reason = response.choices[0].finish_reason if response.choices else None
        return self.finish(response.text, sources, usage, steps, cfg, finish_reason)

    def stream(self, question: str, retrieved: Sequence[RetrievedChunk], *, trace: Sequence[TraceStep] = (),
               config: GenerationConfig | None = None) -> Iterator[AnswerEvent]:
        """``sources`` event, then ``delta`` events as the model writes, then ``done`` with the checked Answer."""
        cfg = config or self.config
        t0 = time.perf_counter()
        blocked, trace = self._blocked(question, retrieved, cfg, trace)
        sources, info = ([], {}) if blocked is not None else self.fit_sources(question, retrieved, cfg)
        if blocked is not None or not sources:
            answer = self.not_found(blocked or TraceStep("gate", {"passed": False, "reason": "no source fits"}),
                                    trace)
            yield AnswerEvent("sources", sources=[])
            yield AnswerEvent("delta", text=answer.text)
            yield AnswerEvent("done", answer=answer)
            return
        yield AnswerEvent("sources", sources=sources)
        request = chat_request(self._messages(question, sources, cfg), **self._sampling(cfg), stream=True)
        pieces: list[str] = []
        finish_reason: str | None = None
        usage = Usage(0, 0, 1)
        for chunk in self.llm.chat_stream(request):
            usage_obj = getattr(chunk, "usage", None)
            if usage_obj is not None:
                usage = Usage(usage_obj.prompt_tokens, usage_obj.completion_tokens, 1)
            for choice in chunk.choices:
                finish_reason = choice.finish_reason or finish_reason
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                    yield AnswerEvent("delta", text=choice.delta.content)
        steps = [*trace, TraceStep("generate", {"sources": len(sources), **info, "model": self.llm.model_name,
                                                "stream": True}, (time.perf_counter() - t0) * 1000)]
        yield AnswerEvent("done", answer=self.finish("".join(pieces), sources, usage, steps, cfg, finish_reason))
