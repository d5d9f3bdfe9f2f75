"""VectorStore: a directory of named collections, one writer process at a time.

Layout: ``<path>/<collection>/{collection.json, snapshot.bin, wal.log}`` and ``<path>/.lock`` (the writer's flock).
Collections are recovered (snapshot + WAL replay) the first time they are used. Creating a collection writes its
directory under a temporary name and renames it, so a crash never leaves a half-created collection.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from aisd.core.errors import ConflictError, InvalidRequestError, NotFoundError
from aisd.vector.base import FSYNC_POLICIES, CollectionConfig, check_name
from aisd.vector.collection import CONFIG_FILE, Collection, read_config, write_config
from aisd.vector.indexes import IndexSpec
from aisd.vector.locks import WriterLock
from aisd.vector.planner import PlannerConfig
from aisd.vector.wal import fsync_dir

log = logging.getLogger(__name__)


class VectorStore:
    """``VectorStore(path)`` opens or creates a store; ``read_only=True`` opens it beside a running writer."""

    def __init__(self, path: str | Path, *, fsync: str = "always", read_only: bool = False,
                 planner: PlannerConfig | None = None, snapshot_wal_bytes: int = 64 * 2**20) -> None:
        if fsync not in FSYNC_POLICIES:
            raise InvalidRequestError(f"unknown fsync policy {fsync!r}; expected one of: {', '.join(FSYNC_POLICIES)}",
                                      param="fsync")
        self.path = Path(path)
        self.fsync = fsync
        self.read_only = read_only
        self.planner = planner or PlannerConfig()
        self.snapshot_wal_bytes = snapshot_wal_bytes
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._writer_lock: WriterLock | None = None
        if read_only:
            if not self.path.is_dir():
                raise NotFoundError(f"vector store {self.path} does not exist", param="path")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._writer_lock = WriterLock(self.path / ".lock")
            self._writer_lock.acquire()

    # ---- collections --------------------------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        with self._lock:
            on_disk = {p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and (p / CONFIG_FILE).exists()}
            return sorted(on_disk)

    def has_collection(self, name: str) -> bool:
        return name in self._collections or (self.path / name / CONFIG_FILE).exists()

    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "auto",
                          params: dict[str, Any] | None = None, *, exist_ok: bool = False,
                          auto_threshold: int = 100_000, memory_budget_bytes: int | None = None,
                          latency_target_ms: float | None = None) -> Collection:
        """Create a collection; an existing name raises ConflictError unless ``exist_ok`` and the definition
        (dim, metric) matches."""
        self._check_open(write=True)
        config = CollectionConfig(name=name, dim=dim, metric=metric, index=index, params=dict(params or {}),
                                  auto_threshold=auto_threshold, memory_budget_bytes=memory_budget_bytes,
                                  latency_target_ms=latency_target_ms)
        if index != "auto":
            IndexSpec(index, dim, metric, config.params)  # validate parameters before touching disk
        elif config.params:
            raise InvalidRequestError("index='auto' chooses its own parameters; pass an explicit index kind to set "
                                      "params", param="params")
        with self._lock:
            if self.has_collection(name):
                existing = self.get_collection(name)
                if exist_ok and existing.dim == dim and existing.metric == metric:
                    return existing
                if exist_ok:
                    raise ConflictError(f"collection {name!r} exists with dim={existing.dim}, "
                                        f"metric={existing.metric!r}; asked for dim={dim}, metric={metric!r}",
                                        param="dim" if existing.dim != dim else "metric")
                raise ConflictError(f"collection {name!r} already exists", param="name", code="collection_exists")
            tmp = self.path / f".creating-{name}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            write_config(tmp, config)
            os.replace(tmp, self.path / name)
            fsync_dir(self.path)
            col = self._open(name, config)
            log.info("created collection %s (dim=%d, metric=%s, index=%s)", name, dim, metric, index)
            return col

    def get_collection(self, name: str) -> Collection:
        self._check_open()
        with self._lock:
            col = self._collections.get(name)
            if col is not None:
                return col
            check_name(name)
            if not (self.path / name / CONFIG_FILE).exists():
                raise NotFoundError(f"collection {name!r} not found; existing: "
                                    f"{', '.join(self.list_collections()) or '(none)'}", param="name")
            return self._open(name, read_config(self.path / name))

    def _open(self, name: str, config: CollectionConfig) -> Collection:
        col = Collection(self.path / name, config, fsync=self.fsync, read_only=self.read_only,
                         snapshot_wal_bytes=self.snapshot_wal_bytes, planner=self.planner).load()
        self._collections[name] = col
        return col

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its files (NotFoundError if it does not exist)."""
        self._check_open(write=True)
        with self._lock:
            col = self.get_collection(name)
            col.close()
            del self._collections[name]
            trash = self.path / f".dropped-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(self.path / name, trash)  # atomic: the name disappears at once
            fsync_dir(self.path)
            shutil.rmtree(trash, ignore_errors=True)

    def refresh(self) -> None:
        """Read-only stores: reload collections to see what the writer has committed since."""
        with self._lock:
            for name in list(self._collections):
                self._collections.pop(name).close()

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def _check_open(self, write: bool = False) -> None:
        if self._closed:
            raise ConflictError(f"vector store {self.path} is closed")
        if write and self.read_only:
            raise ConflictError(f"vector store {self.path} is open read-only", code="read_only")

    def close(self) -> None:
        """Snapshot and close every open collection, then release the writer lock."""
        if self._closed:
            return
        with self._lock:
            for col in self._collections.values():
                try:
                    col.close()
                except Exception:  # noqa: BLE001 - close the rest
                    log.exception("closing collection %s failed", col.name)
            self._collections.clear()
            if self._writer_lock is not None:
                self._writer_lock.release()
            self._closed = True

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VectorStore({str(self.path)!r}, fsync={self.fsync!r}, read_only={self.read_only})"
