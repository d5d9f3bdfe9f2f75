"""A fast reader of a GGUF file's header: key-value metadata and tensor shapes, never the tensor data.

Layout (GGUF v2/v3, ggml ``docs/gguf.md``): magic ``GGUF``, u32 version, u64 tensor count, u64 key-value count; each
key-value is a string key, a u32 value type and the value (arrays: u32 element type, u64 length, elements); then per
tensor a string name, u32 n_dims, u64 dims, u32 ggml type, u64 offset. Strings are a u64 length and UTF-8 bytes.

``gguf.GGUFReader`` builds a numpy view for every array element (a 49k-token vocabulary and its merges are ~100k
views), which takes 1-12 s; this reader walks the same bytes with ``struct`` and keeps only array lengths (plus small
numeric arrays such as per-layer head counts), so a header reads in tens of milliseconds. The value-type ids come
from the ``gguf`` package (``GGUFValueType``); a reference test checks both readers agree.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError

# GGUFValueType ids (gguf-py constants.py) -> struct format of a scalar
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_SMALL_ARRAY = 4096  # numeric arrays up to this length are kept (per-layer values); longer ones: length only
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array kept by length only (vocabularies, merges, token types)."""

    element_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, endian: str) -> None:
        self.buf, self.pos, self.e = buf, 0, endian

    def unpack(self, fmt: str) -> Any:
        s = struct.Struct(self.e + fmt)
        if self.pos + s.size > len(self.buf):
            raise CorruptDataError("GGUF header is truncated")
        (v,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return v

    def string(self) -> str:
        n = self.unpack("Q")
        if self.pos + n > len(self.buf):
            raise CorruptDataError("GGUF header is truncated inside a string")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("Q")
        self.pos += n

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, n = self.unpack("I"), self.unpack("Q")
            if etype in _SCALARS:
                size = struct.calcsize(_SCALARS[etype])
                if n <= _SMALL_ARRAY:
                    fmt = struct.Struct(f"{self.e}{n}{_SCALARS[etype]}")
                    vals = list(fmt.unpack_from(self.buf, self.pos))
                    self.pos += fmt.size
                    return vals
                self.pos += n * size
                return ArrayInfo(etype, n)
            if etype == _STRING:
                if n <= 64:
                    return [self.string() for _ in range(n)]
                for _ in range(n):
                    self.skip_string()
                return ArrayInfo(etype, n)
            raise CorruptDataError(f"GGUF: unsupported nested array element type {etype}")
        raise CorruptDataError(f"GGUF: unknown metadata value type {vtype}")


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Metadata and tensor shapes of a GGUF file (v2 or v3, either byte order)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise CorruptDataError(f"{p}: not a GGUF file (bad magic)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, p)
    except OSError as e:
        raise CorruptDataError(f"{p}: cannot read GGUF header ({e})") from e
    except (struct.error, ValueError) as e:
        raise CorruptDataError(f"{p}: malformed GGUF header ({e})") from e


def _parse(buf: mmap.mmap, p: Path) -> GGUFHeader:
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version > 0xFFFF:  # a big-endian file reads as a huge little-endian number
        endian = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version < 2:
        raise CorruptDataError(f"{p}: GGUF version {version} is not supported (need 2 or 3)")
    cur = _Cursor(buf, endian)
    cur.pos = 8
    n_tensors, n_kv = cur.unpack("Q"), cur.unpack("Q")
    header = GGUFHeader(version=version)
    for _ in range(n_kv):
        key = cur.string()
        header.metadata[key] = cur.value(cur.unpack("I"))
    for _ in range(n_tensors):
        name = cur.string()
        dims = tuple(cur.unpack("Q") for _ in range(cur.unpack("I")))
        ggml_type = cur.unpack("I")
        cur.unpack("Q")  # data offset: not needed
        header.tensors.append(TensorInfo(name, dims, ggml_type))
    return header
