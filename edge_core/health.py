"""The bootstrap edge_health publisher.

From startup until every linked driver runs, the edge core publishes one
``edge_health`` message per linked twin per interval (protocol.md 2.5,
2.6) so the cloud sees the device while drivers are still pulling. Once
the drivers run they publish their own health, and this publisher stops:
two sources would show duplicate signals in the UI.

It does not decide when to stop; the daemon calls ``stop()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_core.host.metrics import HostMetricsSampler

log = logging.getLogger(__name__)

Publish = Callable[[str, Mapping[str, Any]], bool]


class BootstrapHealthPublisher:
    """Publishes edge_health for each linked twin every ``interval`` seconds."""

    def __init__(
        self,
        *,
        publish: Publish,
        topic_for: Callable[[str], str],
        fingerprint: str,
        twins: Callable[[], Sequence[str]],
        interval: float,
        metrics: HostMetricsSampler,
        watchdog_layers: Sequence[str] = (),
        battery_wh: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish = publish
        self._topic_for = topic_for
        self._fingerprint = fingerprint
        self._twins = twins
        self._interval = max(1.0, interval)
        self._metrics = metrics
        self._watchdog_layers = list(watchdog_layers)
        self._battery_wh = battery_wh
        self._clock = clock
        self._wall_clock = wall_clock
        self._created = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def payload(self, twin_uuid: str) -> dict[str, Any]:
        """The edge_health message for one twin (session id added on publish)."""
        message: dict[str, Any] = {
            "type": "edge_health",
            "timestamp": self._wall_clock(),
            "edge_id": self._fingerprint,
            "uptime_seconds": round(self._clock() - self._created, 1),
            "streams": {},
            "stream_count": 0,
            "healthy_streams": 0,
            "camera_config": None,
            "consecutive_critical": 0,
            "watchdog_layers": list(self._watchdog_layers),
        }
        message.update(self._metrics.sample())
        if self._battery_wh is not None:
            message["battery_wh"] = self._battery_wh
        # Applied last so that no health field can override them.
        message["source_type"] = "edge"
        message["twin_uuid"] = twin_uuid
        return message

    def publish_once(self) -> int:
        """Publish one message per linked twin; returns how many were sent."""
        sent = 0
        for twin_uuid in self._twins():
            if self._publish(self._topic_for(twin_uuid), self.payload(twin_uuid)):
                sent += 1
        return sent

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="bootstrap-health", daemon=True
        )
        self._thread.start()
        log.info("bootstrap health publisher started (every %.0f s)", self._interval)

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None
        log.info("bootstrap health publisher stopped: drivers publish their own")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once()
            except Exception:
                log.exception("bootstrap health publish failed; retrying next tick")
            self._stop.wait(self._interval)


class BootstrapHealth:
    """The bootstrap publisher's life: from startup until drivers first run.

    ``make`` builds the publisher when one is needed; once every driver ran
    (drivers publish their own health, protocol.md 2.5) it is stopped and
    never made again in this process.
    """

    def __init__(self, make: Callable[[], BootstrapHealthPublisher]) -> None:
        self._make = make
        self._publisher: BootstrapHealthPublisher | None = None
        self._over = False

    def needed(self, linked: bool) -> None:
        """Publish while drivers start, when any twin is linked."""
        if self._publisher is not None or self._over or not linked:
            return
        self._publisher = self._make()
        self._publisher.start()

    def drivers_running(self) -> None:
        """Every driver runs: the drivers' own health takes over for good."""
        self._over = True
        self.stop()

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
