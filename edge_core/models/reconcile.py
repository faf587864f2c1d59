"""Steps 1 and 2 of the resolution order: what is on disk, and can it be used.

For one model directory the ``Reconciler`` turns a flat file into a
directory, tidies what failed downloads left, finds the weight file,
hashes it once and judges it against the recorded checksum:

* no sidecar (or a stale generated one): a pre-staged file, registered
  with a generated ``prestaged`` sidecar;
* a hand-written sidecar: its checksum is the expected value (7b item
  28); a mismatch refuses the file;
* a generated ``prestaged`` sidecar: a changed file is re-stamped, never
  downloaded over;
* a downloaded file: a mismatch is corruption, for the manager to
  download again.

The manifest entry and stamp of every intact file are brought up to date.
It never contacts the network; the manager decides what happens next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from edge_core.models.disk import (
    clean_staging,
    describes,
    locate_weight_file,
    normalize_flat_file,
    remove_stale_partials,
)
from edge_core.models.errors import ModelRejected
from edge_core.models.files import CacheFiles
from edge_core.models.hashing import BUFFER_SIZE, sha256_file
from edge_core.models.index import CacheIndex
from edge_core.models.layout import infer_runtime, linked_files
from edge_core.models.manifest import ManifestEntry, entry_from_sidecar, utc_stamp
from edge_core.models.progress import Phase, ProgressCallback, Throttle
from edge_core.models.sidecar import PRESTAGED, Sidecar, read_sidecar, write_sidecar
from edge_core.models.stamps import Stamp

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModel:
    """One model directory after reconciling it with the disk.

    ``intact`` means the file matches its recorded checksum (or had none to
    match); ``prestaged`` that it is operator-curated.
    """

    model_dir: Path
    path: Path | None = None
    sidecar: Sidecar | None = None
    sha256: str | None = None
    intact: bool = False
    prestaged: bool = False
    entry: ManifestEntry | None = None

    @property
    def hand_written(self) -> Sidecar | None:
        """The operator's sidecar, whose fields a download must honour."""
        if self.sidecar is not None and self.sidecar.hand_written:
            return self.sidecar
        return None


