"""Downloading one weight file safely, resumably and observably.

A download lands in ``.dl_<key>.part`` next to its final place (``key``
names the URL without its query, so a re-signed URL for the same object
resumes the same file) and is hashed as it streams, so the file is read
from the network once and never again. What this module guarantees:

* the ``Authorization`` header goes only to URLs under the Cyberwave base
  URL, checked again at every redirect hop, never to a signed storage URL
  (protocol.md 1.2);
* 300 s timeout per network operation, redirects followed, 64 KiB reads
  (hashed on a helper thread while the next one arrives),
  3 attempts sleeping 2 s and then 4 s, 401 and 403 never retried
  (protocol.md 1.3), all configurable through ``DownloadOptions``;
* an interrupted download (cut connection, timeout, ``kill -9``) keeps its
  partial file, and the next attempt asks for the rest with an HTTP range
  request, guarded by ``If-Range`` when the server gave a validator
  (7b item 28). A partial is only resumed when either a validator or an
  expected checksum can catch a changed object;
* a full disk removes the partial file (the device is shared with Docker
  and the logs); a finished file whose checksum is wrong is removed.

It returns a finished, fsynced, verified partial file; installing it under
its final name is the manager's job. It never logs a URL's query string
(signed URLs carry their signature there).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from edge_core.config.files import atomic_write_json
from edge_core.models.errors import DownloadError
from edge_core.models.hashing import Hasher, feed
from edge_core.models.layout import (
    FILE_MODE,
    PARTIAL_PREFIX,
    PARTIAL_STATE_SUFFIX,
    PARTIAL_SUFFIX,
)
from edge_core.models.progress import Phase, ProgressCallback, Throttle

_log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_RETRIED = frozenset({401, 403})


@dataclass(frozen=True)
class DownloadOptions:
    """Timing and sizes of weight downloads (defaults: protocol.md 1.3)."""

    timeout: float = 300.0
    attempts: int = 3
    backoff: tuple[float, ...] = (2.0, 4.0)
    max_redirects: int = 10
    progress_interval: float = 0.25


@dataclass(frozen=True)
class Fetched:
    """A finished, verified download waiting in its partial file."""

    path: Path
    sha256: str
    size: int
    resumed_from: int


def display_url(url: str) -> str:
    """``url`` without query or fragment: safe to log."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def partial_paths(directory: Path, url: str) -> tuple[Path, Path]:
    """The partial file and its state file for ``url`` in ``directory``."""
    key = hashlib.sha256(display_url(url).encode("utf-8")).hexdigest()[:16]
    stem = f"{PARTIAL_PREFIX}{key}"
    return (
        directory / f"{stem}{PARTIAL_SUFFIX}",
        directory / f"{stem}{PARTIAL_STATE_SUFFIX}",
    )


