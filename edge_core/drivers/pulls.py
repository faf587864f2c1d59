"""Mirror one image pull to the edge log and to the driverlog topic.

Every twin whose driver uses the image gets the same lines, each with that
twin's driver container name (protocol.md 2.6). Per-layer lines go to the
cloud on every visible change of a layer's status, and byte counts at
most once per ``progress_interval``; the edge log gets one INFO summary
line per ``progress_interval`` so an hour of INFO stays readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_core.drivers.logs import Publish, driver_log_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullTarget:
    """One twin that waits for the image: where its lines go."""

    topic: str
    container_name: str


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class PullReporter:
    """Receives the events of one pull and reports them."""

    def __init__(
        self,
        image: str,
        targets: Sequence[PullTarget],
        publish: Publish,
        *,
        version: str,
        progress_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.image = image
        self._targets = list(targets)
        self._publish = publish
        self._version = version
        self._interval = progress_interval
        self._clock = clock
        self._started = clock()
        self._layer_status: dict[str, str] = {}
        self._layer_bytes: dict[str, tuple[int, int]] = {}
        self._layer_sent_at: dict[str, float] = {}
        self._summary_at = self._started

    def _send(self, message: str, level: str = "INFO") -> None:
        for target in self._targets:
            payload: dict[str, Any] = driver_log_message(
                message=message,
                container_name=target.container_name,
                version=self._version,
                driver_image=self.image,
                level=level,
            )
            self._publish(target.topic, payload)

    def started(self) -> None:
        log.debug("pull of %s started", self.image)
        self._send(f"docker pull started for image {self.image}")

    def event(
        self, layer: str | None, status: str, current: int | None, total: int | None
    ) -> None:
        """One progress event of the engine's pull stream."""
        if not layer:
            return
        now = self._clock()
        changed = self._layer_status.get(layer) != status
        self._layer_status[layer] = status
        if current is not None and total:
            self._layer_bytes[layer] = (current, total)
        due = now - self._layer_sent_at.get(layer, float("-inf")) >= self._interval
        if changed or (current is not None and due):
            self._layer_sent_at[layer] = now
            sizes = f" {_human(current)} / {_human(total)}" if current and total else ""
            self._send(f"docker pull: {layer}: {status}{sizes}")
            log.debug("pull %s: %s: %s%s", self.image, layer, status, sizes)
        if now - self._summary_at >= self._interval:
            self._summary_at = now
            log.info("pulling image %s: %s", self.image, self.summary())

    def summary(self) -> str:
        """Bytes and layers done so far, in one phrase."""
        done = sum(c for c, _ in self._layer_bytes.values())
        total = sum(t for _, t in self._layer_bytes.values())
        complete = sum(
            1
            for s in self._layer_status.values()
            if s in ("Pull complete", "Already exists")
        )
        layers = f"{complete}/{len(self._layer_status)} layers"
        if total:
            return f"{_human(done)} of {_human(total)}, {layers}"
        return layers

    def completed(self, *, pulled: bool, warning: str | None) -> None:
        elapsed = self._clock() - self._started
        if warning:
            log.warning("%s", warning)
            self._send(
                f"docker pull failed for image {self.image}: {warning}", level="WARNING"
            )
            return
        log.debug(
            "pull of %s finished after %.1f s (pulled: %s)", self.image, elapsed, pulled
        )
        self._send(f"docker pull completed for image {self.image}")

    def failed(self, error: str, *, timed_out: bool = False) -> None:
        if timed_out:
            self._send(f"docker pull timed out for image {self.image}", level="ERROR")
        else:
            self._send(
                f"docker pull failed for image {self.image}: {error}", level="ERROR"
            )
