"""Keeping ``manifest.json`` and the verification stamps in step with the disk.

Every change to the cache ends with one ``CacheIndex.sync``: under the
index lock it reads the manifest, keeps each entry only if it agrees with
its model's sidecar and file (rebuilding it from them otherwise, so a
hand-edited or corrupt manifest is never trusted blindly), applies the
caller's fresh entries and stamps, and rewrites the files atomically when
anything changed. Reading N small sidecars per sync is cheap next to
hashing one weight file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from edge_core.models.disk import locate_weight_file
from edge_core.models.errors import ModelRejected
from edge_core.models.layout import LOCKS_DIR, model_dirs
from edge_core.models.lock import file_lock
from edge_core.models.manifest import (
    ManifestEntry,
    agrees_with_sidecar,
    entry_from_sidecar,
    load_manifest,
    write_manifest,
)
from edge_core.models.sidecar import read_sidecar
from edge_core.models.stamps import Stamp, load_stamps, write_stamps

_log = logging.getLogger(__name__)

INDEX_LOCK = "index.lock"


class CacheIndex:
    """The manifest and stamps of one cache directory."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        lock_timeout: float | None,
        hand_over: Callable[[Path], None],
    ) -> None:
        self._cache_dir = cache_dir
        self._lock_timeout = lock_timeout
        self._hand_over = hand_over

    def sync(
        self,
        entries: Mapping[str, ManifestEntry | None] | None = None,
        stamps: Mapping[str, Stamp | None] | None = None,
    ) -> dict[str, ManifestEntry]:
        """Rebuild the manifest around ``entries`` and store ``stamps``.

        A None value removes that model's entry or stamp. Returns the
        manifest as written (or as it already was).
        """
        updates = dict(entries or {})
        with file_lock(
            self._cache_dir / LOCKS_DIR / INDEX_LOCK,
            timeout=self._lock_timeout,
            what=f"the model cache index in {self._cache_dir}",
            on_created=self._hand_over,
        ):
            manifest = self._sync_manifest(updates)
            if stamps:
                self._sync_stamps(stamps)
        return manifest

    def _sync_manifest(
        self, updates: Mapping[str, ManifestEntry | None]
    ) -> dict[str, ManifestEntry]:
        read = load_manifest(self._cache_dir)
        for problem in read.problems:
            _log.warning("%s", problem)
        rebuilt: dict[str, ManifestEntry] = {}
        for model_id in sorted(set(model_dirs(self._cache_dir)) | set(read.entries)):
            if model_id in updates:
                continue
            entry = self._trusted(model_id, read.entries.get(model_id))
            if entry is not None:
                rebuilt[model_id] = entry
        for model_id, entry in updates.items():
            if entry is not None:
                rebuilt[model_id] = entry
        if rebuilt != read.entries or read.problems:
            self._hand_over(write_manifest(self._cache_dir, rebuilt))
        return rebuilt

    def _trusted(
        self, model_id: str, existing: ManifestEntry | None
    ) -> ManifestEntry | None:
        """``existing`` if the disk backs it up, else an entry rebuilt from disk."""
        model_dir = self._cache_dir / model_id
        try:
            sidecar = read_sidecar(model_dir, model_id=model_id)
        except ModelRejected:
            return None
        if sidecar is None:
            return None
        path = locate_weight_file(model_dir, sidecar).path
        if path is None:
            return None
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        same_file = (
            existing is not None
            and existing.local_path == str(path)
            and existing.size_bytes == size
        )
        if (
            same_file
            and existing is not None
            and agrees_with_sidecar(existing, sidecar)
        ):
            return existing
        checksum = sidecar.checksum_sha256
        if checksum is None and same_file and existing is not None:
            checksum = existing.checksum_sha256
        _log.info("model %s: manifest entry rebuilt from %s", model_id, model_dir)
        return entry_from_sidecar(path, sidecar, size=size, checksum=checksum)

    def _sync_stamps(self, changes: Mapping[str, Stamp | None]) -> None:
        current = load_stamps(self._cache_dir)
        updated = dict(current)
        for model_id, stamp in changes.items():
            old = current.get(model_id)
            if stamp is None:
                updated.pop(model_id, None)
            elif old is None or not old.same_result(stamp):
                # A repeat of the same verdict keeps its first time: the warm
                # path then writes nothing at all.
                updated[model_id] = stamp
        if updated != current:
            self._hand_over(write_stamps(self._cache_dir, updated))

    def entries(self) -> dict[str, ManifestEntry]:
        """The manifest's well-formed entries, as on disk (no lock, no rebuild)."""
        return load_manifest(self._cache_dir).entries

    def stamps(self) -> dict[str, Stamp]:
        """The stored verification stamps (no lock)."""
        return load_stamps(self._cache_dir)
