"""Redis online store: one hash per (view, entity key) with fields t (event time), c (created time), v (JSON values).

Writes go through a Lua script so the newer-wins check and the write are atomic on the server (two concurrent
pushes cannot interleave), in batches of ``batch_size`` keys per call. Reads are one pipelined round trip of HMGETs.
For a cluster, keys of one view share a hash tag (``{view}``) so a batch script touches one slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aisd.core.errors import ServiceUnavailableError
from aisd.features.online.base import OnlineRecord, OnlineRow, dumps, loads

_WRITE = """
local n = 0
for i, k in ipairs(KEYS) do
  local t = tonumber(ARGV[3*i-2]); local c = tonumber(ARGV[3*i-1])
  local old = redis.call('HMGET', k, 't', 'c')
  local ot = tonumber(old[1])
  if (not ot) or ot < t or (ot == t and tonumber(old[2]) <= c) then
    redis.call('HSET', k, 't', ARGV[3*i-2], 'c', ARGV[3*i-1], 'v', ARGV[3*i])
    n = n + 1
  end
end
return n
"""


class RedisOnlineStore:
    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "aisd", batch_size: int = 500,
                 client: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url, self.prefix, self.batch_size = url, prefix, batch_size
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=5)
        self._r = client
        try:
            self._r.ping()
        except Exception as e:  # noqa: BLE001 - any connection failure
            raise ServiceUnavailableError(f"Redis online store at {url} is not reachable: {e}") from e
        self._write = self._r.register_script(_WRITE)

    def _key(self, view: str, entity_key: str) -> str:
        return f"{self.prefix}:{{{view}}}:{entity_key}"

    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        changed = 0
        for i in range(0, len(rows), self.batch_size):
            part = rows[i:i + self.batch_size]
            args: list[str] = []
            for r in part:
                args += [repr(float(r.event_ts)), repr(float(r.created_ts)), dumps(r.values)]
            changed += int(self._write(keys=[self._key(view, r.entity_key) for r in part], args=args))
        return changed

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        if not keys:
            return []
        if len(keys) == 1:
            results = [self._r.hmget(self._key(view, keys[0]), "t", "v")]
        else:
            pipe = self._r.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(self._key(view, k), "t", "v")
            results = pipe.execute()
        return [OnlineRecord(loads(v), float(t)) if t is not None else None for t, v in results]

    def _scan(self, view: str) -> list[bytes]:
        return list(self._r.scan_iter(match=f"{self.prefix}:{{{view}}}:*", count=1000))

    def count(self, view: str) -> int:
        return len(self._scan(view))

    def delete_view(self, view: str) -> None:
        keys = self._scan(view)
        for i in range(0, len(keys), 1000):
            self._r.delete(*keys[i:i + 1000])

    def close(self) -> None:
        self._r.close()
