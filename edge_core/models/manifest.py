"""``manifest.json``: the index of the model cache (protocol.md 3.10).

The worker and ``worker status`` read the manifest to learn which weights
exist; the cache itself treats it as derived data. Each entry is checked
on load (types, a ``local_path`` that really is this model's file inside
this cache) and against the model's sidecar; an entry that fails is
rebuilt from the sidecar and the file on disk, and a manifest that is not
a JSON object at all is rebuilt the same way. So a corrupt or hand-edited
manifest can cost a re-hash, never a wrong file.

Writes are atomic (temp file, fsync, rename). Callers serialise
read-modify-write cycles with the cache's index lock. This module does not
hash files.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_core.config.files import atomic_write_json
from edge_core.models.layout import (
    FILE_MODE,
    MANIFEST_NAME,
    infer_runtime,
    is_safe_filename,
    is_valid_model_id,
)
from edge_core.models.sidecar import (
    ARTIFACT_URL,
    DOWNLOAD_URL,
    PRESTAGED,
    RUNTIME_MANAGED,
    Sidecar,
    normalize_checksum,
)

_log = logging.getLogger(__name__)

SOURCES = frozenset({ARTIFACT_URL, DOWNLOAD_URL, PRESTAGED, RUNTIME_MANAGED})


@dataclass(frozen=True)
class ManifestEntry:
    """One model in ``manifest.json``, field for field."""

    model_id: str
    local_path: str
    size_bytes: int
    downloaded_at: str
    source_url: str | None
    checksum_sha256: str | None
    runtime: str | None
    downloaded_from: str | None

    @property
    def filename(self) -> str:
        """The weight file's name."""
        return Path(self.local_path).name

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored under the model id."""
        return asdict(self)


@dataclass(frozen=True)
class ManifestRead:
    """The usable entries of a manifest and what was wrong with the rest."""

    entries: dict[str, ManifestEntry]
    problems: tuple[str, ...] = ()


def manifest_path(cache_dir: Path) -> Path:
    """Where ``manifest.json`` lives."""
    return cache_dir / MANIFEST_NAME


def utc_stamp(seconds: float | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for ``seconds`` since the epoch (default: now)."""
    moment = time.time() if seconds is None else seconds
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def load_manifest(cache_dir: Path) -> ManifestRead:
    """Read the manifest, keeping only entries that pass the checks.

    Never raises for bad content: a missing file is an empty manifest, and
    every dropped entry is one line in ``problems``.
    """
    path = manifest_path(cache_dir)
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return ManifestRead({})
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ManifestRead({}, (f"{path} is unreadable ({exc}); rebuilding it",))
    if not isinstance(document, dict):
        return ManifestRead({}, (f"{path} is not a JSON object; rebuilding it",))

    entries: dict[str, ManifestEntry] = {}
    problems: list[str] = []
    for model_id, raw in document.items():
        entry = parse_entry(cache_dir, model_id, raw)
        if entry is None:
            problems.append(f"{path}: entry {model_id!r} is malformed; rebuilding it")
            continue
        entries[model_id] = entry
    return ManifestRead(entries, tuple(problems))


def parse_entry(cache_dir: Path, model_id: str, raw: object) -> ManifestEntry | None:
    """The entry for ``model_id`` when ``raw`` is well formed, else None.

    Well formed means: the 3.10 fields with their types, a ``model_id``
    equal to the key, and a ``local_path`` naming a plain file directly in
    ``{cache_dir}/{model_id}/``.
    """
    if not is_valid_model_id(model_id):
        return None
    if not isinstance(raw, Mapping) or raw.get("model_id") != model_id:
        return None
    local_path = raw.get("local_path")
    if not isinstance(local_path, str):
        return None
    path = Path(local_path)
    if path.parent != cache_dir / model_id or not is_safe_filename(path.name):
        return None
    size = raw.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return None
    source = raw.get("downloaded_from")
    if source is not None and source not in SOURCES:
        return None
    checksum = raw.get("checksum_sha256")
    if checksum is not None and normalize_checksum(checksum) != checksum:
        return None
    texts = (raw.get("downloaded_at"), raw.get("source_url"), raw.get("runtime"))
    if not isinstance(texts[0], str) or not all(
        value is None or isinstance(value, str) for value in texts[1:]
    ):
        return None
    return ManifestEntry(
        model_id=model_id,
        local_path=local_path,
        size_bytes=size,
        downloaded_at=texts[0],
        source_url=texts[1],
        checksum_sha256=checksum,
        runtime=texts[2],
        downloaded_from=source,
    )


def agrees_with_sidecar(entry: ManifestEntry, sidecar: Sidecar | None) -> bool:
    """Whether ``entry`` tells the same story as the model's sidecar.

    A hand-written sidecar without a checksum leaves the entry's checksum
    (the last one computed) unchecked.
    """
    if sidecar is None:
        return False
    if sidecar.filename is not None and sidecar.filename != entry.filename:
        return False
    source = PRESTAGED if sidecar.hand_written else sidecar.downloaded_from
    if entry.downloaded_from != source:
        return False
    if sidecar.checksum_sha256 is None:
        return sidecar.hand_written
    return entry.checksum_sha256 == sidecar.checksum_sha256


def entry_from_sidecar(
    file_path: Path, sidecar: Sidecar, *, size: int, checksum: str | None
) -> ManifestEntry:
    """The manifest entry describing ``file_path`` as its sidecar records it.

    A sidecar without a runtime gets the one implied by the file extension.
    """
    return ManifestEntry(
        model_id=file_path.parent.name,
        local_path=str(file_path),
        size_bytes=size,
        downloaded_at=sidecar.downloaded_at or utc_stamp(),
        source_url=None if sidecar.prestaged else sidecar.source_url,
        checksum_sha256=checksum,
        runtime=sidecar.runtime or infer_runtime(file_path.name),
        downloaded_from=PRESTAGED if sidecar.hand_written else sidecar.downloaded_from,
    )


def write_manifest(cache_dir: Path, entries: Mapping[str, ManifestEntry]) -> Path:
    """Replace the manifest atomically with ``entries`` (sorted by model id)."""
    path = manifest_path(cache_dir)
    document = {key: entries[key].to_json() for key in sorted(entries)}
    atomic_write_json(path, document, mode=FILE_MODE)
    _log.debug("wrote %s with %d entries", path, len(document))
    return path
