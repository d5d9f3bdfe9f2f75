"""Small C libraries compiled on first use with the system C compiler and cached per machine.

aisd ships no prebuilt binaries of its own: the few hot loops that Python or torch cannot do fast enough (the engine's
paged decode attention, the vector store's hit builder) are C sources compiled once into ``$AISD_HOME/kernels``
(default ``~/.aisd/kernels``). A library is keyed by a hash of its source, the compiler flags, the CPU's feature flags
and the Python ABI, so a ``-march=native`` build is never reused on another CPU or interpreter. The file is written
to a temporary directory and renamed into place, so concurrent processes never load a half-written library.

Without a C compiler, or with ``AISD_NATIVE_KERNELS=0``, ``compile_library`` returns None and callers use their
pure-Python / pure-torch path (same results).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def native_enabled() -> bool:
    """False when the user turned native code off with AISD_NATIVE_KERNELS=0 (or false/no/off)."""
    return os.environ.get("AISD_NATIVE_KERNELS", "1").lower() not in ("0", "false", "no", "off")


def kernels_dir() -> Path:
    return Path(os.environ.get("AISD_HOME", "~/.aisd")).expanduser() / "kernels"


def cpu_key() -> str:
    """The CPU's feature flags: a library built with -march=native must not be reused on another CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def find_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compile_library(name: str, source: str, flags: list[str], *, libs: tuple[str, ...] = ()) -> Path | None:
    """Path of the shared library built from ``source`` (compiled now if not cached), or None when it cannot be built.

    ``flags`` must include ``-shared -fPIC``; ``libs`` are linker arguments placed after the source (e.g. ``-lm``)."""
    if not native_enabled():
        return None
    cc = find_compiler()
    if cc is None:
        log.info("no C compiler found: %s uses its pure-Python path", name)
        return None
    key = hashlib.sha256("\0".join([source, *flags, *libs, cpu_key(), platform.machine(),
                                    sys.version]).encode()).hexdigest()[:16]
    target = kernels_dir() / f"{name}_{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{name}.c"
            src.write_text(source)
            built = Path(tmp) / target.name
            proc = subprocess.run([cc, *flags, str(src), "-o", str(built), *libs], capture_output=True, text=True,
                                  timeout=120)
            if proc.returncode != 0:
                log.warning("could not build native %s with %s (%s); using the pure-Python path", name, cc,
                            proc.stderr.strip()[:500])
                return None
            os.replace(built, target)  # atomic: a concurrent process never loads a half-written file
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("native %s unavailable (%s); using the pure-Python path", name, e)
        return None
    log.info("built native %s: %s", name, target)
    return target


class NativeLibrary:
    """A native library (or its entry point) loaded on first use by ``build``, which compiles it and returns the
    ctypes object, or None when it cannot be built. Tried once per process, thread-safe; ``get()`` is None when native
    code is off (``AISD_NATIVE_KERNELS=0``) or the build failed, and callers then take their pure-Python / torch
    path. After the first call the hot path reads one attribute, without the lock."""

    def __init__(self, what: str, build: Callable[[], Any]) -> None:
        self.what = what
        self._build = build
        self._lib: Any = None
        self._tried = False
        self._lock = threading.Lock()

    def get(self) -> Any:
        if not native_enabled():
            return None
        if not self._tried:
            with self._lock:
                if not self._tried:
                    try:
                        self._lib = self._build()
                    except (OSError, AttributeError) as e:  # a missing symbol, an unloadable file
                        log.warning("%s unavailable (%s); using the pure-Python / torch path", self.what, e)
                        self._lib = None
                    self._tried = True
        return self._lib
