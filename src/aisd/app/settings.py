"""Settings for the whole stack: environment variables with prefix ``AISD_`` (nested with ``__``), an optional
``aisd.toml`` in the working directory (or the file named by ``AISD_CONFIG``), then defaults.

Example: ``AISD_HOME=/data/aisd AISD_ENGINE__MAX_NUM_SEQS=64 aisd serve``.
Each system owns one section; the section's fields mirror that system's frozen config dataclass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
    load_on_startup: bool = True


class EmbedSettings(BaseModel):
    model: str = "all-minilm-l6-v2"  # bundled name or a local sentence-transformers folder
    remote_url: str | None = None  # an OpenAI-compatible /v1/embeddings server instead of the local model
    remote_model: str | None = None
    cache: bool = True
    batch_size: int = Field(default=32, ge=1)


class VectorSettings(BaseModel):
    fsync: str = "always"  # always | batch | never
    default_index: str = "auto"


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


class FeatureSettings(BaseModel):
    repo_path: Path | None = None  # default: $AISD_HOME/features
    online_store: str = "sqlite"  # sqlite | redis
    redis_url: str = "redis://127.0.0.1:6379/0"


class ExperimentSettings(BaseModel):
    db_path: Path | None = None  # default: $AISD_HOME/experiments/experiments.duckdb
    srm_threshold: float = 0.001


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