class Downloader:
    """Fetches weight files over HTTP(S) with its own connection pool.

    ``token`` is called for each request that may carry the Authorization
    header (a None or empty answer sends none); ``base_url`` is the
    Cyberwave base URL that decides which requests may.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        token: Callable[[], str | None] | None = None,
        options: DownloadOptions | None = None,
        user_agent: str = "cyberwave-edge-core",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base = (base_url or "").strip().rstrip("/")
        self._token = token
        self._options = options or DownloadOptions()
        self._sleep = sleep
        self._http = httpx.Client(
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(self._options.timeout),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def sends_authorization(self, url: str) -> bool:
        """Whether a request to ``url`` carries the Authorization header."""
        if not self._base:
            return False
        return url == self._base or url.startswith((self._base + "/", self._base + "?"))

    def fetch(
        self,
        url: str,
        *,
        directory: Path,
        expected_sha256: str | None,
        model_id: str,
        source: str,
        on_progress: ProgressCallback | None = None,
    ) -> Fetched:
        """Download ``url`` into a verified partial file in ``directory``.

        Raises ``DownloadError`` once every allowed attempt failed; the
        error says whether trying the same URL later may help.
        """
        options = self._options
        target = _Partial(*partial_paths(directory, url))
        attempt = 1
        while True:
            try:
                return self._attempt(
                    url,
                    target,
                    expected_sha256=expected_sha256,
                    model_id=model_id,
                    source=source,
                    on_progress=on_progress,
                )
            except DownloadError as exc:
                if not exc.retryable or attempt >= options.attempts:
                    raise
                delay = options.backoff[min(attempt, len(options.backoff)) - 1]
                _log.info(
                    "model %s: download attempt %d of %d from %s failed (%s); "
                    "retrying in %g s",
                    model_id,
                    attempt,
                    options.attempts,
                    display_url(url),
                    exc,
                    delay,
                )
                self._sleep(delay)
            attempt += 1

    # -- one attempt -------------------------------------------------------

    def _attempt(
        self,
        url: str,
        target: _Partial,
        *,
        expected_sha256: str | None,
        model_id: str,
        source: str,
        on_progress: ProgressCallback | None,
    ) -> Fetched:
        offset, validator = target.resume_point(
            may_resume_blind=expected_sha256 is not None
        )
        with _translated(url), self._open(url, offset, validator) as response:
            try:
                start, total = _start_and_total(response, offset)
            except DownloadError:
                # The partial file cannot be continued: the next attempt
                # starts from the first byte.
                target.discard()
                raise
            if start is None:
                return self._finish_complete(target, total, expected_sha256, url)
            _check_space(target.path, total, start)
            target.prepare(start, validator=_validator(response), total=total)
            throttle = Throttle(
                on_progress,
                model_id=model_id,
                phase=Phase.DOWNLOAD,
                total=total,
                start=start,
                source=source,
                interval=self._options.progress_interval,
            )
            # iter_raw() hands over each socket read (httpcore reads 64 KiB)
            # without re-chunking, which would copy every byte once more.
            sha256, size = target.write_stream(response.iter_raw(), start, throttle)
        if total is not None and size != total:
            raise DownloadError(
                f"{display_url(url)} ended after {size} of {total} bytes; will resume",
                retryable=True,
            )
        return target.verified(sha256, size, start, expected_sha256, url)

    def _finish_complete(
        self, target: _Partial, total: int | None, expected: str | None, url: str
    ) -> Fetched:
        """The server says the partial already holds every byte."""
        sha256, size = target.hash_existing()
        if total is not None and size != total:
            target.discard()
            raise DownloadError(
                f"{display_url(url)}: the partial download does not match the "
                f"object's size; starting over",
                retryable=True,
            )
        return target.verified(sha256, size, size, expected, url)

    @contextlib.contextmanager
    def _open(
        self, url: str, offset: int, validator: str | None
    ) -> Iterator[httpx.Response]:
        """GET ``url`` (following redirects by hand) and yield the streamed answer."""
        current = url
        for _ in range(self._options.max_redirects + 1):
            request = self._http.build_request(
                "GET", current, headers=self._headers(current, offset, validator)
            )
            response = self._http.send(request, stream=True)
            if response.is_redirect and "Location" in response.headers:
                response.close()
                current = urljoin(current, response.headers["Location"])
                continue
            try:
                _raise_for_status(response, url)
                yield response
            finally:
                response.close()
            return
        raise DownloadError(
            f"{display_url(url)} redirected more than "
            f"{self._options.max_redirects} times",
            retryable=False,
        )

    def _headers(self, url: str, offset: int, validator: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        token = self._token() if self._token is not None else None
        if token and self.sends_authorization(url):
            headers["Authorization"] = f"Bearer {token}"
        return headers


class _Partial:
    """The ``.dl_*.part`` file of one URL and its small state file."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path = path
        self.state = state

    def resume_point(self, *, may_resume_blind: bool) -> tuple[int, str | None]:
        """(bytes to keep, validator for If-Range); (0, None) to start over."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0, None
        validator = self._saved_validator()
        if size == 0 or (validator is None and not may_resume_blind):
            return 0, None
        return size, validator

    def _saved_validator(self) -> str | None:
        try:
            document = json.loads(self.state.read_bytes())
        except (OSError, ValueError):
            return None
        value = document.get("validator") if isinstance(document, dict) else None
        return value if isinstance(value, str) and value else None

    def prepare(self, start: int, *, validator: str | None, total: int | None) -> None:
        """Keep the first ``start`` bytes of the partial file (creating it)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            try:
                os.ftruncate(fd, start)
            finally:
                os.close(fd)
            if start == 0:
                document = {"validator": validator, "total": total}
                atomic_write_json(self.state, document, mode=FILE_MODE)
        except OSError as exc:
            raise self._disk_error(exc) from exc

    def write_stream(
        self, chunks: Iterator[bytes], start: int, throttle: Throttle
    ) -> tuple[str, int]:
        """Append ``chunks`` after ``start`` bytes; return (sha256, size)."""
        hasher = hashlib.sha256()
        try:
            with open(self.path, "r+b", buffering=0) as handle:
                if start:
                    feed(hasher, handle.fileno(), limit=start)
                handle.seek(start)
                with _HashPipe(hasher) as pipe:
                    size = start
                    for chunk in chunks:
                        _write_all(handle.fileno(), chunk)
                        pipe.put(chunk)
                        size += len(chunk)
                        throttle.update(size)
                os.fsync(handle.fileno())
        except OSError as exc:
            raise self._disk_error(exc) from exc
        throttle.finish(size)
        return hasher.hexdigest(), size

    def hash_existing(self) -> tuple[str, int]:
        """(sha256, size) of the partial file as it is."""
        hasher = hashlib.sha256()
        with open(self.path, "rb", buffering=0) as handle:
            size = feed(hasher, handle.fileno())
        return hasher.hexdigest(), size

    def verified(
        self, sha256: str, size: int, start: int, expected: str | None, url: str
    ) -> Fetched:
        """The finished download, or ``DownloadError`` after removing a wrong one.

        A resumed file that does not verify may have been spliced from two
        versions or rotted on disk, so it is retried once from the first
        byte; a wrong file fetched whole is final.
        """
        if expected is not None and sha256 != expected and start > 0:
            self.discard()
            raise DownloadError(
                f"{display_url(url)}: the resumed file does not verify; "
                f"downloading it again from the start",
                retryable=True,
            )
        if expected is not None and sha256 != expected:
            self.discard()
            raise DownloadError(
                f"{display_url(url)} delivered a file whose SHA-256 is {sha256}, "
                f"not the catalog's {expected}; the file was deleted",
                retryable=False,
            )
        with contextlib.suppress(FileNotFoundError):
            self.state.unlink()
        return Fetched(self.path, sha256, size, start)

    def discard(self) -> None:
        """Remove the partial file and its state."""
        for path in (self.path, self.state):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _disk_error(self, exc: OSError) -> DownloadError:
        if exc.errno in _NO_SPACE:
            self.discard()
            return DownloadError(
                f"no space left on the device of {self.path.parent} while "
                f"downloading; the partial file was removed and the cached file "
                f"left as it was: free some space",
                retryable=False,
            )
        self.discard()
        return DownloadError(
            f"cannot write {self.path} ({exc.strerror or exc}); check the "
            f"permissions of {self.path.parent}",
            retryable=False,
        )


