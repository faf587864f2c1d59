"""Progress of long cache operations, as plain events.

Downloads of several gigabytes and the hash of a large file take long
enough that a person wants to see them move. The cache only emits
``Progress`` events (at most a few per second); how they are shown is the
caller's business: the CLI draws rich progress bars, the daemon uses
``ProgressLog``, which writes one INFO line per model every so often.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

_log = logging.getLogger(__name__)


class Phase(enum.Enum):
    """What the bytes are being spent on."""

    DOWNLOAD = "download"
    VERIFY = "verify"


@dataclass(frozen=True)
class Progress:
    """How far one operation on one model has got.

    ``done`` counts the bytes of the file so far (a resumed download starts
    at the size of its partial file); ``total`` is None when the server did
    not say; ``rate`` is bytes per second over this attempt; ``finished``
    marks the last event of the operation.
    """

    model_id: str
    phase: Phase
    done: int
    total: int | None
    rate: float
    finished: bool = False
    source: str | None = None


ProgressCallback = Callable[[Progress], None]


class Throttle:
    """Turns a stream of byte counts into ``Progress`` events, a few per second."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        *,
        model_id: str,
        phase: Phase,
        total: int | None,
        start: int = 0,
        source: str | None = None,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self._model_id = model_id
        self._phase = phase
        self._total = total
        self._start = start
        self._source = source
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_emit: float | None = None

    def update(self, done: int) -> None:
        """Report ``done`` bytes; emits only when the interval has passed."""
        if self._callback is None:
            return
        now = self._clock()
        if self._last_emit is not None and now - self._last_emit < self._interval:
            return
        self._last_emit = now
        self._callback(self._event(done, now, finished=False))

    def finish(self, done: int) -> None:
        """Report the final count (always emitted)."""
        if self._callback is not None:
            self._callback(self._event(done, self._clock(), finished=True))

    def _event(self, done: int, now: float, *, finished: bool) -> Progress:
        elapsed = max(now - self._started, 1e-9)
        rate = max(0, done - self._start) / elapsed
        return Progress(
            model_id=self._model_id,
            phase=self._phase,
            done=done,
            total=self._total,
            rate=rate,
            finished=finished,
            source=self._source,
        )


class ProgressLog:
    """A ``ProgressCallback`` that logs one INFO line per model per interval."""

    def __init__(
        self,
        *,
        interval: float = 10.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._log = logger or _log
        self._clock = clock
        self._last: dict[tuple[str, Phase], float] = {}

    def __call__(self, event: Progress) -> None:
        """Log ``event`` if this model's last line is older than the interval."""
        key = (event.model_id, event.phase)
        now = self._clock()
        if event.finished:
            self._last.pop(key, None)
            return
        last = self._last.get(key)
        if last is None:
            self._last[key] = now
            return
        if now - last < self._interval:
            return
        self._last[key] = now
        self._log.info("%s", describe(event))


def describe(event: Progress) -> str:
    """One line such as ``model yolov8n: downloaded 120.0 MiB of 2.0 GiB (6%)``."""
    verb = "downloaded" if event.phase is Phase.DOWNLOAD else "verified"
    amount = human_bytes(event.done)
    if event.total:
        percent = min(100, int(event.done * 100 / event.total))
        amount += f" of {human_bytes(event.total)} ({percent}%)"
    return f"model {event.model_id}: {verb} {amount} at {human_bytes(event.rate)}/s"


def human_bytes(count: float) -> str:
    """``count`` bytes as ``512 B``, ``1.5 KiB`` … ``2.0 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
