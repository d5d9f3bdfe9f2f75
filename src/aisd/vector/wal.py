"""Append-only, checksummed write-ahead log (one file per collection).

Record layout (little-endian)::

    u32 body_length | u32 crc32(body) | body
    body = u64 lsn | u8 op | u32 meta_length | meta (UTF-8 JSON) | blob (raw float32 vectors for upserts)

Writes go straight to the file descriptor (``os.write`` on an O_APPEND fd), so an acknowledged record survives a
process crash under every policy; the fsync policy decides power-loss safety: ``always`` fsyncs before ``append``
returns, ``batch`` fsyncs from a background thread at most ``batch_interval`` seconds later (group commit, as in
Postgres' ``synchronous_commit=off``), ``never`` leaves it to the OS. On open, a torn tail (a record cut short, or a
bad checksum on the *last* record) is truncated with a warning; a bad checksum followed by more records is real
corruption and raises CorruptDataError naming the file and offset.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError, InvalidRequestError
from aisd.vector.base import FSYNC_POLICIES

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")  # body length, crc32
_BODY = struct.Struct("<QBI")  # lsn, op, meta length

OP_UPSERT, OP_DELETE, OP_CREATE_PAYLOAD_INDEX, OP_DROP_PAYLOAD_INDEX = 1, 2, 3, 4


@dataclass(frozen=True)
class WalRecord:
    lsn: int
    op: int
    meta: dict[str, Any]
    blob: bytes


@dataclass(frozen=True)
class WalReadResult:
    records: list[WalRecord]
    truncated_bytes: int  # torn tail removed on open


def encode_record(lsn: int, op: int, meta: dict[str, Any], blob: bytes = b"") -> bytes:
    meta_bytes = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = _BODY.pack(lsn, op, len(meta_bytes)) + meta_bytes + blob
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def decode_body(body: bytes) -> WalRecord:
    lsn, op, meta_len = _BODY.unpack_from(body)
    start = _BODY.size
    meta = json.loads(body[start:start + meta_len].decode("utf-8"))
    return WalRecord(lsn, op, meta, body[start + meta_len:])


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or a new file in it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_wal(path: Path, *, repair: bool = True) -> WalReadResult:
    """All intact records; a torn tail is truncated (repair=True) and reported."""
    if not path.exists():
        return WalReadResult([], 0)
    data = path.read_bytes()
    records: list[WalRecord] = []
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < _HEAD.size:
            break  # torn length header
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if end > size or length < _BODY.size:
            break  # record cut short
        body = data[pos + _HEAD.size:end]
        if zlib.crc32(body) != crc:
            if end < size:
                raise CorruptDataError(f"write-ahead log {path} is corrupt: checksum mismatch in the record at byte "
                                       f"{pos} with {size - end} bytes of later records after it")
            break  # last record half-written
        try:
            records.append(decode_body(body))
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            raise CorruptDataError(f"write-ahead log {path}: undecodable record at byte {pos}: {e}") from None
        pos = end
    torn = size - pos
    if torn and not repair:  # a reader beside a live writer: the tail may simply be mid-write
        log.debug("write-ahead log %s: ignoring %d incomplete bytes at offset %d", path, torn, pos)
    elif torn:
        log.warning("write-ahead log %s: truncating a torn tail of %d bytes at offset %d (an interrupted write; "
                    "it was never acknowledged)", path, torn, pos)
        if repair:
            with open(path, "r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
    return WalReadResult(records, torn)


class WriteAheadLog:
    """The log a collection appends to. Not thread-safe by itself: the collection holds its write lock."""

    def __init__(self, path: Path, *, fsync: str = "always", batch_interval: float = 0.05) -> None:
        if fsync not in FSYNC_POLICIES:
            raise InvalidRequestError(f"unknown fsync policy {fsync!r}; expected one of: "
                                      f"{', '.join(FSYNC_POLICIES)}", param="fsync")
        self.path = path
        self.fsync = fsync
        self.batch_interval = batch_interval
        self.last_lsn = 0
        self._fd: int | None = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._fd_lock = threading.Lock()  # the flusher thread must never fsync an fd that reset() just closed

    def open(self, last_lsn: int) -> None:
        """Open for appending; the next record gets ``last_lsn + 1``."""
        self.last_lsn = last_lsn
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.fsync == "batch" and self._flusher is None:
            self._stop.clear()
            self._flusher = threading.Thread(target=self._flush_loop, name=f"wal-fsync:{self.path.parent.name}",
                                             daemon=True)
            self._flusher.start()

    def append(self, op: int, meta: dict[str, Any], blob: bytes = b"") -> int:
        """Append one record; returns its LSN once it is durable under the fsync policy."""
        assert self._fd is not None, "WAL is not open"
        lsn = self.last_lsn + 1
        data = encode_record(lsn, op, meta, blob)
        view = memoryview(data)
        while view:  # os.write may write less than asked for large buffers
            n = os.write(self._fd, view)
            view = view[n:]
        self.last_lsn = lsn
        if self.fsync == "always":
            os.fsync(self._fd)
        elif self.fsync == "batch":
            self._dirty.set()
        return lsn

    def sync(self) -> None:
        with self._fd_lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            if self._dirty.wait(0.5):
                self._stop.wait(self.batch_interval)
                self._dirty.clear()
                try:
                    self.sync()
                except OSError:
                    log.exception("background fsync of %s failed", self.path)

    def reset(self) -> None:
        """Start an empty log (after a snapshot covered everything): atomic replace, then fsync the directory."""
        tmp = self.path.with_suffix(".log.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.fsync(fd)
        os.close(fd)
        with self._fd_lock:
            if self._fd is not None:
                os.close(self._fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._flusher is not None:
            self._flusher.join(timeout=2)
            self._flusher = None
        with self._fd_lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
