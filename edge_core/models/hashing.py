"""SHA-256 of weight files at the speed of the CPU's hash instructions.

Every ``ensure_model`` call hashes the whole weight file (there is no
shortcut: that is how bit-rot is caught), so for multi-gigabyte
checkpoints this loop is the cost of the call. Two details keep it close
to ``openssl dgst``:

* reads go straight from the kernel into one reused buffer
  (``readinto`` on an unbuffered file), never through Python objects;
* that buffer is a small anonymous ``mmap``, so it starts on a page
  boundary. A ``bytearray`` of this size comes from ``malloc``, which puts
  it 16 bytes into a page, and on some CPUs the kernel copies into such a
  buffer several times slower.

Memory use is the buffer, whatever the file size. This module does not
decide what a digest means.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BUFFER_SIZE = 1 << 20
"""Bytes per read: large enough to amortise the syscall, small enough for L2."""

BytesCallback = Callable[[int], None]


class Hasher(Protocol):
    """The part of ``hashlib`` objects this module feeds."""

    def update(self, data: memoryview, /) -> None: ...


@dataclass(frozen=True)
class FileDigest:
    """The SHA-256 (lowercase hex) and the number of bytes hashed."""

    sha256: str
    size: int


@contextmanager
def aligned_buffer(size: int = BUFFER_SIZE) -> Iterator[memoryview]:
    """A page-aligned, writable buffer of ``size`` bytes, unmapped on exit."""
    region = mmap.mmap(-1, size)
    view = memoryview(region)
    try:
        yield view
    finally:
        view.release()
        region.close()


def sha256_file(
    path: Path,
    *,
    buffer_size: int = BUFFER_SIZE,
    on_bytes: BytesCallback | None = None,
) -> FileDigest:
    """Hash the whole file at ``path``.

    ``on_bytes`` is called with the running byte count after every read.
    Raises ``OSError`` when the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        size = feed(digest, handle.fileno(), buffer_size=buffer_size, on_bytes=on_bytes)
    return FileDigest(digest.hexdigest(), size)


def feed(
    hasher: Hasher,
    fd: int,
    *,
    limit: int | None = None,
    buffer_size: int = BUFFER_SIZE,
    on_bytes: BytesCallback | None = None,
) -> int:
    """Read ``fd`` from its current offset into ``hasher``; return the bytes read.

    Stops at end of file or after ``limit`` bytes.
    """
    _advise_sequential(fd)
    total = 0
    with aligned_buffer(buffer_size) as buffer:
        while limit is None or total < limit:
            want = buffer_size if limit is None else min(buffer_size, limit - total)
            count = os.readv(fd, [buffer[:want]])
            if count == 0:
                break
            hasher.update(buffer[:count])
            total += count
            if on_bytes is not None:
                on_bytes(total)
    return total


def _advise_sequential(fd: int) -> None:
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    try:
        advise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except OSError:
        # Only a read-ahead hint; some file systems refuse it.
        return
