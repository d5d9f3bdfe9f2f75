"""RAGPipeline: ingest -> (query transform) -> retrieve (-> rerank) -> cited generation, simple or agentic.

Every stage is chosen by name in ``RagConfig`` (which mirrors the ``[rag]`` settings section):
chunker (fixed | recursive | sentence | semantic | sentence-window), retriever (bm25 | dense | hybrid-rrf |
hybrid-alpha), reranker (any name aisd.rag.rerank.build_reranker knows, or None), query transform (none | rewrite |
expansion | prf | hyde | multi-query), mode (simple | agentic), and the generator's relevance gate and window.
``ask(question, **overrides)`` accepts per-call overrides of the query-time fields (k, filter, query_transform,
mode, max_tokens, temperature, min_score, min_similarity ...).

State under ``home``: the retriever's files (``<collection>.*``) and ``ingest.sqlite`` (the ingested documents);
``home=None`` keeps everything in memory (tests, notebooks).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from aisd.core.errors import InvalidRequestError, UnsupportedError
from aisd.embed.base import Embedder
from aisd.llm.client import LLMClient
from aisd.rag.agent import AgentConfig, AgenticRAG
from aisd.rag.chunking import CHUNKERS, build_chunker
from aisd.rag.documents import Document, RetrievedChunk
from aisd.rag.generate import Answer, AnswerEvent, CitedGenerator, GenerationConfig, TraceStep
from aisd.rag.ingest import DocumentRecord, Ingestor, IngestReport, IngestState
from aisd.rag.loaders import load_path
from aisd.rag.query import TRANSFORM_NAMES, QueryTransform, build_query_transform, search_with_transform
from aisd.rag.retrieval import KINDS, Retriever, build_retriever

MODES = ("simple", "agentic")


@dataclass(frozen=True)
class RagConfig:
    collection: str = "rag"
    chunker: str = "recursive"
    chunk_size: int = 256
    chunk_overlap: int = 32
    sentence_window: int = 2
    semantic_percentile: float = 10.0
    retriever: str = "hybrid-rrf"
    alpha: float = 0.5
    top_k: int = 5
    reranker: str | None = None
    rerank_candidates: int = 50
    query_transform: str | None = None
    mode: str = "simple"
    max_tokens: int = 256
    temperature: float = 0.0
    frequency_penalty: float = 0.3
    min_score: float | None = None
    min_similarity: float | None = 0.25
    context_window: int | None = None
    max_sources: int = 10
    attribute_uncited: bool = True
    source_order: str = "best-last"
    one_shot: bool = True
    agent_max_iterations: int = 3
    agent_route: bool = True
    answerability: str = "evidence"  # a spec of aisd.rag.answerability: "evidence", "coverage:0.4+llm" ...
    answerability_sources: int = 3

    def __post_init__(self) -> None:
        if self.chunker not in CHUNKERS:
            raise ValueError(f"chunker must be one of {', '.join(CHUNKERS.names())}; got {self.chunker!r}")
        if self.retriever not in KINDS:
            raise ValueError(f"retriever must be one of {', '.join(KINDS)}; got {self.retriever!r}")
        if (self.query_transform or "none") not in TRANSFORM_NAMES:
            raise ValueError(f"query_transform must be one of {', '.join(TRANSFORM_NAMES)}; "
                             f"got {self.query_transform!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(f"chunk_overlap must be in [0, chunk_size={self.chunk_size}), got {self.chunk_overlap}")
        self.generation()  # validates the generator's fields

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RagConfig:
        """Build from a settings section (extra keys such as llm_url are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_tokens=self.max_tokens, temperature=self.temperature,
                                frequency_penalty=self.frequency_penalty, min_score=self.min_score,
                                min_similarity=self.min_similarity, context_window=self.context_window,
                                max_sources=self.max_sources, attribute_uncited=self.attribute_uncited,
                                source_order=self.source_order, one_shot=self.one_shot,
                                answerability=self.answerability, answerability_sources=self.answerability_sources)


# Query-time fields ask() accepts as overrides (the rest need a rebuilt pipeline: chunker, retriever ...).
QUERY_OVERRIDES = {"top_k", "query_transform", "mode", "max_tokens", "temperature", "frequency_penalty", "min_score",
                   "min_similarity",
                   "context_window", "max_sources", "attribute_uncited", "source_order", "one_shot",
                   "agent_max_iterations", "agent_route", "answerability", "answerability_sources"}


def build_reranker_by_name(name: str | None, *, llm: LLMClient | None, embedder: Embedder | None) -> Any:
    """The reranker called ``name`` (None / "none" -> no reranking), through aisd.rag.rerank's factory."""
    if name in (None, "", "none"):
        return None
    try:
        from aisd.rag.rerank import build_reranker  # type: ignore[attr-defined]
    except ImportError as e:
        raise UnsupportedError(f"reranker {name!r}: no reranker factory is available ({e})", param="reranker") from e
    return build_reranker(name, llm=llm, embedder=embedder)


