"""The twin JSON files that drivers read at ``/app/<twin_uuid>.json``.

Each linked twin with an asset gets ``{config}/<twin_uuid>.json``: the twin
object plus an ``asset`` key (protocol.md 3.7). The file is a single-file
bind mount, so an existing file is rewritten in place (same inode) after
deep-merging the new data onto what is there; keys a driver added locally
survive. A file that is not valid JSON is replaced by the new data rather
than merged into.

Only a twin whose uuid is a UUID has a file (protocol.md 3.2), so no twin
can name ``credentials.json`` or any other file of the config dir. A twin
file is a regular file: a symlink at its path is never followed, and a
FIFO or device is never opened for reading, so no write can land outside
it and no read can block.

This module does not push local edits to the cloud or pull metadata;
``sync.TwinSync`` does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_core.config.files import NotRegularFile, read_regular, rewrite_in_place
from edge_core.model.twins import deep_merge, is_uuid, twin_document

log = logging.getLogger(__name__)

TWIN_FILE_MODE = 0o644


def twin_path(config_dir: Path, twin_uuid: str) -> Path | None:
    """The twin file of ``twin_uuid``, or None when the uuid is no UUID."""
    if not is_uuid(twin_uuid):
        return None
    return config_dir / f"{twin_uuid.lower()}.json"


def special_kind(path: Path) -> str | None:
    """What non-regular thing is at ``path`` (``symlink``, ``fifo``...), if any.

    None for a regular file of its own, a directory (a missing bind-mount
    source that Docker created) or nothing at all. A regular file with more
    than one name is a ``hard link``: writing it would write another file
    (credentials.json, say).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return "hard link to another file" if info.st_nlink > 1 else None
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def encode(document: Mapping[str, Any]) -> bytes:
    """The bytes written for a twin document: indent 2, trailing newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _existing(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_regular(path, follow=False).decode("utf-8-sig"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(
            "twin file %s is unreadable (%s); rewriting it from the cloud", path, exc
        )
        return None
    return data if isinstance(data, dict) else None


def write_twin_file(
    config_dir: Path, twin: Mapping[str, Any], asset: Mapping[str, Any]
) -> str:
    """Write or merge one twin file; returns the SHA-256 of what was written."""
    document = twin_document(twin, asset)
    path = twin_path(config_dir, str(twin["uuid"]))
    if path is None:
        raise ValueError(f"twin uuid {twin['uuid']!r} is not a UUID; it has no file")
    kind = special_kind(path)
    if kind is not None:
        raise NotRegularFile(path, kind)
    existing = None if path.is_dir() else _existing(path)
    if existing is not None:
        document = deep_merge(existing, document)
    data = encode(document)
    rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
    return sha256(data)


@dataclass(frozen=True)
class TwinFile:
    """One twin file as read: its bytes, their SHA-256 and the JSON object.

    ``document`` is None when the bytes are not a JSON object (damaged).
    """

    data: bytes
    digest: str
    document: dict[str, Any] | None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_twin_file(path: Path) -> TwinFile | None:
    """The file's content, or None when there is no file (or a directory).

    Raises ``NotRegularFile`` for a symlink, FIFO, socket or device (none
    is followed or read), ``OSError`` when the file cannot be read.
    """
    kind = special_kind(path)
    if kind is not None:
        raise NotRegularFile(path, kind)
    try:
        data = read_regular(path, follow=False)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return TwinFile(data=data, digest=sha256(data), document=parse_document(data))


def parse_document(data: bytes) -> dict[str, Any] | None:
    """The JSON object in ``data``, or None when it holds no JSON object.

    A UTF-8 byte order mark first is skipped (RFC 8259 lets a reader
    ignore it): some platforms' JSON writers put one, and a driver's edit
    must not be taken for damage because of it.
    """
    try:
        parsed = json.loads(data.decode("utf-8-sig"))
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def still_holds(path: Path, expected: bytes) -> bool:
    """True when ``path`` still holds ``expected`` (nobody wrote meanwhile).

    Checked right before a rewrite, so a driver's write that lands between
    the read and the rewrite is not overwritten.
    """
    try:
        return read_regular(path, follow=False) == expected
    except OSError:
        return False
