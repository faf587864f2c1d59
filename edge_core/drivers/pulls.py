"""Make the driver images present, and mirror each pull where people look.

``ImagePreparer`` makes one image present for the containers that need it
(with the Jetson fallback of protocol.md 4.3) and never raises: it returns
the image id or the reason the image is missing.

Each pull is mirrored by a ``PullReporter`` to the edge log, the driverlog
topic and the starting cards. A pull can be abandoned from another thread
(a restart will not wait for a stalled registry): its caller gets
``PullInterrupted`` at once while the engine's request ends on its own.

Every twin whose driver uses the image gets the same lines, each with that
twin's driver container name (protocol.md 2.6). Per-layer lines go to the
cloud on every visible change of a layer's status, and byte counts at
most once per ``progress_interval``; the edge log gets one INFO summary
line per ``progress_interval`` so an hour of INFO stays readable. The
events are also folded into the pull keys of the ``driver_starting``
cards (protocol.md 1.8), handed to ``on_keys`` after every event; the
cards throttle their own updates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_core.alerts.launches import LaunchAlerts
from edge_core.alerts.progress import PullProgress
from edge_core.cloud import topics
from edge_core.drivers.logs import Publish, driver_log_message
from edge_core.errors import ContainerError
from edge_core.model.spec import ContainerSpec
from edge_core.runtime.docker import DockerRuntime
from edge_core.runtime.images import PullEvent, is_local_tag

log = logging.getLogger(__name__)

T = TypeVar("T")

INTERRUPTED_PHASE = "pull_interrupted"


class PullInterrupted(ContainerError):
    """The pass no longer waits for this pull; the reason is the cut's."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(
            f"pull of image {image} abandoned: {reason}", phase=INTERRUPTED_PHASE
        )


def _interruptible(
    image: str, call: Callable[[], T], interrupt: Future[str] | None
) -> T:
    """``call()`` on a thread of its own, given up when ``interrupt`` ends.

    The engine's pull request cannot be cut from here (its answer may not
    even have begun), so an abandoned call finishes in the background,
    bounded by the stall timeout, and its outcome is dropped.
    """
    if interrupt is None:
        return call()
    result: Future[T] = Future()

    def run() -> None:
        try:
            result.set_result(call())
        except BaseException as exc:  # handed over to the waiting thread
            result.set_exception(exc)

    threading.Thread(target=run, name=f"pull {image}", daemon=True).start()
    either: list[Future[Any]] = [result, interrupt]
    wait(either, return_when=FIRST_COMPLETED)
    if result.done():
        return result.result()
    raise PullInterrupted(image, interrupt.result())


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
        on_keys: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.image = image
        self._targets = list(targets)
        self._publish = publish
        self._version = version
        self._interval = progress_interval
        self._clock = clock
        self._started = clock()
        self._layer_status: dict[str, str] = {}
        self._layer_sent_at: dict[str, float] = {}
        self._summary_at = self._started
        self.progress = PullProgress(image)
        self._on_keys = on_keys

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
        self.progress.feed(layer, status, current, total)
        if self._on_keys is not None:
            self._on_keys(self.progress.keys())
        if not layer:
            return
        now = self._clock()
        changed = self._layer_status.get(layer) != status
        self._layer_status[layer] = status
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
        keys = self.progress.keys()
        layers = f"{keys['layers_complete']}/{keys['layers_total']} layers"
        if keys["total_bytes"]:
            done, total = keys["downloaded_bytes"], keys["total_bytes"]
            return f"{_human(done)} of {_human(total)}, {layers}"
        return layers

    def completed(self, *, pulled: bool, warning: str | None) -> None:
        if pulled:
            self.progress.complete()
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
        self.progress.error(error)
        if timed_out:
            self._send(f"docker pull timed out for image {self.image}", level="ERROR")
        else:
            self._send(
                f"docker pull failed for image {self.image}: {error}", level="ERROR"
            )


