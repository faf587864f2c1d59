"""What the cache holds, for people: ``models list`` and ``models verify``.

``list_models`` reads the disk, the sidecars, the manifest and the stamps
and never writes or hashes, so it is instant and safe to run beside a
running edge core. ``judge`` is the pure rule ``models verify`` applies to
a freshly computed hash: it reports and never repairs (the next
``ensure_model`` re-stamps, re-downloads or refuses).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from edge_core.models.disk import describes, locate_weight_file, partial_bytes
from edge_core.models.errors import ModelRejected
from edge_core.models.layout import model_dirs
from edge_core.models.manifest import ManifestEntry, load_manifest
from edge_core.models.sidecar import PRESTAGED, Sidecar, read_sidecar
from edge_core.models.stamps import Verified, load_stamps


@dataclass(frozen=True)
class CachedModel:
    """One row of ``models list``.

    ``source`` is the sidecar's ``downloaded_from`` (``prestaged`` for a
    hand-written sidecar, ``unregistered`` for a file the edge core has not
    seen yet); ``problem`` says what keeps the model from being used.
    """

    model_id: str
    path: Path | None
    size_bytes: int | None
    runtime: str | None
    source: str
    checksum_sha256: str | None
    verified: Verified
    problem: str | None = None


class Check(enum.Enum):
    """The verdict of ``models verify`` on one model."""

    OK = "ok"
    CORRUPT = "corrupt"
    CHANGED = "changed"
    UNREGISTERED = "unregistered"
    UNCHECKED = "unchecked"
    MISSING = "missing"
    UNUSABLE = "unusable"


@dataclass(frozen=True)
class Verification:
    """One model's verdict, with the detail a person needs."""

    model_id: str
    check: Check
    path: Path | None
    detail: str
    sha256: str | None = None

    @property
    def failed(self) -> bool:
        """True for verdicts that keep the model from being handed out."""
        return self.check in (Check.CORRUPT, Check.MISSING, Check.UNUSABLE)


def model_ids(cache_dir: Path) -> list[str]:
    """Every model the cache knows: its directories and its manifest entries."""
    known = set(model_dirs(cache_dir)) | set(load_manifest(cache_dir).entries)
    return sorted(known)


def list_models(cache_dir: Path) -> list[CachedModel]:
    """One row per model in the cache, read-only and without hashing."""
    entries = load_manifest(cache_dir).entries
    stamps = load_stamps(cache_dir)
    rows = []
    for model_id in model_ids(cache_dir):
        row = _row(cache_dir, model_id, entries.get(model_id))
        stamp = stamps.get(model_id)
        if stamp is not None and row.path is not None:
            row = _with_verified(row, stamp.status(row.path))
        rows.append(row)
    return rows


def _row(cache_dir: Path, model_id: str, entry: ManifestEntry | None) -> CachedModel:
    model_dir = cache_dir / model_id
    if model_dir.is_file():
        return _problem_row(
            model_id, "a flat file; it becomes a directory on the next ensure"
        )
    if not model_dir.is_dir():
        return _problem_row(model_id, "in the manifest but not on disk")
    try:
        sidecar = read_sidecar(model_dir, model_id=model_id)
    except ModelRejected as exc:
        return _problem_row(model_id, str(exc))
    located = locate_weight_file(model_dir, sidecar)
    if located.problem is not None:
        return _problem_row(model_id, located.problem)
    if located.path is None:
        pending = partial_bytes(model_dir)
        detail = (
            f"no weight file; an unfinished download holds {pending} bytes"
            if pending
            else "no weight file"
        )
        return _problem_row(model_id, detail)
    return _file_row(model_id, located.path, sidecar, entry)


def _file_row(
    model_id: str, path: Path, sidecar: Sidecar | None, entry: ManifestEntry | None
) -> CachedModel:
    size = path.stat().st_size
    if sidecar is None or not describes(sidecar, path):
        return CachedModel(
            model_id, path, size, None, "unregistered", None, Verified.NEVER
        )
    source = PRESTAGED if sidecar.hand_written else str(sidecar.downloaded_from)
    checksum = sidecar.checksum_sha256
    if checksum is None and entry is not None and entry.local_path == str(path):
        checksum = entry.checksum_sha256
    runtime = sidecar.runtime or (entry.runtime if entry is not None else None)
    return CachedModel(model_id, path, size, runtime, source, checksum, Verified.NEVER)


def _problem_row(model_id: str, problem: str) -> CachedModel:
    return CachedModel(
        model_id, None, None, None, "-", None, Verified.NEVER, problem=problem
    )


def _with_verified(row: CachedModel, verified: Verified) -> CachedModel:
    return CachedModel(
        row.model_id,
        row.path,
        row.size_bytes,
        row.runtime,
        row.source,
        row.checksum_sha256,
        verified,
        row.problem,
    )


def judge(
    model_id: str,
    path: Path,
    sha256: str,
    sidecar: Sidecar | None,
    entry: ManifestEntry | None,
) -> Verification:
    """The verdict on a file whose hash was just computed."""
    if not describes(sidecar, path):
        sidecar = None
    recorded = sidecar.checksum_sha256 if sidecar is not None else None
    if recorded is None and entry is not None and entry.local_path == str(path):
        recorded = entry.checksum_sha256

    if sidecar is None and recorded is None:
        return Verification(
            model_id,
            Check.UNREGISTERED,
            path,
            "pre-staged file not registered yet; the next ensure registers it",
            sha256,
        )
    if recorded is None:
        return Verification(
            model_id, Check.UNCHECKED, path, "no checksum recorded", sha256
        )
    if recorded == sha256:
        return Verification(model_id, Check.OK, path, "checksum matches", sha256)
    if sidecar is not None and sidecar.downloaded_from == PRESTAGED:
        return Verification(
            model_id,
            Check.CHANGED,
            path,
            "pre-staged file changed in place; the next ensure re-stamps it",
            sha256,
        )
    if sidecar is not None and sidecar.hand_written:
        where = "hand-written in metadata.json"
        fix = (
            f"copy a good file or correct the checksum, or run "
            f"'cyberwave-edge-core models evict {model_id}' to download it again"
        )
    else:
        where = "recorded at download"
        fix = f"'cyberwave-edge-core models ensure {model_id}' downloads it again"
    return Verification(
        model_id,
        Check.CORRUPT,
        path,
        f"SHA-256 {sha256} does not match the one {where} ({recorded}); {fix}",
        sha256,
    )
