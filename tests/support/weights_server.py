"""A real HTTP server on loopback that serves weight files and misbehaves on cue.

The model cache downloads from signed storage URLs and upstream mirrors;
tests need those to fail the ways real ones do, over a real socket:
range requests (honoured or ignored), ``If-Range`` validators, redirects,
slow links, connections cut in the middle of a body, chunked bodies
without a length, hangs, and any status (401, 403, 404, 500...). Every
request is recorded with its headers, so a test can check that a signed
URL never saw the Authorization header or that a resume asked for the
right range.

Large files are served from disk with ``sendfile`` when no misbehaviour
needs the bytes to pass through Python, so the benchmark can compare
against ``curl`` fairly. It must never listen beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulator.httpserver import TrackingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_CHUNK = 64 * 1024


@dataclass
class Blob:
    """One served path: its content and how to misbehave when asked for it.

    ``status`` (for ``status_times`` requests, None: always) replaces the
    answer; ``redirect_to`` answers 302 to that path or URL; ``cut_after``
    closes the connection after that many body bytes (for ``cut_times``
    responses); ``rate`` throttles to bytes per second; ``ranges=False``
    ignores Range headers; ``chunked`` sends no Content-Length; ``hang``
    never answers until the server stops; ``etag=None`` sends no
    validator.
    """

    content: bytes | Path
    etag: str | None = None
    ranges: bool = True
    chunked: bool = False
    rate: float | None = None
    cut_after: int | None = None
    cut_times: int | None = None
    status: int | None = None
    status_times: int | None = None
    redirect_to: str | None = None
    hang: bool = False

    @property
    def size(self) -> int:
        """The full size of the content in bytes."""
        if isinstance(self.content, Path):
            return self.content.stat().st_size
        return len(self.content)


@dataclass
class Request:
    """One request as received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int | None = None
    sent: int = 0

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    blobs: dict[str, Blob] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


