"""Settings for the whole stack: environment variables with prefix ``AISD_`` (nested with ``__``), an optional
``aisd.toml`` in the working directory (or the file named by ``AISD_CONFIG``), then defaults.

Example: ``AISD_HOME=/data/aisd AISD_ENGINE__MAX_NUM_SEQS=64 aisd serve``.
Each system owns one section; the section's fields mirror that system's frozen config dataclass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"


class EngineSettings(BaseModel):
    model: str = "smollm2-135m-instruct"  # a bundled name, a GGUF path or a safetensors directory
    served_model_name: str | None = None
    max_num_seqs: int = Field(default=32, ge=1)
    max_num_batched_tokens: int = Field(default=512, ge=16)
    block_size: int = Field(default=16, ge=1)
    max_model_len: int | None = None
    kv_cache_memory_gb: float = Field(default=1.0, gt=0)
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    max_waiting_requests: int = Field(default=256, ge=1)
    num_threads: int | None = None
    load_on_startup: bool = False  # `aisd serve` turns it on; otherwise the model loads on the first /v1 call
    num_gpu_blocks: int | None = None  # KV blocks; None = derived from kv_cache_memory_gb
    dtype: str = "float32"  # float32 | bfloat16
    seed: int = 0
    scheduling: str = "fcfs"  # fcfs | priority (lower "priority" value is served first)
    device: str = "cpu"  # cpu | cuda | auto


class EmbedSettings(BaseModel):
    model: str = "all-minilm-l6-v2"  # bundled name or a local sentence-transformers folder
    remote_url: str | None = None  # an OpenAI-compatible /v1/embeddings server instead of the local model
    remote_model: str | None = None
    cache: bool = True
    batch_size: int = Field(default=32, ge=1)


class VectorSettings(BaseModel):
    """aisd.vector (docs/vector.md): durability, default index and the filtered-search planner."""

    fsync: str = "always"  # always | batch | never
    default_index: str = "auto"  # auto | flat | hnsw | ivf | pq | ivfpq | sq8
    auto_threshold: int = Field(default=100_000, ge=1)  # index=auto: rebuild into the advised kind from here
    snapshot_wal_mb: int = Field(default=64, ge=1)  # snapshot + truncate the WAL once it grows past this
    exact_max_candidates: int = Field(default=20_000, ge=0)  # filtered subsets up to this size: brute force
    post_filter_min_selectivity: float = Field(default=0.3, gt=0.0, le=1.0)  # above: ANN search + drop misses


class RagSettings(BaseModel):
    collection: str = "rag"
    chunker: str = "recursive"
    chunk_size: int = Field(default=256, ge=16)
    chunk_overlap: int = Field(default=32, ge=0)
    retriever: str = "hybrid-rrf"  # bm25 | dense | hybrid-rrf | hybrid-alpha
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    top_k: int = Field(default=5, ge=1)
    reranker: str | None = None
    query_transform: str | None = None
    llm_url: str | None = None  # an OpenAI-compatible server; None = aisd's engine in process
    llm_model: str | None = None
    max_tokens: int = Field(default=256, ge=1)
    # R2: the rest of the pipeline (mirrors aisd.rag.pipeline.RagConfig; see docs/rag.md)
    mode: str = "simple"  # simple | agentic
    rerank_candidates: int = Field(default=50, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    frequency_penalty: float = Field(default=0.3, ge=-2.0, le=2.0)  # discourages a small model's loops
    min_score: float | None = None  # relevance gate on the retriever's score (its own scale)
    min_similarity: float | None = 0.25  # relevance gate: cos(question, best chunk) with the embedder
    context_window: int | None = None  # override the LLM's reported window
    max_sources: int = Field(default=10, ge=1)
    attribute_uncited: bool = True  # add [n] to uncited answer sentences that a source clearly supports
    source_order: str = "best-last"  # best-first | best-last (top source next to the question: helps tiny models)
    one_shot: bool = True  # a worked example (sources -> cited answer) before the question: helps tiny models
    sentence_window: int = Field(default=2, ge=0)  # sentence-window chunker: sentences either side
    semantic_percentile: float = Field(default=10.0, ge=0.0, le=100.0)  # semantic chunker breakpoint
    agent_max_iterations: int = Field(default=3, ge=1)
    agent_route: bool = True
    # answerability check before generating (aisd.rag.answerability; calibrated thresholds in docs/rag.md):
    # none | similarity | sentence | coverage | evidence | llm, several joined by "+", each optionally name:threshold
    answerability: str = "evidence"
    answerability_sources: int = Field(default=3, ge=1)
    # the "llm" check's judge when it should be another model than the generator (e.g. an aisd server running
    # Qwen2.5-1.5B: AUC 0.80 vs 0.58 for SmolLM2, docs/rag.md); None = the generator's client
    answerability_llm_url: str | None = None
    answerability_llm_model: str | None = None


class FeatureSettings(BaseModel):
    repo_path: Path | None = None  # default: $AISD_HOME/features
    online_store: str = "sqlite"  # sqlite | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "aisd"  # key prefix, so several repositories can share one Redis
    duckdb_memory_limit: str = "2GB"  # offline joins spill to <repo>/.aisd/tmp beyond this
    duckdb_threads: int = Field(default=0, ge=0)  # 0: all cores
    pit_engine: Literal["auto", "memory", "duckdb"] = "auto"  # memory: NumPy over Arrow; duckdb: one spilling query
    materialize_chunk_rows: int = Field(default=200_000, ge=1)  # rows per checkpointed materialization chunk


class ExperimentSettings(BaseModel):
    db_path: Path | None = None  # default: $AISD_HOME/experiments/experiments.duckdb
    srm_threshold: float = Field(default=0.001, gt=0, lt=1)  # SRM p-value below this withholds results
    reports_dir: Path | None = None  # default: $AISD_HOME/experiments/reports (HTML reports of `aisd exp analyze`)


class PlannerSettings(BaseModel):
    catalog: Path | None = None  # JSON file adding/overriding planner models, gpus and (dated) prices


class Settings(BaseSettings):
    """All of aisd's settings. ``home`` is where every system keeps its data."""

    model_config = SettingsConfigDict(env_prefix="AISD_", env_nested_delimiter="__", extra="ignore",
                                      toml_file="aisd.toml")

    home: Path = Field(default_factory=lambda: Path(os.path.expanduser("~/.aisd")))
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    vector: VectorSettings = Field(default_factory=VectorSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=os.environ.get("AISD_CONFIG", "aisd.toml"))
        return init_settings, env_settings, toml

    def path(self, *parts: str) -> Path:
        """A path under ``home``, created on demand."""
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
