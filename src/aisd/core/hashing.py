"""Stable hashes: the same input gives the same value across processes, machines and Python versions.

Python's ``hash()`` is salted per process, so nothing persistent or distributed may use it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes or UTF-8 text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def stable_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so that equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hash_object(obj: Any) -> str:
    """SHA-256 of an object's canonical JSON."""
    return sha256_hex(stable_json(obj))


def hash_to_unit_interval(*parts: str) -> float:
    """Map strings to a float uniform in [0, 1): the first 8 bytes of SHA-256 over the parts joined by NUL."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
