"""Reading and writing the JSON files of the config directory safely.

Every file the edge core writes goes through this module so that a power
cut, a full disk or a crash never leaves a half-written file behind: new
content is written to a temp file in the same directory, flushed to disk
and renamed over the old one. Twin JSON files are the one exception: they
are bind-mounted into driver containers as single files, so they are
rewritten in place to keep their inode (protocol.md 3.7).

Reading translates every failure into one ``ConfigError`` line that names
the file, the problem and the fix. Write failures are left as ``OSError``:
the caller decides whether a failed write is fatal, and the previous file
is always left untouched.

This module does not know what any file means; it only moves bytes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from edge_core.errors import ConfigError

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp_"
"""Temp files start with this prefix, so no scan mistakes them for real files."""

_PERMISSION_FIX = (
    "run the edge core as root (sudo) or give the file's owner read access"
)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The bytes go to a temp file in the same directory, which is fsynced,
    chmodded to ``mode`` and renamed over ``path``; then the directory is
    fsynced. On any failure (including a full disk) the temp file is
    removed, the previous file is untouched and the ``OSError`` propagates.
    """
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent
        )
    except OSError as exc:
        raise _about(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise _about(exc, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_directory(path.parent)


def _about(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the file being written, not its random temp name.

    Messages then name the file a person knows, and stay the same from
    one attempt to the next.
    """
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def sweep_temp_files(directory: Path) -> list[str]:
    """Remove the temp files an interrupted write left in ``directory``.

    A power cut or SIGKILL between creating a temp file and renaming it
    leaves one behind; only names with this module's prefix are touched.
    Returns the names removed; a directory that cannot be listed is skipped.
    """
    removed: list[str] = []
    try:
        leftovers = [p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]
    except OSError as exc:
        logger.debug("cannot list %s for temp files: %s", directory, exc)
        return removed
    for path in leftovers:
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path.name)
        except OSError as exc:
            logger.debug("cannot remove temp file %s: %s", path, exc)
    if removed:
        logger.info(
            "removed %d temp file(s) of an interrupted write from %s",
            len(removed),
            directory,
        )
    return removed


def atomic_write_json(path: Path, obj: object, *, mode: int = 0o644) -> None:
    """Write ``obj`` as JSON (indent 2, trailing newline) atomically."""
    atomic_write_bytes(path, json_bytes(obj), mode=mode)


def json_bytes(obj: object) -> bytes:
    """The bytes this project writes for a JSON document: indent 2, newline."""
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


def rewrite_in_place(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace the content of ``path`` while keeping its inode.

    A file bind-mounted into a running container keeps showing the old
    inode after a rename, so an existing file is opened write-only without
    truncation, overwritten with ``data`` padded with spaces to the old
    length, truncated to the new length, fsynced and chmodded. A missing
    file is written atomically instead. A directory at ``path`` (Docker
    creates one when a bind-mount source is missing) is removed first; it
    must be empty, otherwise the ``OSError`` propagates.
    """
    try:
        # Never through a symlink, and never blocking on a FIFO.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        atomic_write_bytes(path, data, mode=mode)
        return
    except IsADirectoryError:
        logger.info("replacing directory %s with a file", path)
        os.rmdir(path)
        atomic_write_bytes(path, data, mode=mode)
        return
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise OSError(
                errno.EINVAL, "is not a regular file; not written", str(path)
            ) from None
        raise

    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "is not a regular file; not written", str(path))
        if info.st_nlink > 1:
            # Another name shares these bytes: writing would change that file.
            raise OSError(
                errno.EMLINK, "has other names (hard links); not written", str(path)
            )
        old_size = info.st_size
        _reserve(fd, old_size, len(data))
        padded = data + b" " * max(0, old_size - len(data))
        _write_all(fd, padded)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _reserve(fd: int, old_size: int, new_size: int) -> None:
    """Allocate the blocks a longer content needs before a byte is changed.

    On a full disk the in-place write would otherwise stop half-way and
    leave a damaged file; this way it fails with the old content intact.
    """
    if new_size <= old_size or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, new_size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        os.ftruncate(fd, old_size)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk, where supported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        logger.debug("cannot open %s to fsync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems refuse fsync on directories; the rename is
        # already done, only its durability is best effort there.
        logger.debug("cannot fsync directory %s: %s", directory, exc)
    finally:
        os.close(fd)


MAX_CONFIG_BYTES = 64 << 20
"""The most any JSON file of the config dir is read into memory."""


class NotRegularFile(OSError):
    """Something other than a regular file is where a file is read."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is a {kind}, not a regular file", str(path))
        self.kind = kind


def read_regular(
    path: Path, *, follow: bool = True, max_bytes: int = MAX_CONFIG_BYTES
) -> bytes:
    """The bytes of the regular file at ``path``, never blocking.

    Opened non-blocking and checked with ``fstat``, so a FIFO, a device
    (``/dev/zero``) or a socket is refused instead of read. Without
    ``follow`` a symlink is refused too. A file larger than ``max_bytes``
    is refused (``EFBIG``) rather than read whole.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise NotRegularFile(path, "symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, "special file")
        if info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"is larger than {max_bytes} bytes", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json_file(path: Path, *, what: str, fix: str | None = None) -> object:
    """Parse the JSON document in ``path``.

    ``what`` names the file for people ("credentials", "environment");
    ``fix`` is the next step shown when the file is missing or not JSON.
    Raises ``ConfigError`` for a missing, unreadable or malformed file.
    """
    next_step = fix or f"restore the {what} file"
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise ConfigError(str(path), None, "does not exist", next_step) from None
    except PermissionError:
        raise ConfigError(
            str(path), None, "cannot be read (permission denied)", _PERMISSION_FIX
        ) from None
    except OSError as exc:
        raise ConfigError(
            str(path), None, f"cannot be read ({_describe(exc)})", next_step
        ) from None

    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, "is not UTF-8 text", next_step) from None
    except json.JSONDecodeError as exc:
        problem = (
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        )
        raise ConfigError(str(path), None, problem, next_step) from None


def _describe(exc: OSError) -> str:
    if exc.errno is not None and exc.strerror:
        return exc.strerror
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)
