"""Online stores: SQLite (embedded default) and Redis, behind one protocol; ``create_online_store`` by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aisd.features.online.base import OnlineRecord, OnlineRow, OnlineStore, encode_key

ONLINE_STORES = ("sqlite", "redis")


def create_online_store(kind: str, *, path: str | Path | None = None, redis_url: str | None = None,
                        **kwargs: Any) -> OnlineStore:
    """``sqlite`` (needs ``path``) or ``redis`` (needs ``redis_url``)."""
    if kind == "sqlite":
        from aisd.features.online.sqlite import SqliteOnlineStore

        if path is None:
            raise ValueError("the sqlite online store needs a path")
        return SqliteOnlineStore(path)
    if kind == "redis":
        from aisd.features.online.redis import RedisOnlineStore

        return RedisOnlineStore(redis_url or "redis://127.0.0.1:6379/0", **kwargs)
    raise ValueError(f"unknown online store {kind!r}; expected one of: {', '.join(ONLINE_STORES)}")


__all__ = ["ONLINE_STORES", "OnlineRecord", "OnlineRow", "OnlineStore", "create_online_store", "encode_key"]