class Reconciler:
    """Looks at, hashes and records the model directories of one cache."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        files: CacheFiles,
        index: CacheIndex,
        partial_max_age: float,
        hash_buffer: int = BUFFER_SIZE,
        progress_interval: float = 0.25,
    ) -> None:
        self._cache_dir = cache_dir
        self._files = files
        self._index = index
        self._partial_max_age = partial_max_age
        self._hash_buffer = hash_buffer
        self._progress_interval = progress_interval

    def reconcile(
        self, model_id: str, on_progress: ProgressCallback | None
    ) -> LocalModel:
        """Find, hash and judge the file of ``model_id`` on disk."""
        model_dir = self._cache_dir / model_id
        normalize_flat_file(self._cache_dir, model_id, make_dir=self._files.make_dir)
        if model_dir.is_symlink():
            raise ModelRejected(
                f"model {model_id}: {model_dir} is a symbolic link, which the "
                f"worker cannot follow out of its read-only mount; copy the "
                f"files into the cache instead",
                model_id=model_id,
            )
        if not model_dir.is_dir():
            self._index.sync({model_id: None})
            return LocalModel(model_dir)

        stale = remove_stale_partials(model_dir, max_age=self._partial_max_age)
        sidecar = read_sidecar(model_dir, model_id=model_id)
        located = locate_weight_file(model_dir, sidecar)
        if located.problem is not None:
            raise ModelRejected(located.problem, model_id=model_id)
        if located.path is None:
            _refuse_links(model_id, model_dir)
            clean_staging(model_dir, sidecar, left_by_us=bool(stale))
            self._index.sync({model_id: None})
            return LocalModel(model_dir, sidecar=sidecar)

        _refuse_empty(model_id, located.path, sidecar)
        try:
            sha256 = self.hash(model_id, located.path, on_progress)
        except OSError as exc:
            return self._unreadable(model_id, located.path, sidecar, exc)
        return self._judge(model_id, located.path, sidecar, sha256)

    def _judge(
        self, model_id: str, path: Path, sidecar: Sidecar | None, sha256: str
    ) -> LocalModel:
        """Decide what the hashed file at ``path`` is."""
        if sidecar is None or not describes(sidecar, path):
            return self._register_prestaged(model_id, path, sha256)

        if sidecar.hand_written:
            return self._honour_hand_written(model_id, path, sidecar, sha256)

        if sidecar.downloaded_from == PRESTAGED or sidecar.checksum_sha256 is None:
            if sidecar.checksum_sha256 != sha256:
                return self._restamp(model_id, path, sidecar, sha256)
            return self._record(path, sidecar, sha256, prestaged=sidecar.prestaged)

        if sidecar.checksum_sha256 == sha256:
            return self._record(path, sidecar, sha256, prestaged=False)

        _log.warning(
            "model %s: %s does not match its recorded SHA-256 (expected %s, found "
            "%s); the file is corrupt and will be downloaded again",
            model_id,
            path,
            sidecar.checksum_sha256,
            sha256,
        )
        self.stamp(model_id, path, sha256, ok=False)
        return LocalModel(path.parent, path, sidecar, sha256, intact=False)

    def _register_prestaged(self, model_id: str, path: Path, sha256: str) -> LocalModel:
        size = path.stat().st_size
        sidecar = Sidecar(
            model_id=model_id,
            filename=path.name,
            runtime=infer_runtime(path.name),
            checksum_sha256=sha256,
            size_bytes=size,
            downloaded_at=utc_stamp(),
            downloaded_from=PRESTAGED,
        )
        self._files.hand_over(write_sidecar(path.parent, sidecar))
        _log.info(
            "model %s: registered the pre-staged file %s (SHA-256 %s)",
            model_id,
            path,
            sha256,
        )
        return self._record(path, sidecar, sha256, prestaged=True)

    def _honour_hand_written(
        self, model_id: str, path: Path, sidecar: Sidecar, sha256: str
    ) -> LocalModel:
        expected = sidecar.checksum_sha256
        if expected is not None and expected != sha256:
            self.stamp(model_id, path, sha256, ok=False)
            raise ModelRejected(
                f"model {model_id}: {path} does not match the checksum written in "
                f"{path.parent / 'metadata.json'} (expected {expected}, found "
                f"{sha256}); it is not handed out: copy a good file, correct the "
                f"checksum, or evict the model to download it from the catalog",
                model_id=model_id,
            )
        return self._record(path, sidecar, sha256, prestaged=True)

    def _restamp(
        self, model_id: str, path: Path, sidecar: Sidecar, sha256: str
    ) -> LocalModel:
        size = path.stat().st_size
        fresh = replace(
            sidecar,
            filename=path.name,
            checksum_sha256=sha256,
            size_bytes=size,
            downloaded_at=utc_stamp(),
        )
        self._files.hand_over(write_sidecar(path.parent, fresh))
        _log.info(
            "model %s: %s changed in place; re-stamped with SHA-256 %s",
            model_id,
            path,
            sha256,
        )
        return self._record(path, fresh, sha256, prestaged=fresh.prestaged)

    def _record(
        self, path: Path, sidecar: Sidecar, sha256: str, *, prestaged: bool
    ) -> LocalModel:
        """Write the manifest entry and stamp of an intact file."""
        model_id = path.parent.name
        current = self._index.entries().get(model_id)
        entry = entry_from_sidecar(
            path, sidecar, size=path.stat().st_size, checksum=sha256
        )
        # A hand-written sidecar that states no time keeps the time the file
        # was first registered.
        same_file = current is not None and current.local_path == entry.local_path
        if same_file and current is not None and sidecar.downloaded_at is None:
            entry = replace(entry, downloaded_at=current.downloaded_at)
        stamp = Stamp.of(path, sha256=sha256, ok=True, checked_at=utc_stamp())
        manifest = self._index.sync({model_id: entry}, {model_id: stamp})
        return LocalModel(
            path.parent,
            path,
            sidecar,
            sha256,
            intact=True,
            prestaged=prestaged,
            entry=manifest.get(model_id, entry),
        )

    def _unreadable(
        self, model_id: str, path: Path, sidecar: Sidecar | None, exc: OSError
    ) -> LocalModel:
        reason = exc.strerror or str(exc)
        if sidecar is None or sidecar.prestaged:
            raise ModelRejected(
                f"model {model_id}: {path} cannot be read ({reason}); copy the "
                f"file again or evict the model",
                model_id=model_id,
            )
        _log.warning(
            "model %s: %s cannot be read (%s); downloading it again",
            model_id,
            path,
            reason,
        )
        return LocalModel(path.parent, path, sidecar, intact=False)

    def hash(
        self, model_id: str, path: Path, on_progress: ProgressCallback | None
    ) -> str:
        throttle = Throttle(
            on_progress,
            model_id=model_id,
            phase=Phase.VERIFY,
            total=path.stat().st_size,
            interval=self._progress_interval,
        )
        digest = sha256_file(
            path, buffer_size=self._hash_buffer, on_bytes=throttle.update
        )
        throttle.finish(digest.size)
        return digest.sha256

    def stamp(self, model_id: str, path: Path, sha256: str, *, ok: bool) -> None:
        stamp = Stamp.of(path, sha256=sha256, ok=ok, checked_at=utc_stamp())
        self._index.sync(stamps={model_id: stamp})


def _refuse_links(model_id: str, model_dir: Path) -> None:
    """Refuse a model whose only weight file is a symbolic link.

    Downloading over the link would destroy what the operator placed, and
    handing it out would give the worker a path it cannot open.
    """
    links = linked_files(model_dir)
    if not links:
        return
    raise ModelRejected(
        f"model {model_id}: {links[0]} is a symbolic link, which the worker "
        f"cannot follow out of its read-only mount; copy the file itself into "
        f"{model_dir}/ in its place",
        model_id=model_id,
    )


def _refuse_empty(model_id: str, path: Path, sidecar: Sidecar | None) -> None:
    """Refuse an empty operator-placed file: a copy that has only just begun.

    An empty file the edge core downloaded is plain corruption and is
    downloaded again by the usual checksum rule.
    """
    downloaded = describes(sidecar, path) and not (sidecar and sidecar.prestaged)
    if downloaded or path.stat().st_size > 0:
        return
    raise ModelRejected(
        f"model {model_id}: {path} is empty (0 bytes), so it is not handed out; "
        f"if it is still being copied, copy it as {path.name}.tmp and rename it "
        f"when the copy is done, or copy it again",
        model_id=model_id,
    )