@dataclass(frozen=True)
class ImageReady:
    """An image made present: the ids to hash with, or why it is missing."""

    image_ids: Mapping[str, str | None]
    substitutes: Mapping[str, str]
    error: ContainerError | None


class ImagePreparer:
    """Makes driver images present on one engine; called from pull threads."""

    def __init__(
        self,
        runtime: DockerRuntime,
        publish: Publish,
        *,
        version: str,
        topic_prefix: str,
        stall_timeout: float,
    ) -> None:
        self._runtime = runtime
        self._publish = publish
        self._version = version
        self._prefix = topic_prefix
        self._stall_timeout = stall_timeout

    def prepare(
        self,
        image: str,
        specs: Sequence[ContainerSpec],
        *,
        fallback: str | None,
        pull: bool,
        alerts: LaunchAlerts,
        interrupt: Future[str] | None = None,
    ) -> ImageReady:
        """Make ``image`` present (or its fallback); never raises.

        Once ``interrupt`` has a result, a pull under way is abandoned and
        the error's phase is ``INTERRUPTED_PHASE``.
        """
        targets = [
            PullTarget(topics.driverlog(self._prefix, spec.twin_uuid), spec.name)
            for spec in specs
        ]
        try:
            image_id = self._ensure(
                image, targets, pull=pull, alerts=alerts, interrupt=interrupt
            )
            return ImageReady({image: image_id}, {}, None)
        except ContainerError as exc:
            if fallback is None or isinstance(exc, PullInterrupted):
                return ImageReady({}, {}, exc)
            log.info(
                "no Jetson build %s (%s); falling back to %s", image, exc, fallback
            )
        try:
            image_id = self._ensure(
                fallback, targets, pull=pull, alerts=alerts, interrupt=interrupt
            )
        except ContainerError as exc:
            return ImageReady({}, {}, exc)
        return ImageReady({fallback: image_id}, {image: fallback}, None)

    def _will_pull(self, image: str, *, pull: bool) -> bool:
        """Whether ensure_image would pull ``image`` (the runtime's policy)."""
        try:
            present = self._runtime.image_id(image) is not None
        except ContainerError:
            return True
        return not present or (pull and not is_local_tag(image))

    def _ensure(
        self,
        image: str,
        targets: Sequence[PullTarget],
        *,
        pull: bool,
        alerts: LaunchAlerts,
        interrupt: Future[str] | None,
    ) -> str:
        names = [target.container_name for target in targets]
        if not self._will_pull(image, pull=pull):
            # A present image that is not pulled again is not news: nothing
            # goes to driverlog, so an idle pass publishes nothing.
            result = self._runtime.ensure_image(
                image,
                on_progress=lambda _ev: None,
                stall_timeout=self._stall_timeout,
                always_pull=False,
            )
            alerts.pulled(names, pulled=False, keys={}, warning=None)
            return result.image_id
        reporter = PullReporter(
            image,
            targets,
            self._publish,
            version=self._version,
            on_keys=(
                (lambda keys: alerts.progress(names, keys))
                if alerts.has_cards(names)
                else None
            ),
        )
        reporter.started()
        abandoned = threading.Event()

        def on_progress(event: PullEvent) -> None:
            if not abandoned.is_set():
                reporter.event(event.layer, event.status, event.current, event.total)

        try:
            result = _interruptible(
                image,
                lambda: self._runtime.ensure_image(
                    image,
                    on_progress=on_progress,
                    stall_timeout=self._stall_timeout,
                    always_pull=pull,
                ),
                interrupt,
            )
        except PullInterrupted as exc:
            abandoned.set()
            log.info("%s", exc)
            raise
        except ContainerError as exc:
            log.error("image %s is not available: %s", image, exc)
            reporter.failed(str(exc), timed_out=exc.phase == "pull_timeout")
            raise
        reporter.completed(pulled=result.pulled, warning=result.warning)
        alerts.pulled(
            names,
            pulled=result.pulled,
            keys=reporter.progress.keys(),
            warning=result.warning,
        )
        return result.image_id