class RAGPipeline:
    def __init__(self, config: RagConfig, *, retriever: Retriever, embedder: Embedder | None, llm: LLMClient | None,
                 home: Path | None = None, answerability_llm: LLMClient | None = None) -> None:
        self.config = config
        self.retriever = retriever
        self.embedder = embedder
        self.llm = llm
        # the judge of the "llm" answerability check when it is another model than the generator (a larger one
        # judges much better, docs/rag.md); None: the generator's client
        self.answerability_llm = answerability_llm
        self.home = Path(home) if home is not None else None
        if embedder is None:
            raise InvalidRequestError("RAGPipeline needs an embedder (its tokenizer sizes chunks)", param="embedder")
        options: dict[str, Any] = {}
        if config.chunker == "sentence-window":
            options["window"] = config.sentence_window
        if config.chunker == "semantic":
            options["breakpoint_percentile"] = config.semantic_percentile
        self.chunker = build_chunker(config.chunker, embedder=embedder, chunk_size=config.chunk_size,
                                     chunk_overlap=config.chunk_overlap, **options)
        self.state = IngestState(self.home / "ingest.sqlite" if self.home is not None else None)
        self.ingestor = Ingestor(retriever, self.chunker, self.state)
        self._transforms: dict[str, QueryTransform] = {}

    @classmethod
    def from_settings(cls, rag_settings: Any, *, home: Path | None, embedder: Embedder | None, vector_store: Any,
                      llm: LLMClient | None, answerability_llm: LLMClient | None = None) -> RAGPipeline:
        """What app/wiring.py calls: ``rag_settings`` is the [rag] settings section (pydantic) or a mapping."""
        values = rag_settings.model_dump() if hasattr(rag_settings, "model_dump") else dict(rag_settings)
        try:
            config = RagConfig.from_mapping(values)
        except ValueError as e:
            raise InvalidRequestError(f"invalid [rag] settings: {e}", param="rag") from e
        reranker = build_reranker_by_name(config.reranker, llm=llm, embedder=embedder)
        retriever = build_retriever(config.retriever, embedder=embedder, home=home, vector_store=vector_store,
                                    collection=config.collection, alpha=config.alpha, reranker=reranker,
                                    rerank_candidates=config.rerank_candidates)
        return cls(config, retriever=retriever, embedder=embedder, llm=llm, home=home,
                   answerability_llm=answerability_llm)

    @classmethod
    def in_memory(cls, *, embedder: Embedder, llm: LLMClient | None = None, answerability_llm: LLMClient | None = None,
                  **config: Any) -> RAGPipeline:
        """A pipeline with every index in memory (tests, notebooks, evaluation runs)."""
        cfg = RagConfig(**config)
        reranker = build_reranker_by_name(cfg.reranker, llm=llm, embedder=embedder)
        retriever = build_retriever(cfg.retriever, embedder=embedder, home=None, collection=cfg.collection,
                                    alpha=cfg.alpha, reranker=reranker, rerank_candidates=cfg.rerank_candidates)
        return cls(cfg, retriever=retriever, embedder=embedder, llm=llm, home=None,
                   answerability_llm=answerability_llm)

    # ---- ingestion --------------------------------------------------------------------------------------------
    def ingest(self, path_or_documents: str | Path | Sequence[Document], *, glob: str | None = None,
               delete_missing: bool = True, on_error: str = "skip") -> IngestReport:
        """Ingest a file, a folder (matching ``glob``) or Document objects. Re-ingesting is idempotent: unchanged
        documents are skipped, changed ones replaced and, for a path, documents gone from it deleted."""
        if isinstance(path_or_documents, str | Path):
            loaded = load_path(path_or_documents, glob, on_error=on_error)
            return self.ingestor.ingest(loaded.documents, scope=loaded.scope, delete_missing=delete_missing,
                                        failed=loaded.failed)
        docs = list(path_or_documents)
        bad = [type(d).__name__ for d in docs if not isinstance(d, Document)]
        if bad:
            raise InvalidRequestError(f"expected a path or Document objects, got {bad[0]}", param="documents")
        return self.ingestor.ingest(docs, scope=None, delete_missing=False)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        return self.ingestor.delete(doc_ids)

    def documents(self, limit: int = 100, offset: int = 0) -> list[DocumentRecord]:
        return self.state.list(limit=limit, offset=offset)

    def stats(self) -> dict[str, Any]:
        return {"documents": self.state.count(), "chunks": self.retriever.count(), "retriever": self.retriever.name,
                "chunker": self.config.chunker, "chunk_size": self.config.chunk_size, "mode": self.config.mode,
                "query_transform": self.config.query_transform or "none", "reranker": self.config.reranker}

    # ---- query time -------------------------------------------------------------------------------------------
    def _resolved(self, overrides: dict[str, Any]) -> RagConfig:
        if "k" in overrides:
            overrides = dict(overrides)
            overrides["top_k"] = overrides.pop("k")
        unknown = set(overrides) - QUERY_OVERRIDES
        if unknown:
            raise InvalidRequestError(f"unknown option(s) {', '.join(sorted(unknown))}; allowed: k, "
                                      f"{', '.join(sorted(QUERY_OVERRIDES - {'top_k'}))}", param=sorted(unknown)[0])
        values = {k: v for k, v in overrides.items() if v is not None or k in {"min_score", "min_similarity"}}
        try:
            return dataclasses.replace(self.config, **values) if values else self.config
        except (ValueError, TypeError) as e:
            raise InvalidRequestError(str(e), param=next(iter(values))) from e

    def transform(self, name: str | None) -> QueryTransform:
        key = name or "none"
        if key not in self._transforms:
            self._transforms[key] = build_query_transform(key, llm=self.llm, retriever=self.retriever)
        return self._transforms[key]

    def _search(self, cfg: RagConfig, filter: dict | None,
                trace: list[TraceStep] | None = None) -> Callable[[str, int], list[RetrievedChunk]]:
        transform = self.transform(cfg.query_transform)

        def search(query: str, k: int) -> list[RetrievedChunk]:
            t0 = time.perf_counter()
            hits = search_with_transform(self.retriever, transform, query, k, filter)
            if trace is not None:
                trace.append(TraceStep("retrieve", {"query": query, "k": k, "retriever": self.retriever.name,
                                                    "query_transform": transform.name, "hits": len(hits),
                                                    "chunk_ids": [h.chunk.id for h in hits]},
                                       (time.perf_counter() - t0) * 1000))
            return hits

        return search

    def retrieve(self, question: str, k: int | None = None, filter: dict | None = None,
                 query_transform: str | None = None) -> list[RetrievedChunk]:
        if not question or not question.strip():
            raise InvalidRequestError("question must not be empty", param="question")
        cfg = self._resolved({"top_k": k, "query_transform": query_transform})
        return self._search(cfg, filter)(question, cfg.top_k)

    def _need_llm(self) -> LLMClient:
        if self.llm is None:
            raise UnsupportedError("this pipeline has no LLM client: configure one to ask questions", param="llm")
        return self.llm

    @property
    def answerability_judge(self) -> LLMClient | None:
        """The client the "llm" answerability check asks: the separate judge when one is set, else the generator."""
        return self.answerability_llm or self.llm

    def _generator(self, cfg: RagConfig) -> CitedGenerator:
        return CitedGenerator(self._need_llm(), cfg.generation(), embedder=self.embedder,
                              answerability_llm=self.answerability_judge)

    def _agent(self, cfg: RagConfig, filter: dict | None) -> AgenticRAG:
        agent_cfg = AgentConfig(max_iterations=cfg.agent_max_iterations, k=cfg.top_k, route=cfg.agent_route,
                                max_context=cfg.max_sources)
        return AgenticRAG(self._need_llm(), self._search(cfg, filter), self._generator(cfg), agent_cfg)

    def ask(self, question: str, *, filter: dict | None = None, **overrides: Any) -> Answer:
        """Answer with [n] citations (or the explicit not-in-the-sources answer); ``overrides``: see RagConfig."""
        if not question or not question.strip():
            raise InvalidRequestError("question must not be empty", param="question")
        cfg = self._resolved(overrides)
        if cfg.mode == "agentic":
            return self._agent(cfg, filter).run(question)
        trace: list[TraceStep] = []
        hits = self._search(cfg, filter, trace)(question, cfg.top_k)
        return self._generator(cfg).generate(question, hits, trace=trace)

    def ask_stream(self, question: str, *, filter: dict | None = None, **overrides: Any) -> Iterator[AnswerEvent]:
        """Events: (agentic: ``step`` ...), ``sources``, ``delta`` ..., ``done`` (the checked Answer)."""
        if not question or not question.strip():
            raise InvalidRequestError("question must not be empty", param="question")
        cfg = self._resolved(overrides)
        if cfg.mode == "agentic":
            yield from self._agent(cfg, filter).stream(question)
            return
        trace: list[TraceStep] = []
        hits = self._search(cfg, filter, trace)(question, cfg.top_k)
        yield from (AnswerEvent("step", step=s) for s in trace)
        yield from self._generator(cfg).stream(question, hits, trace=trace)

    def close(self) -> None:
        self.state.close()  # the retriever was saved after every ingest
