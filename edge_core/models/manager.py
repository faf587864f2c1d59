"""``ModelManager``: make each model the worker needs ready on local disk.

``ensure_model`` follows the resolution order of the product description,
one rung per step, cheapest first:

1. reconcile the disk: a flat file becomes a directory, the weight file
   is found and hashed (once; the hash is the cost of the call), and a
   file without a sidecar is registered as ``prestaged``;
2. judge integrity against the recorded checksum: a changed pre-staged
   file is re-stamped, a hand-written checksum that does not match refuses
   the file, a downloaded file that does not match is corrupt;
3. an intact pre-staged file is returned without any network call;
4. an intact downloaded file is returned unless a short catalog probe
   (5 s; any failure ignored) reports a different checksum;
5. otherwise the catalog is asked in earnest (30 s) and the sources are
   tried in order: the Cyberwave-hosted signed URL, then the upstream URL;
   the first file whose checksum verifies is installed atomically;
6. if every source failed, an intact cached file is returned with a
   warning; with nothing usable, ``ModelUnavailable`` names every failure.

Each model is worked on under its own file lock, so two processes never
download or install the same model at once; the manifest is updated under
the index lock. ``verify_all``, ``evict`` and ``list_models`` serve the
CLI. The manager never starts the worker and raises no alerts; it only
says what happened.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_core.config.files import fsync_directory
from edge_core.config.paths import Owner
from edge_core.errors import EdgeCoreError, NotFoundError
from edge_core.models.catalog import (
    Catalog,
    CatalogEntry,
    parse_catalog_entry,
    parse_signed_url,
)
from edge_core.models.disk import (
    clean_staging,
    locate_weight_file,
    remove_partials,
)
from edge_core.models.download import Downloader, Fetched, display_url
from edge_core.models.errors import (
    DownloadError,
    LockTimeout,
    ModelError,
    ModelRejected,
    ModelUnavailable,
)
from edge_core.models.files import CacheFiles
from edge_core.models.hashing import BUFFER_SIZE
from edge_core.models.index import CacheIndex
from edge_core.models.inventory import (
    CachedModel,
    Check,
    Verification,
    judge,
    list_models,
    model_ids,
)
from edge_core.models.layout import (
    FILE_MODE,
    LOCKS_DIR,
    check_model_id,
    infer_runtime,
)
from edge_core.models.lock import file_lock
from edge_core.models.manifest import ManifestEntry, entry_from_sidecar, utc_stamp
from edge_core.models.progress import ProgressCallback
from edge_core.models.reconcile import LocalModel, Reconciler
from edge_core.models.sidecar import (
    ARTIFACT_URL,
    DOWNLOAD_URL,
    Sidecar,
    read_sidecar,
    write_sidecar,
)
from edge_core.models.stamps import Stamp

_log = logging.getLogger(__name__)

SELF_DOWNLOADING_RUNTIMES = frozenset({"ultralytics"})


@dataclass(frozen=True)
class CacheOptions:
    """Timing of the cache (defaults: protocol.md 1.3); tests shorten them."""

    probe_timeout: float = 5.0
    catalog_timeout: float = 30.0
    weights_timeout: float = 30.0
    lock_timeout: float | None = 3600.0
    partial_max_age: float = 7 * 24 * 3600.0
    hash_buffer: int = BUFFER_SIZE
    progress_interval: float = 0.25


class Outcome(enum.Enum):
    """How ``ensure_model`` made a model ready."""

    PRESTAGED = "prestaged"
    """An intact operator-curated file; the catalog was not contacted."""
    CACHED = "cached"
    """An intact downloaded file the catalog agreed with (or could not judge)."""
    DOWNLOADED = "downloaded"
    """A fresh, verified download was installed."""
    FALLBACK = "fallback"
    """Every download failed; the intact cached file is used."""
    DEFERRED = "deferred"
    """No source exists and the runtime downloads its own weights."""


@dataclass(frozen=True)
class EnsureResult:
    """A ready model: where its file is and how it got there.

    ``path`` and ``entry`` are None only for ``Outcome.DEFERRED``.
    ``notes`` are the lines worth showing a person (e.g. why a fallback).
    """

    model_id: str
    outcome: Outcome
    path: Path | None
    entry: ManifestEntry | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Source:
    """One place to download from, and what the file must be called and hash to."""

    kind: str
    url: str
    filename: str
    expected: str | None


@dataclass
class _Attempts:
    """What went wrong on the way to a download, for the final message."""

    failures: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.failures.append(line)

    def summary(self) -> str:
        return "; ".join(self.failures) or "no source was tried"


class ModelManager:
    """The model cache in ``cache_dir`` (``{config}/models``).

    ``catalog`` and ``downloader`` may be None on an offline site: then
    only files already on disk can be made ready. ``owner`` receives every
    file and directory written (protocol.md 3.1) when the process runs as
    root.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        catalog: Catalog | None = None,
        downloader: Downloader | None = None,
        owner: Owner | None = None,
        options: CacheOptions | None = None,
    ) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self._catalog = catalog
        self._downloader = downloader
        self._options = options or CacheOptions()
        self._files = CacheFiles(owner)
        self._index = CacheIndex(
            self.cache_dir,
            lock_timeout=self._options.lock_timeout,
            hand_over=self._files.hand_over,
        )
        self._reconciler = Reconciler(
            self.cache_dir,
            files=self._files,
            index=self._index,
            partial_max_age=self._options.partial_max_age,
            hash_buffer=self._options.hash_buffer,
            progress_interval=self._options.progress_interval,
        )

    # -- public API ----------------------------------------------------------

    def ensure_model(
        self, model_id: str, *, on_progress: ProgressCallback | None = None
    ) -> EnsureResult:
        """Make ``model_id`` ready and say where its file is.

        Raises ``ModelRejected`` when the cache refuses the model as it is
        and ``ModelUnavailable`` when nothing usable exists; nothing else.
        """
        model_id = check_model_id(model_id)
        with self._errors(model_id), self._model_lock(model_id):
            return self._ensure_locked(model_id, on_progress)

    def ensure_models(
        self,
        model_ids: Iterable[str],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[EnsureResult | ModelError]:
        """``ensure_model`` for each id in turn; one failure never stops the rest."""
        results: list[EnsureResult | ModelError] = []
        for model_id in model_ids:
            try:
                results.append(self.ensure_model(model_id, on_progress=on_progress))
            except ModelError as exc:
                _log.warning("%s", exc)
                results.append(exc)
        return results

    def evict(self, model_id: str) -> bool:
        """Remove a model's directory and entries; True when anything was removed.

        This is how an operator forces a re-download of a pre-staged model.
        """
        model_id = check_model_id(model_id)
        target = self.cache_dir / model_id
        with self._errors(model_id), self._model_lock(model_id):
            removed = _remove_tree(target)
            self._index.sync({model_id: None}, {model_id: None})
        if removed:
            _log.info("model %s: evicted %s", model_id, target)
        return removed

    def list_models(self) -> list[CachedModel]:
        """What the cache holds, read-only and without hashing."""
        return list_models(self.cache_dir)

    def verify_all(
        self,
        *,
        on_progress: ProgressCallback | None = None,
        lock_timeout: float = 5.0,
    ) -> list[Verification]:
        """Re-hash every cached model and report each verdict.

        Nothing is repaired; stamps record the result for ``list_models``.
        A model busy in another process for ``lock_timeout`` seconds is
        reported as unchecked.
        """
        results = []
        for model_id in model_ids(self.cache_dir):
            try:
                with self._model_lock(model_id, timeout=lock_timeout):
                    results.append(self._verify(model_id, on_progress))
            except LockTimeout:
                results.append(
                    Verification(
                        model_id,
                        Check.UNCHECKED,
                        None,
                        "busy: another process is downloading or checking it",
                    )
                )
            except OSError as exc:
                detail = (
                    f"cannot check it: {exc.filename or self.cache_dir} "
                    f"({exc.strerror or exc}); {_file_system_fix(exc)}"
                )
                results.append(Verification(model_id, Check.UNUSABLE, None, detail))
        return results

    def close(self) -> None:
        """Close the downloader's connections."""
        if self._downloader is not None:
            self._downloader.close()

    # -- the resolution order ----------------------------------------------

    def _ensure_locked(
        self, model_id: str, on_progress: ProgressCallback | None
    ) -> EnsureResult:
        local = self._reconciler.reconcile(model_id, on_progress)

        if local.intact and local.prestaged:
            _log.debug("model %s: pre-staged file is intact; no catalog call", model_id)
            return self._result(model_id, Outcome.PRESTAGED, local)

        probed = self._probe(model_id) if local.intact else None
        if local.intact and not _catalog_differs(probed, local.sha256):
            _log.debug("model %s: cached file is intact and current", model_id)
            return self._result(model_id, Outcome.CACHED, local)

        if local.intact and probed is not None:
            _log.info(
                "model %s: the catalog has a new checksum (%s); downloading it",
                model_id,
                probed.checksum,
            )
        return self._refresh(model_id, local, probed, on_progress)

    def _refresh(
        self,
        model_id: str,
        local: LocalModel,
        known: CatalogEntry | None,
        on_progress: ProgressCallback | None,
    ) -> EnsureResult:
        attempts = _Attempts()
        entry = known or self._lookup(model_id, attempts)
        if entry is not None:
            result = self._download(model_id, local, entry, attempts, on_progress)
            if result is not None:
                return result

        if local.intact:
            note = (
                f"model {model_id}: no fresh copy could be fetched "
                f"({attempts.summary()}); using the intact cached file {local.path}"
            )
            _log.warning("%s", note)
            return self._result(model_id, Outcome.FALLBACK, local, note)

        state = "is corrupt" if local.path is not None else "is not in the cache"
        raise ModelUnavailable(
            f"model {model_id} {state} and could not be downloaded "
            f"({attempts.summary()}); connect the edge to the network or "
            f"pre-stage the file in {local.model_dir}/",
            model_id=model_id,
        )

    def _probe(self, model_id: str) -> CatalogEntry | None:
        """The catalog's view within the probe timeout; None on any failure."""
        if self._catalog is None:
            return None
        try:
            data = self._catalog.get_mlmodel(
                model_id, timeout=self._options.probe_timeout
            )
        except EdgeCoreError as exc:
            _log.debug("model %s: catalog probe skipped: %s", model_id, exc)
            return None
        return parse_catalog_entry(model_id, data)

    def _lookup(self, model_id: str, attempts: _Attempts) -> CatalogEntry | None:
        """The catalog entry within the strict timeout; failures are recorded."""
        if self._catalog is None:
            attempts.add("no catalog configured (offline)")
            return None
        try:
            data = self._catalog.get_mlmodel(
                model_id, timeout=self._options.catalog_timeout
            )
        except NotFoundError:
            attempts.add("the catalog does not know this model")
            return None
        except EdgeCoreError as exc:
            attempts.add(f"catalog lookup failed: {exc}")
            return None
        return parse_catalog_entry(model_id, data)

    def _sources(
        self, entry: CatalogEntry, attempts: _Attempts
    ) -> list[tuple[str, str]]:
        """(downloaded_from, url) pairs in priority order."""
        sources: list[tuple[str, str]] = []
        if entry.uuid is not None and self._catalog is not None:
            try:
                answer = self._catalog.get_mlmodel_weights(
                    entry.uuid, timeout=self._options.weights_timeout
                )
            except NotFoundError:
                _log.debug("model %s: no Cyberwave-hosted copy", entry.model_id)
            except EdgeCoreError as exc:
                attempts.add(f"weights lookup failed: {exc}")
            else:
                signed = parse_signed_url(answer)
                if signed is not None:
                    sources.append((ARTIFACT_URL, signed))
        if entry.upstream_url is not None:
            sources.append((DOWNLOAD_URL, entry.upstream_url))
        return sources

    def _download(
        self,
        model_id: str,
        local: LocalModel,
        entry: CatalogEntry,
        attempts: _Attempts,
        on_progress: ProgressCallback | None,
    ) -> EnsureResult | None:
        """Try each source; the installed result, or None when all failed."""
        sources = self._sources(entry, attempts)
        if not sources:
            if entry.runtime in SELF_DOWNLOADING_RUNTIMES and local.path is None:
                # TODO: run the runtime's own download in a subprocess
                # (runtime_managed) once a worker image provides it.
                note = (
                    f"model {model_id}: the catalog lists no download source; "
                    f"the {entry.runtime} runtime in the worker fetches it itself"
                )
                _log.info("%s", note)
                return EnsureResult(model_id, Outcome.DEFERRED, None, None, (note,))
            attempts.add("the catalog lists no download source")
            return None
        if self._downloader is None:
            attempts.add("downloads are disabled (offline)")
            return None

        # An operator's sidecar states the file name and the checksum a
        # download must have (7b item 28), ahead of the catalog.
        hand = local.hand_written
        expected = (hand.checksum_sha256 if hand else None) or entry.checksum
        filename = (hand.filename if hand else None) or entry.pick_filename(
            sources[0][1]
        )
        created = self._files.make_dir(local.model_dir)
        for source, url in sources:
            result = self._fetch_one(
                local,
                entry,
                _Source(source, url, filename, expected),
                attempts,
                on_progress,
            )
            if result is not None:
                return result
        clean_staging(local.model_dir, None, left_by_us=created)
        return None

    def _fetch_one(
        self,
        local: LocalModel,
        entry: CatalogEntry,
        source: _Source,
        attempts: _Attempts,
        on_progress: ProgressCallback | None,
    ) -> EnsureResult | None:
        """Download and install from one source; None (recorded) on failure."""
        assert self._downloader is not None
        model_id = entry.model_id
        where = display_url(source.url)
        _log.info("model %s: downloading %s from %s", model_id, source.filename, where)
        started = time.monotonic()
        try:
            fetched = self._downloader.fetch(
                source.url,
                directory=local.model_dir,
                expected_sha256=source.expected,
                model_id=model_id,
                source=source.kind,
                on_progress=on_progress,
            )
        except DownloadError as exc:
            _log.info("model %s: %s failed: %s", model_id, source.kind, exc)
            attempts.add(f"{source.kind}: {exc}")
            return None
        result = self._install(local, entry, fetched, source)
        resumed = (
            f", resumed at byte {fetched.resumed_from}" if fetched.resumed_from else ""
        )
        _log.info(
            "model %s: downloaded %s (%d bytes%s) in %.1f s",
            model_id,
            source.filename,
            fetched.size,
            resumed,
            time.monotonic() - started,
        )
        return result

    def _install(
        self, local: LocalModel, entry: CatalogEntry, fetched: Fetched, source: _Source
    ) -> EnsureResult:
        """Record a verified download, then move it into place.

        The sidecar goes first: a crash between the two leaves a sidecar
        whose checksum the file on disk does not match, which the next
        call treats as a damaged download and fetches again. The other
        order would leave a file without a sidecar, taken for pre-staged.
        """
        filename = source.filename
        final = local.model_dir / filename
        hand = local.hand_written
        runtime = (hand.runtime if hand else None) or entry.runtime
        sidecar = Sidecar(
            model_id=entry.model_id,
            filename=filename,
            runtime=runtime or infer_runtime(filename),
            checksum_sha256=fetched.sha256,
            size_bytes=fetched.size,
            downloaded_at=utc_stamp(),
            downloaded_from=source.kind,
            # A signed URL expires within minutes: never worth keeping.
            source_url=None if source.kind == ARTIFACT_URL else source.url,
            upstream_url=entry.upstream_url,
        )
        self._files.hand_over(write_sidecar(local.model_dir, sidecar))

        os.chmod(fetched.path, FILE_MODE)
        self._files.hand_over(fetched.path)
        os.replace(fetched.path, final)
        fsync_directory(local.model_dir)
        if local.path is not None and local.path != final:
            # The old download had another name; two weight files would
            # make the directory ambiguous.
            with contextlib.suppress(FileNotFoundError):
                local.path.unlink()
        remove_partials(local.model_dir)

        manifest_entry = entry_from_sidecar(
            final, sidecar, size=fetched.size, checksum=fetched.sha256
        )
        stamp = Stamp.of(final, sha256=fetched.sha256, ok=True, checked_at=utc_stamp())
        self._index.sync({entry.model_id: manifest_entry}, {entry.model_id: stamp})
        return EnsureResult(entry.model_id, Outcome.DOWNLOADED, final, manifest_entry)

    def _result(
        self, model_id: str, outcome: Outcome, local: LocalModel, *notes: str
    ) -> EnsureResult:
        return EnsureResult(model_id, outcome, local.path, local.entry, notes)

    # -- verification ------------------------------------------------------

    def _verify(
        self, model_id: str, on_progress: ProgressCallback | None
    ) -> Verification:
        model_dir = self.cache_dir / model_id
        if model_dir.is_file():
            return Verification(
                model_id,
                Check.UNREGISTERED,
                model_dir,
                "a flat file; the next ensure moves it into a directory",
            )
        if not model_dir.is_dir():
            return Verification(
                model_id, Check.MISSING, None, "in the manifest but not on disk"
            )
        try:
            sidecar = read_sidecar(model_dir, model_id=model_id)
        except ModelRejected as exc:
            return Verification(model_id, Check.UNUSABLE, None, str(exc))
        located = locate_weight_file(model_dir, sidecar)
        if located.problem is not None:
            return Verification(model_id, Check.UNUSABLE, None, located.problem)
        if located.path is None:
            return Verification(model_id, Check.MISSING, None, "no weight file")
        path = located.path
        try:
            sha256 = self._reconciler.hash(model_id, path, on_progress)
        except OSError as exc:
            detail = f"{path} cannot be read ({exc.strerror or exc})"
            return Verification(model_id, Check.UNUSABLE, path, detail)
        verdict = judge(
            model_id, path, sha256, sidecar, self._index.entries().get(model_id)
        )
        if verdict.check in (Check.OK, Check.CORRUPT):
            self._reconciler.stamp(model_id, path, sha256, ok=verdict.check is Check.OK)
        return verdict

    # -- files, locks and owners -----------------------------------------

    @contextlib.contextmanager
    def _errors(self, model_id: str) -> Iterator[None]:
        """Translate lock timeouts and file system failures into ModelUnavailable."""
        try:
            yield
        except LockTimeout as exc:
            raise ModelUnavailable(str(exc), model_id=model_id) from exc
        except OSError as exc:
            where = exc.filename or self.cache_dir
            raise ModelUnavailable(
                f"model {model_id}: the cache failed at {where} "
                f"({exc.strerror or exc}); {_file_system_fix(exc)}",
                model_id=model_id,
            ) from exc

    @contextlib.contextmanager
    def _model_lock(
        self, model_id: str, *, timeout: float | None = None
    ) -> Iterator[None]:
        self._files.make_dir(self.cache_dir)
        self._files.make_dir(self.cache_dir / LOCKS_DIR)
        with file_lock(
            self.cache_dir / LOCKS_DIR / f"{model_id}.lock",
            timeout=self._options.lock_timeout if timeout is None else timeout,
            what=f"model {model_id}",
            on_created=self._files.hand_over,
        ):
            yield


def _file_system_fix(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space on that device"
    if exc.errno == errno.EROFS:
        return "remount that file system read-write"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "fix its permissions or run the edge core as root"
    return "check free space and permissions"


def _catalog_differs(entry: CatalogEntry | None, sha256: str | None) -> bool:
    return entry is not None and entry.checksum is not None and entry.checksum != sha256


def _remove_tree(target: Path) -> bool:
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        shutil.rmtree(target)
    else:
        target.unlink()
    return True