class _HashPipe:
    """Feeds chunks to a hasher on a helper thread while the caller goes on.

    hashlib releases the GIL while it hashes a large buffer, so the hash of
    one chunk runs while the next is read from the socket and written to
    disk. The queue is bounded, so a slow hash slows the download instead
    of filling memory. Leaving the block waits until every chunk is hashed.
    """

    def __init__(self, hasher: Hasher, *, depth: int = 64) -> None:
        self._hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="model-hash")

    def __enter__(self) -> _HashPipe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._thread.join()

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` for hashing (blocks while the queue is full)."""
        self._queue.put(chunk)

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            self._hasher.update(memoryview(chunk))


# -- answers ------------------------------------------------------------


@contextlib.contextmanager
def _translated(url: str) -> Iterator[None]:
    """Turn httpx transport failures into a retryable ``DownloadError``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise DownloadError(
            f"{display_url(url)} timed out ({type(exc).__name__})", retryable=True
        ) from exc
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise DownloadError(
            f"{display_url(url)} failed ({reason})", retryable=True
        ) from exc


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status in (200, 206, 416):
        return
    where = display_url(url)
    if status in _NOT_RETRIED:
        raise DownloadError(
            f"{where} refused the download with HTTP {status} (an expired "
            f"signature or missing access)",
            retryable=False,
            status=status,
        )
    raise DownloadError(
        f"{where} answered HTTP {status}", retryable=True, status=status
    )


def _start_and_total(
    response: httpx.Response, offset: int
) -> tuple[int | None, int | None]:
    """Where to write from (None: the partial is complete) and the full size."""
    status = response.status_code
    content_range = _CONTENT_RANGE.fullmatch(
        response.headers.get("Content-Range", "").strip()
    )
    if status == 416:
        total = _total_from_range(content_range)
        if offset > 0 and total == offset:
            return None, total
        raise DownloadError(
            "the server refused the range of the partial download; starting over",
            retryable=True,
        )
    if status == 206:
        if content_range is None or content_range.group(1) is None:
            raise DownloadError(
                "the server answered a range request without a usable "
                "Content-Range; starting over",
                retryable=True,
            )
        if int(content_range.group(1)) != offset:
            raise DownloadError(
                "the server resumed at the wrong offset; will retry", retryable=True
            )
        return offset, _total_from_range(content_range)
    if offset:
        _log.debug("the server sent the whole file instead of a range; starting over")
    length = response.headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() else None


def _total_from_range(match: re.Match[str] | None) -> int | None:
    if match is None or match.group(3) == "*":
        return None
    return int(match.group(3))


def _validator(response: httpx.Response) -> str | None:
    etag = str(response.headers.get("ETag", "")).strip()
    if etag and not etag.startswith("W/"):
        return etag
    modified = str(response.headers.get("Last-Modified", "")).strip()
    return modified or None


def _check_space(path: Path, total: int | None, start: int) -> None:
    if total is None:
        return
    free = shutil.disk_usage(path.parent).free
    needed = total - start
    if free < needed:
        raise DownloadError(
            f"{path.parent} has {free} bytes free but the download needs "
            f"{needed} more; free some space",
            retryable=False,
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
