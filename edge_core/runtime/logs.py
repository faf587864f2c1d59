"""A container's output as complete lines, resumable without duplicates.

The engine sends a container's log as frames (one per log message, without
a TTY) or as a raw byte stream (with a TTY); neither is aligned to lines
for long or unterminated output. ``LogStream`` buffers both into complete
lines, merges stdout and stderr, and ends cleanly when the container stops
or when the caller's stop event is set.

Lines are requested with the engine's timestamps, which are stripped
before the line is handed out and remembered as ``last_timestamp``. A
follower that re-attaches with ``since=last_timestamp`` gets only later
lines: the engine's ``since`` is whole seconds and inclusive, so the
sub-second filtering is done here.

It does not decode text, detect levels or forward anything: callers get
bytes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from edge_core.runtime.container import parse_timestamp

log = logging.getLogger(__name__)

_STAMP = re.compile(
    rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) "
)


def split_timestamp(data: bytes) -> tuple[datetime | None, bytes]:
    """The engine timestamp that prefixes ``data``, and the rest of it."""
    match = _STAMP.match(data)
    if match is None:
        return None, data
    return parse_timestamp(match.group(1).decode("ascii")), data[match.end() :]


class LineBuffer:
    """Collects byte chunks and hands out the complete lines among them."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``, without their line endings."""
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        return [line.rstrip(b"\r") for line in lines]

    def flush(self) -> list[bytes]:
        """The unterminated rest, if any, as a last line."""
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        return [rest] if rest else []


class LogStream(Iterator[bytes]):
    """Complete output lines of one container, in order.

    ``chunks`` are the engine's frames (``tty`` False) or raw bytes
    (``tty`` True), each message prefixed with its timestamp. ``close``
    ends the underlying request; it is called when ``stop_event`` is set,
    when the stream is exhausted and by ``close()``.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        close: Callable[[], None],
        tty: bool,
        since: datetime | None = None,
        stop_event: threading.Event | None = None,
        stop_poll: float = 0.2,
    ) -> None:
        self.last_timestamp: datetime | None = since
        self._since = since
        self._close = close
        self._tty = tty
        self._stop_event = stop_event
        self._finished = threading.Event()
        self._lines = self._generate(iter(chunks))
        if stop_event is not None:
            watcher = threading.Thread(
                target=self._watch,
                args=(stop_event, stop_poll),
                daemon=True,
                name="log-stream-stop",
            )
            watcher.start()

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> bytes:
        return next(self._lines)

    def close(self) -> None:
        """End the stream; iteration stops after lines already buffered."""
        if self._finished.is_set():
            return
        self._finished.set()
        try:
            self._close()
        except Exception:  # closing is best effort; the socket may be gone
            log.debug("closing a log stream failed", exc_info=True)

    def _watch(self, stop_event: threading.Event, poll: float) -> None:
        while not self._finished.is_set():
            if stop_event.wait(poll):
                self.close()
                return

    def _stopped(self) -> bool:
        return self._finished.is_set() or (
            self._stop_event is not None and self._stop_event.is_set()
        )

    def _keep(self, stamp: datetime | None) -> bool:
        """Remember ``stamp``; False when the line is not after ``since``."""
        if stamp is None:
            return True
        if self.last_timestamp is None or stamp > self.last_timestamp:
            self.last_timestamp = stamp
        return self._since is None or stamp > self._since

    def _generate(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        buffer = LineBuffer()
        try:
            for chunk in _until_error(chunks, self._stopped):
                if self._tty:
                    for line in buffer.feed(chunk):
                        stamp, text = split_timestamp(line)
                        if self._keep(stamp):
                            yield text
                    continue
                stamp, text = split_timestamp(chunk)
                if not self._keep(stamp):
                    continue
                yield from buffer.feed(text)
            for line in buffer.flush():
                yield split_timestamp(line)[1] if self._tty else line
        finally:
            self.close()


def _until_error(
    chunks: Iterator[bytes], stopped: Callable[[], bool]
) -> Iterator[bytes]:
    """``chunks`` until they end; a read broken by ``close`` ends them too."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except Exception:
            if stopped():
                return
            raise
        yield chunk
