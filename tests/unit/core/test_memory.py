"""release_free_memory hands freed heap pages back on glibc and is a harmless no-op elsewhere."""

from __future__ import annotations

import platform

from aisd.core.memory import release_free_memory


def test_release_free_memory_runs_and_reports_whether_it_could() -> None:
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MiB of heap, then freed
    del blocks
    did = release_free_memory()
    assert isinstance(did, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert did
    assert release_free_memory() == did  # repeatable
