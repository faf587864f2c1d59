"""SHA-256 of files through the page-aligned read buffer."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
from pathlib import Path

import pytest

from edge_core.models.hashing import aligned_buffer, feed, sha256_file


@pytest.mark.parametrize("size", [0, 1, 4095, 65536, (1 << 20) + 17, 3 << 20])
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    """Digest and byte count equal hashlib's for empty, odd and large sizes."""
    data = os.urandom(size)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)

    digest = sha256_file(path, buffer_size=65536)

    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.size == size


def test_sha256_file_reports_running_byte_counts(tmp_path: Path) -> None:
    """``on_bytes`` sees the count after every read, ending at the file size."""
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(200_000))
    counts: list[int] = []

    sha256_file(path, buffer_size=65536, on_bytes=counts.append)

    assert counts == [65536, 131072, 196608, 200_000]


def test_feed_stops_after_limit_from_current_offset(tmp_path: Path) -> None:
    """``feed`` hashes exactly ``limit`` bytes starting where the file offset is."""
    data = os.urandom(100_000)
    path = tmp_path / "partial.part"
    path.write_bytes(data)
    hasher = hashlib.sha256()

    with open(path, "rb", buffering=0) as handle:
        handle.seek(10)
        count = feed(hasher, handle.fileno(), limit=50_000, buffer_size=4096)

    assert count == 50_000
    assert hasher.hexdigest() == hashlib.sha256(data[10:50_010]).hexdigest()


def test_aligned_buffer_starts_on_a_page_boundary() -> None:
    """The read buffer begins at a page boundary and is writable."""
    with aligned_buffer(1 << 20) as buffer:
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        buffer[0:3] = b"abc"
        assert address % mmap.PAGESIZE == 0
        assert bytes(buffer[0:3]) == b"abc"
        assert len(buffer) == 1 << 20


def test_sha256_file_raises_for_a_missing_file(tmp_path: Path) -> None:
    """A missing file is an OSError for the caller to judge."""
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "absent.pt")
