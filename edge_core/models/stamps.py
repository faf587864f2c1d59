"""When each weight file was last hashed, and what the hash said.

``models list`` shows whether each cached file was verified, but hashing
gigabytes to draw a table would make it useless. So every full hash
(``ensure_model``, ``models verify``) leaves a stamp in the hidden file
``{cache}/.verified.json``: the digest, whether it matched, and the file's
size, mtime and inode at that moment. A stamp whose file has changed since
is reported as stale, never as verified.

Stamps are advisory: a missing or broken stamp file only means "never
verified", and nothing skips a hash because of a stamp. This module does
not hash.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edge_core.config.files import atomic_write_json
from edge_core.models.layout import FILE_MODE, STAMPS_NAME


class Verified(enum.Enum):
    """What ``models list`` says about a file's integrity."""

    YES = "yes"
    CORRUPT = "corrupt"
    STALE = "changed since last check"
    NEVER = "never"


@dataclass(frozen=True)
class Stamp:
    """One full hash of one weight file.

    ``checked_at`` is when this verdict on this content was first reached.
    """

    sha256: str
    ok: bool
    size: int
    mtime_ns: int
    inode: int
    checked_at: str

    @classmethod
    def of(cls, path: Path, *, sha256: str, ok: bool, checked_at: str) -> Stamp:
        """A stamp for ``path`` as it is on disk now."""
        info = os.stat(path)
        return cls(sha256, ok, info.st_size, info.st_mtime_ns, info.st_ino, checked_at)

    def same_result(self, other: Stamp) -> bool:
        """Whether ``other`` found the same file in the same state."""
        return replace(other, checked_at=self.checked_at) == self

    def status(self, path: Path) -> Verified:
        """What this stamp says about ``path`` as it is on disk now."""
        try:
            info = os.stat(path)
        except OSError:
            return Verified.NEVER
        current = (info.st_size, info.st_mtime_ns, info.st_ino)
        if current != (self.size, self.mtime_ns, self.inode):
            return Verified.STALE
        return Verified.YES if self.ok else Verified.CORRUPT


def stamps_path(cache_dir: Path) -> Path:
    """Where the stamps live."""
    return cache_dir / STAMPS_NAME


def load_stamps(cache_dir: Path) -> dict[str, Stamp]:
    """Every readable stamp; a missing or broken file gives none."""
    try:
        document = json.loads(stamps_path(cache_dir).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    stamps = {}
    for model_id, raw in document.items():
        stamp = _parse(raw)
        if stamp is not None:
            stamps[model_id] = stamp
    return stamps


def _parse(raw: Any) -> Stamp | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return Stamp(
            sha256=str(raw["sha256"]),
            ok=bool(raw["ok"]),
            size=int(raw["size"]),
            mtime_ns=int(raw["mtime_ns"]),
            inode=int(raw["inode"]),
            checked_at=str(raw["checked_at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write_stamps(cache_dir: Path, stamps: Mapping[str, Stamp]) -> Path:
    """Replace the stamp file atomically."""
    path = stamps_path(cache_dir)
    document = {key: asdict(stamps[key]) for key in sorted(stamps)}
    atomic_write_json(path, document, mode=FILE_MODE)
    return path
