"""Atomic, checksummed snapshots of a collection: points (ids, payloads, vectors) and the FAISS index in one file.

Layout::

    b"AISDSNP1" | u64 header_length | header (UTF-8 JSON) | section bytes ...
    header = {"version", "lsn", "sections": [{"name", "offset", "length", "crc32"}], ...}

Written to ``snapshot.bin.tmp``, fsynced, renamed over ``snapshot.bin`` and the directory fsynced, so a crash leaves
either the old or the new snapshot, never half of one. Every section is checked on load; a mismatch raises
CorruptDataError naming the file and the section.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError
from aisd.vector.wal import fsync_dir

MAGIC = b"AISDSNP1"
VERSION = 1
_LEN = struct.Struct("<Q")


@dataclass(frozen=True)
class Snapshot:
    lsn: int
    header: dict[str, Any]
    sections: dict[str, bytes]


def write_snapshot(path: Path, lsn: int, header: dict[str, Any], sections: dict[str, bytes]) -> int:
    """Write atomically; returns the file size in bytes."""
    offset = 0
    table = []
    for name, data in sections.items():
        table.append({"name": name, "offset": offset, "length": len(data), "crc32": zlib.crc32(data)})
        offset += len(data)
    head = json.dumps({**header, "version": VERSION, "lsn": lsn, "sections": table},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + _LEN.pack(len(head)) + head)
        for data in sections.values():
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path.stat().st_size


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify a snapshot; CorruptDataError names the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptDataError(f"snapshot {path} cannot be read: {e}") from None
    if data[: len(MAGIC)] != MAGIC:
        raise CorruptDataError(f"snapshot {path} is corrupt: bad magic bytes (not an aisd snapshot or truncated)")
    try:
        (head_len,) = _LEN.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _LEN.size
        header = json.loads(data[start:start + head_len].decode("utf-8"))
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise CorruptDataError(f"snapshot {path} is corrupt: unreadable header ({e})") from None
    if header.get("version") != VERSION:
        raise CorruptDataError(f"snapshot {path} has unsupported version {header.get('version')!r}")
    base = start + head_len
    sections: dict[str, bytes] = {}
    for entry in header.get("sections", []):
        lo = base + entry["offset"]
        chunk = data[lo:lo + entry["length"]]
        if len(chunk) != entry["length"]:
            raise CorruptDataError(f"snapshot {path} is corrupt: section {entry['name']!r} is truncated")
        if zlib.crc32(chunk) != entry["crc32"]:
            raise CorruptDataError(f"snapshot {path} is corrupt: checksum mismatch in section {entry['name']!r}")
        sections[entry["name"]] = chunk
    return Snapshot(int(header["lsn"]), header, sections)
