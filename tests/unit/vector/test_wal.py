"""The write-ahead log: round trip, torn tails truncated with a warning, real corruption reported."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pytest

from aisd.core.errors import CorruptDataError, InvalidRequestError
from aisd.vector.snapshot import read_snapshot, write_snapshot
from aisd.vector.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, encode_record, read_wal


def _write(path: Path, n: int, fsync: str = "always") -> WriteAheadLog:
    wal = WriteAheadLog(path, fsync=fsync)
    wal.open(0)
    for i in range(n):
        wal.append(OP_UPSERT, {"ids": [i], "payloads": [{"i": i}]}, bytes([i]) * 8)
    return wal


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
def test_round_trip_under_every_policy(tmp_path: Path, policy: str) -> None:
    wal = _write(tmp_path / "wal.log", 5, policy)
    wal.append(OP_DELETE, {"ids": [3]})
    wal.close()
    res = read_wal(tmp_path / "wal.log")
    assert [r.lsn for r in res.records] == [1, 2, 3, 4, 5, 6]
    assert res.records[2].meta == {"ids": [2], "payloads": [{"i": 2}]} and res.records[2].blob == bytes([2]) * 8
    assert res.records[-1].op == OP_DELETE and res.truncated_bytes == 0


def test_record_layout_is_length_crc_body() -> None:
    rec = encode_record(7, OP_DELETE, {"ids": ["x"]})
    length = int.from_bytes(rec[:4], "little")
    assert length == len(rec) - 8 and int.from_bytes(rec[4:8], "little") == zlib.crc32(rec[8:])


@pytest.mark.parametrize("cut", [1, 3, 7, 20])
def test_torn_tail_is_truncated_with_a_warning(tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wal.log"
    _write(path, 4).close()
    good = path.stat().st_size
    last = encode_record(5, OP_UPSERT, {"ids": [5], "payloads": [None]}, b"\0" * 64)
    with open(path, "ab") as f:
        f.write(last[:cut])  # a write interrupted by a crash
    with caplog.at_level(logging.WARNING, logger="aisd.vector.wal"):
        res = read_wal(path)
    assert [r.lsn for r in res.records] == [1, 2, 3, 4] and res.truncated_bytes == cut
    assert path.stat().st_size == good and "torn tail" in caplog.text
    wal = WriteAheadLog(path)  # appending after the repair continues cleanly
    wal.open(4)
    wal.append(OP_DELETE, {"ids": [1]})
    wal.close()
    assert [r.lsn for r in read_wal(path).records] == [1, 2, 3, 4, 5]


def test_bad_checksum_on_the_last_record_is_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    _write(path, 3).close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert [r.lsn for r in read_wal(path).records] == [1, 2]


def test_corruption_before_valid_records_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    _write(path, 3).close()
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the first record's body
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="wal.log.*byte 0"):
        read_wal(path)


def test_reset_starts_an_empty_log(tmp_path: Path) -> None:
    wal = _write(tmp_path / "wal.log", 3)
    wal.reset()
    wal.append(OP_DELETE, {"ids": [9]})
    wal.close()
    assert [r.lsn for r in read_wal(tmp_path / "wal.log").records] == [4]


def test_unknown_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="always, batch, never"):
        WriteAheadLog(tmp_path / "w", fsync="sometimes")


def test_snapshot_round_trip_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.bin"
    write_snapshot(path, 42, {"name": "c"}, {"a": b"hello", "b": b"\x00" * 100})
    snap = read_snapshot(path)
    assert snap.lsn == 42 and snap.sections == {"a": b"hello", "b": b"\x00" * 100}
    assert not (tmp_path / "snapshot.bin.tmp").exists()
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"snapshot.bin.*section 'b'"):
        read_snapshot(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="bad magic"):
        read_snapshot(path)
