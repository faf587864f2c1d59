"""Forward driver output to the twin's driverlog, losing and repeating nothing.

Each running driver container gets one follower thread that reads its
merged stdout/stderr and publishes every line as a ``driver_log`` message
(protocol.md 2.6) on ``{P}cyberwave/twin/<twin>/driverlog``. Lines are also
echoed to the edge core's own log so ``journalctl`` shows them.

A follower ends when its container stops; the daemon calls ``follow``
again every cycle, and the new follower resumes where the last one got
to. Where is a ``LogPosition``: the container id and the engine timestamp
of the last line read. The same container (restarted) resumes after that
timestamp, so no line is sent twice and none written while nobody was
attached is lost; a new container under the same name (recreated) is read
from its beginning, whatever its clock says.

While the broker is unreachable lines wait in one ``LogOutbox`` shared by
all containers, bounded in lines and bytes (the oldest go first, and are
counted). They are sent in order before any newer line, and by ``flush``,
which the daemon calls every cycle, so they leave as soon as the broker
is back even when no driver prints anything. A held message is sent as it
was built: its ``timestamp`` is the moment the line was read and first
offered to the broker, so a viewer places it where it happened.

This module does not decide which containers to follow; the daemon tells
it. Image-pull progress lines are ``edge_core.drivers.pulls``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

_LEVELS = ("ERROR", "CRITICAL", "WARNING", "WARN", "DEBUG", "INFO")
_LEVEL_SCAN_CHARS = 80
DEFAULT_BUFFER_LINES = 1000
DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
# What a held message costs beyond its text: the other fields and the dict.
_MESSAGE_OVERHEAD_BYTES = 256

log = logging.getLogger(__name__)
driver_output = logging.getLogger("edge_core.driver_output")

Publish = Callable[[str, Mapping[str, Any]], bool]


def detect_level(line: str) -> str:
    """The level a driver line announces, INFO when it names none.

    The first of ERROR, CRITICAL, WARNING, WARN, DEBUG, INFO found in the
    first 80 characters wins; WARN is reported as WARNING.
    """
    head = line[:_LEVEL_SCAN_CHARS].upper()
    for level in _LEVELS:
        if level in head:
            return "WARNING" if level == "WARN" else level
    return "INFO"


def driver_log_message(
    *,
    message: str,
    container_name: str,
    version: str,
    driver_image: str | None = None,
    level: str | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """One ``driver_log`` payload (the session id is added on publish)."""
    text = message.rstrip()
    payload: dict[str, Any] = {
        "type": "driver_log",
        "message": text,
        "level": level or detect_level(text),
        "container_name": container_name,
        "source": "edge",
        "timestamp": now(),
        "edge_core_version": version,
    }
    if driver_image:
        payload["driver_image"] = driver_image
    return payload


class LogLines(Protocol):
    """A stream of complete log lines that remembers where it got to.

    ``container_id`` is the container the lines come from (None when the
    source cannot tell); ``last_timestamp`` the engine time of the last
    line read, or the ``since`` it was opened with.
    """

    container_id: str | None
    last_timestamp: datetime | None

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class LogSource(Protocol):
    """The part of the Docker adapter a follower needs."""

    def logs(
        self,
        name: str,
        *,
        follow: bool,
        since: datetime | None = None,
        tail: int | None = None,
        stop_event: threading.Event | None = None,
        fingerprint: str | None = None,
    ) -> LogLines: ...


@dataclass(frozen=True)
class FollowTarget:
    """A running driver container and where its lines go."""

    container_name: str
    twin_uuid: str
    image: str
    topic: str


@dataclass(frozen=True)
class LogPosition:
    """How far the lines of one container name have been read."""

    container_id: str | None
    timestamp: datetime | None


class Delivery(enum.Enum):
    """What became of one publish attempt."""

    SENT = "sent"
    AWAY = "away"
    REFUSED = "refused"


@dataclass(frozen=True)
class _Held:
    topic: str
    payload: Mapping[str, Any]
    size: int
    source: str | None = None
    before: LogPosition | None = None


def _size(payload: Mapping[str, Any]) -> int:
    return len(str(payload.get("message", ""))) + _MESSAGE_OVERHEAD_BYTES


class LogOutbox:
    """driver_log messages on their way to the broker, in order.

    ``send`` publishes at once when nothing is waiting and the broker is
    there; otherwise the message waits behind the others. At most
    ``capacity`` messages and about ``max_bytes`` wait; beyond that the
    oldest is dropped and counted. ``connected`` (the session's state)
    tells a broker that is away from one that refused a single message
    (too large, say): a refused message is not held, or it would block
    every later one. Without it, every failed publish counts as the broker
    being away.

    A message may name its ``source`` (a container name) with the read
    position ``before`` its line. ``unsent`` then gives, for each source
    with messages still waiting, the position before the oldest of them,
    from which they are read again: a position kept on disk never skips a
    line that has not left the edge core.
    """

    def __init__(
        self,
        publish: Publish,
        *,
        capacity: int = DEFAULT_BUFFER_LINES,
        max_bytes: int = DEFAULT_BUFFER_BYTES,
        connected: Callable[[], bool] | None = None,
    ) -> None:
        self._publish = publish
        self._capacity = max(0, capacity)
        self._max_bytes = max(0, max_bytes)
        self._connected = connected
        self._lock = threading.Lock()
        self._held: deque[_Held] = deque()
        self._held_bytes = 0
        self._dropped = 0
        self._unreported = 0
        self._late = 0
        self._holding = False

    @property
    def dropped(self) -> int:
        """Messages dropped so far because the outbox was full."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """Messages waiting for the broker right now."""
        return len(self._held)

    def send(
        self,
        topic: str,
        payload: Mapping[str, Any],
        *,
        source: str | None = None,
        before: LogPosition | None = None,
    ) -> None:
        """Publish ``payload`` after everything already waiting."""
        item = _Held(topic, payload, _size(payload), source, before)
        with self._lock:
            self._drain()
            if self._held:
                self._hold(item)
                return
            outcome = self._deliver(topic, payload)
            if outcome is Delivery.AWAY:
                self._hold(item)

    def unsent(self) -> dict[str, LogPosition]:
        """For each source with messages waiting, where to read them again."""
        found: dict[str, LogPosition | None] = {}
        with self._lock:
            for item in self._held:
                if item.source is not None and item.source not in found:
                    found[item.source] = item.before
        return {source: at for source, at in found.items() if at is not None}

    def flush(self) -> int:
        """Publish what waits, oldest first, until the broker fails again.

        Returns how many messages were sent.
        """
        with self._lock:
            return self._drain()

    # -- under the lock ---------------------------------------------------

    def _deliver(self, topic: str, payload: Mapping[str, Any]) -> Delivery:
        connected = self._connected
        if connected is not None and not connected():
            return Delivery.AWAY
        if self._publish(topic, payload):
            self._back()
            return Delivery.SENT
        if connected is None or not connected():
            return Delivery.AWAY
        log.debug("driver log line for %s refused by the MQTT session", topic)
        return Delivery.REFUSED

    def _drain(self) -> int:
        sent = 0
        while self._held:
            head = self._held[0]
            outcome = self._deliver(head.topic, head.payload)
            if outcome is Delivery.AWAY:
                break
            self._held.popleft()
            self._held_bytes -= head.size
            if outcome is Delivery.SENT:
                sent += 1
        self._late += sent
        if self._late and not self._held:
            log.info(
                "sent %d held driver log line(s): the MQTT broker is back",
                self._late,
            )
            self._late = 0
        return sent

    def _hold(self, item: _Held) -> None:
        if not self._holding:
            self._holding = True
            log.debug(
                "MQTT broker unreachable: holding driver log lines (at most %d)",
                self._capacity,
            )
        self._held.append(item)
        self._held_bytes += item.size
        while self._held and (
            len(self._held) > self._capacity or self._held_bytes > self._max_bytes
        ):
            oldest = self._held.popleft()
            self._held_bytes -= oldest.size
            self._dropped += 1
            self._unreported += 1

    def _back(self) -> None:
        """A publish went through: report what was lost while it could not."""
        self._holding = False
        if not self._unreported:
            return
        log.warning(
            "dropped %d driver log lines while the MQTT broker was unreachable",
            self._unreported,
        )
        self._unreported = 0


class LogForwarder:
    """Keeps one follower thread per running driver container.

    ``cold_start_tail`` bounds the backlog read when a container is first
    followed (0: all of it); ``buffer_lines`` and ``buffer_bytes`` bound
    the lines held while the broker is away; ``connected`` is the MQTT
    session's state (see ``LogOutbox``).
    """

    def __init__(
        self,
        source: LogSource,
        publish: Publish,
        *,
        version: str,
        cold_start_tail: int,
        fingerprint: str | None = None,
        buffer_lines: int = DEFAULT_BUFFER_LINES,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        connected: Callable[[], bool] | None = None,
    ) -> None:
        self._fingerprint = fingerprint
        self._source = source
        self._version = version
        self._tail = cold_start_tail if cold_start_tail > 0 else None
        self._outbox = LogOutbox(
            publish,
            capacity=buffer_lines,
            max_bytes=buffer_bytes,
            connected=connected,
        )
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._positions: dict[str, LogPosition] = {}
        # Names whose position came from ``restore`` and was not used yet.
        self._restored: set[str] = set()
        self._stop = threading.Event()

    def use(self, source: LogSource) -> None:
        """Follow containers through ``source`` from now on (a new engine
        connection); the read positions and held lines are kept."""
        with self._lock:
            self._source = source

    @property
    def dropped(self) -> int:
        """Driver log lines dropped so far while the broker was away."""
        return self._outbox.dropped

    @property
    def buffered(self) -> int:
        """Driver log lines waiting for the broker right now."""
        return self._outbox.buffered

    def follow(self, target: FollowTarget) -> None:
        """Start following ``target`` unless a follower is already alive."""
        with self._lock:
            thread = self._threads.get(target.container_name)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(
                target=self._run,
                args=(target,),
                name=f"logs-{target.container_name}",
                daemon=True,
            )
            self._threads[target.container_name] = thread
        thread.start()

    def following(self) -> list[str]:
        """Names of containers whose follower is alive."""
        with self._lock:
            return sorted(n for n, t in self._threads.items() if t.is_alive())

    def position(self, container_name: str) -> LogPosition | None:
        """How far the lines of ``container_name`` have been read."""
        with self._lock:
            return self._positions.get(container_name)

    def positions(self) -> dict[str, LogPosition]:
        """How far every container's lines have left the edge core, to keep
        on disk: a line read but still waiting for the broker is read again
        by the next process."""
        with self._lock:
            found = dict(self._positions)
        found.update(self._outbox.unsent())
        return found

    def restore(self, positions: Mapping[str, LogPosition]) -> None:
        """Resume from positions kept by an earlier process (before ``follow``).

        A kept position whose container is gone says nothing about the
        container now under its name, which may have run for days: that
        one is read like a first attach (the cold-start tail).
        """
        with self._lock:
            for name, position in positions.items():
                if name not in self._positions:
                    self._positions[name] = position
                    self._restored.add(name)

    def flush(self) -> int:
        """Send the lines held while the broker was away; how many went."""
        return self._outbox.flush()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask every follower to end, wait for them briefly, send what waits."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._outbox.flush()

    def _run(self, target: FollowTarget) -> None:
        name = target.container_name
        try:
            stream = self._open(name, self.position(name))
            with self._lock:
                self._restored.discard(name)
            before = LogPosition(stream.container_id, stream.last_timestamp)
            try:
                for raw in stream:
                    after = LogPosition(stream.container_id, stream.last_timestamp)
                    if before.timestamp is None and after.timestamp is not None:
                        # Just before the first line read: it is read again.
                        earlier = after.timestamp - timedelta(microseconds=1)
                        before = LogPosition(before.container_id, earlier)
                    text = raw.decode("utf-8", errors="replace")
                    self._forward(target, text, before)
                    before = after
                    # Kept per line, so a position saved at any moment is exact.
                    self._note_position(name, stream)
            finally:
                self._note_position(name, stream)
        except Exception:
            log.exception(
                "log follower for %s failed; it is restarted on the next pass", name
            )
        log.debug("stopped following logs of %s", name)

    def _note_position(self, name: str, stream: LogLines) -> None:
        with self._lock:
            self._positions[name] = LogPosition(
                stream.container_id, stream.last_timestamp
            )

    def _open(self, name: str, position: LogPosition | None) -> LogLines:
        with self._lock:
            restored = name in self._restored
        # The first attach shows a bounded backlog.
        if position is None:
            log.debug("following logs of %s (tail=%s)", name, self._tail)
            return self._logs(name, since=None, tail=self._tail)

        # A re-attach resumes after the last line already read...
        stream = self._logs(name, since=position.timestamp, tail=None)
        known, current = position.container_id, stream.container_id
        if known is None or current is None or known == current:
            log.debug("resuming logs of %s after %s", name, position.timestamp)
            return stream

        # ...unless the name now belongs to a new container: all of it is new,
        # or, after a position kept by an earlier process, unknown.
        stream.close()
        tail = self._tail if restored else None
        log.debug(
            "%s was recreated (%s -> %s); following its logs from %s",
            name,
            known[:12],
            current[:12],
            "the start" if tail is None else f"its last {tail} lines",
        )
        return self._logs(name, since=None, tail=tail)

    def _logs(self, name: str, *, since: datetime | None, tail: int | None) -> LogLines:
        return self._source.logs(
            name,
            follow=True,
            since=since,
            tail=tail,
            stop_event=self._stop,
            fingerprint=self._fingerprint,
        )

    def _forward(
        self, target: FollowTarget, line: str, before: LogPosition | None = None
    ) -> None:
        # A CR alone ends a line too (a progress counter, a device echo):
        # each part is its own message with its own level. Every part keeps
        # the position before the whole line, so a line is read again until
        # its last part has left the edge core.
        for part in line.split("\r"):
            text = part.rstrip()
            if not text:
                continue
            driver_output.info("%s | %s", target.container_name, text)
            payload = driver_log_message(
                message=text,
                container_name=target.container_name,
                version=self._version,
                driver_image=target.image,
            )
            self._outbox.send(
                target.topic, payload, source=target.container_name, before=before
            )
