"""Forward driver output and image-pull progress to the twin's driverlog.

Each running driver container gets one follower thread that reads its
merged stdout/stderr and publishes every line as a ``driver_log`` message
(protocol.md 2.6) on ``{P}cyberwave/twin/<twin>/driverlog``. Lines are also
echoed to the edge core's own log so ``journalctl`` shows them.

This module does not decide which containers to follow; the daemon tells
it. A follower whose container stops simply ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

_LEVELS = ("ERROR", "CRITICAL", "WARNING", "WARN", "DEBUG", "INFO")
_LEVEL_SCAN_CHARS = 80

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
    """A stream of complete log lines that remembers where it got to."""

    last_timestamp: datetime | None

    def __iter__(self) -> Iterator[bytes]: ...


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


class LogForwarder:
    """Keeps one follower thread per running driver container."""

    def __init__(
        self,
        source: LogSource,
        publish: Publish,
        *,
        version: str,
        cold_start_tail: int,
        fingerprint: str | None = None,
    ) -> None:
        self._fingerprint = fingerprint
        self._source = source
        self._publish = publish
        self._version = version
        self._tail = cold_start_tail if cold_start_tail > 0 else None
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._resume_at: dict[str, datetime | None] = {}
        self._stop = threading.Event()

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

    def stop(self, timeout: float = 2.0) -> None:
        """Ask every follower to end and wait for them briefly."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, target: FollowTarget) -> None:
        # The first attach shows a bounded backlog; a re-attach resumes
        # after the last line already sent, so nothing is repeated.
        name = target.container_name
        resuming = name in self._resume_at
        since = self._resume_at.get(name)
        tail = None if resuming else self._tail
        log.debug("following logs of %s (since=%s, tail=%s)", name, since, tail)
        try:
            stream = self._source.logs(
                name,
                follow=True,
                since=since,
                tail=tail,
                stop_event=self._stop,
                fingerprint=self._fingerprint,
            )
            try:
                for raw in stream:
                    self._forward(target, raw.decode("utf-8", errors="replace"))
            finally:
                self._resume_at[name] = stream.last_timestamp
        except Exception:
            log.exception(
                "log follower for %s failed; it is restarted on the next pass", name
            )
        log.debug("stopped following logs of %s", name)

    def _forward(self, target: FollowTarget, line: str) -> None:
        text = line.rstrip()
        if not text:
            return
        driver_output.info("%s | %s", target.container_name, text)
        payload = driver_log_message(
            message=text,
            container_name=target.container_name,
            version=self._version,
            driver_image=target.image,
        )
        self._publish(target.topic, payload)
