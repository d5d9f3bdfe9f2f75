"""The attributes a ``Collection`` holds, declared once for the mixins that work on them (``WritePath``,
``IndexMaintenance``) so type checkers see one definition; ``Collection.__init__`` assigns them all."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aisd.vector.base import CollectionConfig
    from aisd.vector.indexes import VectorIndex
    from aisd.vector.locks import RWLock
    from aisd.vector.payload_index import PayloadIndex
    from aisd.vector.storage import PointStorage
    from aisd.vector.wal import WriteAheadLog


class CollectionState:
    """Annotations only: no behaviour, no defaults."""

    directory: Path
    config: CollectionConfig
    read_only: bool
    snapshot_wal_bytes: int
    _wal: WriteAheadLog
    _lock: RWLock
    _storage: PointStorage
    _index: VectorIndex
    _payload_indexes: dict[str, PayloadIndex]
    _tombstones: int
    _lsn: int
    _snapshot_lsn: int
    _rebuild_thread: threading.Thread | None
    _migrated: bool
    _migrate_lock: threading.Lock
    _closed: bool
