"""Hand memory freed by a large reallocation back to the operating system.

glibc's malloc keeps freed chunks in its heap for reuse, and after a big copy-and-free (an index relaid out, a
buffer replaced) the process's RSS stays at the peak although the memory is free. ``malloc_trim(0)`` returns the free
pages (https://man7.org/linux/man-pages/man3/malloc_trim.3.html). Other C libraries (musl, macOS) have no such call
and manage this themselves: there it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return free heap memory to the OS where the C library can (glibc); True if it did so."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