class WeightsServer:
    """Serves blobs at ``http://127.0.0.1:<port>/<path>``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._state = _State()
        self._server = _Server((host, 0), _Handler)
        self._server.state = self._state

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        port: int = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def url(self, path: str, query: str = "") -> str:
        """The URL of ``path`` (with an optional query string)."""
        full = f"{self.base}/{path.lstrip('/')}"
        return f"{full}?{query}" if query else full

    def add(self, path: str, content: bytes | Path, **behaviour: Any) -> Blob:
        """Serve ``content`` at ``path``; ``behaviour`` sets ``Blob`` fields.

        The ETag defaults to a hash of the content.
        """
        if "etag" not in behaviour:
            seed = content if isinstance(content, bytes) else os.fsencode(content)
            behaviour["etag"] = f'"{hashlib.sha256(seed).hexdigest()[:16]}"'
        blob = Blob(content, **behaviour)
        with self._state.lock:
            self._state.blobs["/" + path.lstrip("/")] = blob
        return blob

    def change(self, path: str, **behaviour: Any) -> None:
        """Change how ``path`` is served from now on."""
        with self._state.lock:
            blob = self._state.blobs["/" + path.lstrip("/")]
            for key, value in behaviour.items():
                setattr(blob, key, value)

    def requests(self, path: str | None = None) -> list[Request]:
        """Recorded requests (for ``path`` only, when given), oldest first."""
        wanted = None if path is None else "/" + path.lstrip("/")
        with self._state.lock:
            return [r for r in self._state.requests if wanted in (None, r.path)]

    def start(self) -> WeightsServer:
        """Serve in a background thread."""
        self._server.start_serving("weights-server")
        return self

    def stop(self) -> None:
        """Stop serving, release hung requests and cut open connections."""
        self._state.stopping.set()
        self._server.stop_serving()

    def __enter__(self) -> WeightsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Server(TrackingHTTPServer):
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-body on purpose in these tests; that is no error.
        return


class _Cut(Exception):
    """The blob asked for the connection to be cut here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        record = Request(
            "GET", parts.path, parse_qs(parts.query), dict(self.headers.items())
        )
        with state.lock:
            state.requests.append(record)
            blob = state.blobs.get(parts.path)
            status, cut = _plan(blob) if blob is not None else (404, None)
        if blob is None:
            self._simple(record, 404, b'{"detail": "no such object"}')
            return
        if blob.hang:
            state.stopping.wait()
            self.close_connection = True
            return
        if status is not None:
            self._simple(record, status, b'{"detail": "injected status"}')
            return
        if blob.redirect_to is not None:
            self._redirect(record, blob.redirect_to)
            return
        self._serve(record, blob, cut)

    def _simple(self, record: Request, status: int, body: bytes) -> None:
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, record: Request, target: str) -> None:
        record.status = 302
        location = target if "://" in target else "/" + target.lstrip("/")
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, record: Request, blob: Blob, cut: int | None) -> None:
        size = blob.size
        start, end = 0, size - 1
        requested = self._range(blob, size)
        if requested == "unsatisfiable":
            record.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 200
        if isinstance(requested, tuple):
            status, (start, end) = 206, requested
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if blob.etag:
            self.send_header("ETag", blob.etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if blob.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes" if blob.ranges else "none")
        self.end_headers()
        try:
            self._body(record, blob, start, end + 1, cut)
        except (_Cut, OSError):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _range(self, blob: Blob, size: int) -> tuple[int, int] | str | None:
        header = self.headers.get("Range")
        if not header or not blob.ranges:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != blob.etag:
            return None
        match = _RANGE.fullmatch(header.strip())
        if match is None:
            return None
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)

    def _body(
        self, record: Request, blob: Blob, start: int, stop: int, cut: int | None
    ) -> None:
        fast = (
            isinstance(blob.content, Path)
            and not blob.chunked
            and blob.rate is None
            and cut is None
        )
        if fast:
            assert isinstance(blob.content, Path)
            self.wfile.flush()
            with open(blob.content, "rb") as handle:
                self._sendfile(record, handle.fileno(), start, stop)
            return
        for chunk in self._chunks(blob, start, stop):
            if cut is not None and record.sent + len(chunk) > cut:
                self._write(blob, chunk[: cut - record.sent])
                record.sent = cut
                raise _Cut
            self._write(blob, chunk)
            record.sent += len(chunk)
            if blob.rate:
                time.sleep(len(chunk) / blob.rate)
        if blob.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _sendfile(self, record: Request, fd: int, start: int, stop: int) -> None:
        offset = start
        while offset < stop:
            sent = os.sendfile(self.connection.fileno(), fd, offset, stop - offset)
            if sent == 0:
                break
            offset += sent
            record.sent += sent

    def _chunks(self, blob: Blob, start: int, stop: int) -> Iterator[bytes]:
        step = _CHUNK if not blob.rate else max(1024, int(blob.rate / 20))
        if isinstance(blob.content, bytes):
            for offset in range(start, stop, step):
                yield blob.content[offset : min(offset + step, stop)]
            return
        with open(blob.content, "rb") as handle:
            handle.seek(start)
            remaining = stop - start
            while remaining > 0:
                data = handle.read(min(step, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data

    def _write(self, blob: Blob, data: bytes) -> None:
        if not data:
            return
        if blob.chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)
        self.wfile.flush()


def _plan(blob: Blob) -> tuple[int | None, int | None]:
    """(status to answer instead, bytes after which to cut); counts down uses.

    Called with the state lock held.
    """
    status = None
    if blob.status is not None and blob.status_times != 0:
        status = blob.status
        if blob.status_times is not None:
            blob.status_times -= 1
    cut = None
    if status is None and blob.cut_after is not None and blob.cut_times != 0:
        cut = blob.cut_after
        if blob.cut_times is not None:
            blob.cut_times -= 1
    return status, cut
