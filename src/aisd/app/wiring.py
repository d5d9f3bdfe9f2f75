"""Builds each system's long-lived objects from Settings, lazily, once per process.

The server keeps one ``Services`` on ``app.state.services``; the CLI builds one per command. Each property imports its
system only when first used, so ``aisd plan ...`` never loads torch. Tests inject fakes by assigning the attribute
(``services.llm_client = FakeLLMClient()``) before the first use.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from aisd.app.settings import Settings

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ---- engine (issue: LLM inference engine) -------------------------------------------------------------------
    @cached_property
    def engine(self) -> Any:
        """The async engine serving /v1/completions and /v1/chat/completions (``aisd.engine.async_engine``)."""
        from aisd.engine.async_engine import AsyncLLMEngine

        return AsyncLLMEngine.from_settings(self.settings.engine)

    @cached_property
    def llm_client(self) -> Any:
        """The LLMClient RAG and judges use: a remote OpenAI-compatible server if configured, else the engine."""
        rag = self.settings.rag
        if rag.llm_url:
            from aisd.llm.client import OpenAIClient

            return OpenAIClient(rag.llm_url, rag.llm_model or self.settings.engine.model)
        from aisd.engine.client import LocalClient

        return LocalClient(self.engine)  # shares the server's engine: one model in memory, one batch

    # ---- embeddings -----------------------------------------------------------------------------------------------
    @cached_property
    def embedder(self) -> Any:
        from aisd.embed import build_embedder

        return build_embedder(self.settings.embed, cache_dir=self.settings.path("embed"))

    # ---- vector ---------------------------------------------------------------------------------------------------
    @cached_property
    def vector_store(self) -> Any:
        from aisd.vector import PlannerConfig, VectorStore

        v = self.settings.vector
        return VectorStore(self.settings.path("vector"), fsync=v.fsync, snapshot_wal_bytes=v.snapshot_wal_mb * 2**20,
                           planner=PlannerConfig(exact_max_candidates=v.exact_max_candidates,
                                                 post_filter_min_selectivity=v.post_filter_min_selectivity))

    # ---- rag ------------------------------------------------------------------------------------------------------
    @cached_property
    def rag(self) -> Any:
        from aisd.rag.pipeline import RAGPipeline

        return RAGPipeline.from_settings(self.settings.rag, home=self.settings.path("rag"), embedder=self.embedder,
                                         vector_store=self.vector_store, llm=self.llm_client,
                                         answerability_llm=self.answerability_llm_client)

    @cached_property
    def answerability_llm_client(self) -> Any:
        """The judge of RAG's "llm" answerability check when ``rag.answerability_llm_url`` names one (an
        OpenAI-compatible server, typically a larger model than the generator); None = the generator's client."""
        rag = self.settings.rag
        if not rag.answerability_llm_url:
            return None
        from aisd.llm.client import OpenAIClient

        return OpenAIClient(rag.answerability_llm_url, rag.answerability_llm_model or self.settings.engine.model)

    # ---- features -------------------------------------------------------------------------------------------------
    @cached_property
    def feature_store(self) -> Any:
        from aisd.features import FeatureStore, FeatureStoreConfig, OfflineConfig

        cfg = self.settings.features
        repo = cfg.repo_path or self.settings.path("features")
        return FeatureStore(repo, FeatureStoreConfig(
            online_store=cfg.online_store, redis_url=cfg.redis_url, redis_prefix=cfg.redis_prefix,
            offline=OfflineConfig(memory_limit=cfg.duckdb_memory_limit, threads=cfg.duckdb_threads,
                                  pit_engine=cfg.pit_engine),
            materialize_chunk_rows=cfg.materialize_chunk_rows))

    # ---- experiments ----------------------------------------------------------------------------------------------
    @cached_property
    def experiments(self) -> Any:
        from aisd.experiments.store import ExperimentStore

        cfg = self.settings.experiments
        path = cfg.db_path or self.settings.path("experiments") / "experiments.duckdb"
        return ExperimentStore(path, srm_threshold=cfg.srm_threshold)

    # ---- planner --------------------------------------------------------------------------------------------------
    @cached_property
    def planner_catalog(self) -> Any:
        """The planner's catalog: the shipped JSON, extended by ``settings.planner.catalog`` when set."""
        from aisd.planner import default_catalog, load_catalog_file

        path = self.settings.planner.catalog
        return load_catalog_file(path) if path else default_catalog()

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        """Names of the services built so far."""
        names = ["engine", "llm_client", "embedder", "vector_store", "rag", "feature_store", "experiments"]
        return [n for n in names if n in self.__dict__]

    def close(self) -> None:
        """Close what was built, newest first; one failing close does not stop the others."""
        for name in reversed(self.loaded()):
            obj = self.__dict__[name]
            closer = getattr(obj, "close", None) or getattr(obj, "shutdown", None)
            if closer is None:
                continue
            try:
                result = closer()
                if hasattr(result, "close"):  # a coroutine from an async close: not awaited here
                    result.close()
            except Exception:  # noqa: BLE001 - closing must continue
                log.exception("closing %s failed", name)
