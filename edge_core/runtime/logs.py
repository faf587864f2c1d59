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
sub-second filtering is done here. ``container_id`` says which container
the lines came from, so a follower can tell a restarted container (same
id: resume after ``last_timestamp``) from a recreated one of the same name
(new id: all of its lines are new).

A line is at most ``MAX_LINE_BYTES`` long; longer output without a line
break (a progress bar redrawn with carriage returns, a runaway print) is
handed out in pieces of that size, so memory stays bounded whatever a
container writes.

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

# Docker itself splits log messages at 16 KiB; a few of those make a line.
MAX_LINE_BYTES = 64 * 1024

_STAMP = re.compile(
    rb"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) "
)


def split_timestamp(data: bytes) -> tuple[datetime | None, bytes]:
    """The engine timestamp that prefixes ``data``, and the rest of it."""
    match = _STAMP.match(data)
    if match is None:
        return None, data
    return parse_timestamp(match.group(1).decode("ascii")), data[match.end() :]


class _LineStamps:
    """Takes out of a TTY log the copies of a line's timestamp inside it.

    With a TTY the engine's messages are not framed: a line longer than its
    message size (16 KiB) comes as several messages run together, each
    after a copy of the line's timestamp. Called on text that begins a
    line, it keeps the timestamp there and remembers it; on any text it
    removes the copies of the remembered one.
    """

    def __init__(self) -> None:
        self._stamp = b""

    def __call__(self, data: bytes) -> bytes:
        match = _STAMP.match(data)
        if match is not None:
            self._stamp = match.group(0)
        start = match.end() if match is not None else 0
        if not self._stamp or self._stamp not in data[start:]:
            return data
        return data[:start] + data[start:].replace(self._stamp, b"")


# How much of an unterminated rest is never cut while ``clean`` may still
# change it: more than a timestamp that arrived only in part.
_CLEAN_MARGIN = 64


class LineBuffer:
    """Collects byte chunks and hands out the complete lines among them.

    No line handed out is longer than ``max_line_bytes``: a longer one is
    cut into pieces of that size, and so is an unterminated rest that
    outgrows it. ``clean``, when given, rewrites every line and rest before
    it is cut, so nothing it removes can be split between two pieces.
    """

    def __init__(
        self,
        max_line_bytes: int = MAX_LINE_BYTES,
        clean: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._pending = b""
        self._max = max_line_bytes
        self._clean = clean
        self._margin = _CLEAN_MARGIN if clean is not None else 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``, without their line endings."""
        data = self._pending + chunk
        *complete, rest = data.split(b"\n")
        lines: list[bytes] = []
        for line in complete:
            lines.extend(self._cut(self._cleaned(line.rstrip(b"\r"))))
        rest = self._cleaned(rest)
        while len(rest) > self._max + self._margin:
            lines.append(rest[: self._max])
            rest = rest[self._max :]
        self._pending = rest
        return lines

    def _cleaned(self, data: bytes) -> bytes:
        return self._clean(data) if self._clean is not None else data

    def _cut(self, line: bytes) -> list[bytes]:
        if len(line) <= self._max:
            return [line]
        return [line[i : i + self._max] for i in range(0, len(line), self._max)]

    def flush(self) -> list[bytes]:
        """The unterminated rest, if any, as a last line."""
        rest, self._pending = self._cleaned(self._pending.rstrip(b"\r")), b""
        return self._cut(rest) if rest else []


class LogStream(Iterator[bytes]):
    """Complete output lines of one container, in order.

    ``chunks`` are the engine's frames (``tty`` False) or raw bytes
    (``tty`` True), each message prefixed with its timestamp. ``close``
    ends the underlying request; it is called when ``stop_event`` is set,
    when the stream is exhausted and by ``close()``. ``container_id`` is
    the id of the container the request was made for, when known.
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
        container_id: str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.container_id = container_id
        self.last_timestamp: datetime | None = since
        self._since = since
        self._max_line_bytes = max_line_bytes
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
        buffer = LineBuffer(
            self._max_line_bytes, clean=_LineStamps() if self._tty else None
        )
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
