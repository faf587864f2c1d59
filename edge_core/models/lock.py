"""Advisory file locks that keep two processes out of one model at a time.

The daemon, a ``models ensure`` typed by an operator and a second edge
core on the same config directory may all ensure the same model at once.
Each holds an exclusive ``flock`` on ``{cache}/.locks/<model_id>.lock``
for the whole check-download-install sequence, and on
``{cache}/.locks/index.lock`` for each read-modify-write of the manifest.
``flock`` locks belong to an open file description, so two threads of one
process exclude each other too, and the kernel drops a lock when its
holder dies (``kill -9`` included).

Lock files are never deleted: removing one while another process waits
on it would let a third process lock a different file of the same name.
This module does not know what is being protected.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_core.models.errors import LockTimeout

_log = logging.getLogger(__name__)

POLL_SECONDS = 0.05

_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


@contextmanager
def file_lock(
    path: Path,
    *,
    timeout: float | None,
    what: str,
    on_created: Callable[[Path], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when missing) for the block.

    Waits up to ``timeout`` seconds (None: forever), logging once at INFO
    that another process holds it; then raises ``LockTimeout`` naming
    ``what``. ``on_created`` is called with the path when this call
    created the lock file (to hand it to the config owner).
    """
    fd = _open(path, on_created)
    try:
        _acquire(fd, path, timeout=timeout, what=what, clock=clock, sleep=sleep)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open(path: Path, on_created: Callable[[Path], None] | None) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            return os.open(path, os.O_RDWR)
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE:
                raise
            # flock works on a read-only descriptor too: an operator's shell
            # can take a lock file the root daemon created, and a cache
            # remounted read-only can still be read under its locks.
            return os.open(path, os.O_RDONLY)
    if on_created is not None:
        on_created(path)
    return fd


def _acquire(
    fd: int,
    path: Path,
    *,
    timeout: float | None,
    what: str,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    deadline = None if timeout is None else clock() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if not announced:
            _log.info("%s is busy in another process; waiting for it", what)
            announced = True
        if deadline is not None and clock() >= deadline:
            raise LockTimeout(
                f"{what} stayed locked by another process for {timeout:g} s "
                f"({path}); will try again on the next pass"
            )
        sleep(POLL_SECONDS)
