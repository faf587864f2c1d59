"""The alert lifecycle the rest of the edge core uses (protocol.md 1.8).

``AlertBook`` is the one way to raise, update and resolve alerts. It
builds the payloads (``payloads``), hands every call to the ``outbox`` and
returns at once: nothing here waits on the backend, so a hanging or
failing backend never slows a driver launch. The objects it returns
(``StartingAlert``, ``RestartAlert``) carry one card through its phases
and keep its merged metadata, so every update sends the whole of it.

It decides nothing about drivers; the driver pass and the daemon say
when a driver starts, fails, loops or stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from edge_core.alerts import payloads
from edge_core.alerts.outbox import AlertApi, AlertHandle, AlertOutbox
from edge_core.alerts.payloads import (
    CONTAINER_RUNNING,
    DRIVER_HEALTH,
    DRIVER_RESTART_LOOP,
    DRIVER_START_FAILURE,
    DRIVER_STARTING,
    PULL_PHASES,
    PULL_STARTED,
    STARTING_DESCRIPTION,
    Redact,
)
from edge_core.config.settings import Settings
from edge_core.errors import NotFoundError, PermanentError
from edge_core.logsetup import redact as redact_secrets

log = logging.getLogger(__name__)

_DESCRIPTION_LIMIT = 1000


class AlertCloud(AlertApi, Protocol):
    """The REST calls the book needs (``CloudClient`` has them)."""

    def list_active_alerts(self, twin_uuid: str) -> list[dict[str, Any]]: ...

    def get_alert(self, alert_uuid: str) -> dict[str, Any]: ...


class AlertBook:
    """Raises, updates and resolves alerts without ever blocking the caller.

    ``cloud`` is used for the reads (R11, R12) that run inside queued calls
    and should be the client ``outbox`` sends with; ``workspace_id`` is
    ``CYBERWAVE_WORKSPACE_ID``; ``update_interval`` throttles the progress
    updates of a starting card; ``clock`` gives wall-clock epochs for
    ``started_at`` and ``failed_at``; ``redact`` masks secrets in any text
    that reaches the backend. Thread-safe.
    """

    def __init__(
        self,
        cloud: AlertCloud,
        outbox: AlertOutbox,
        *,
        workspace_id: str | None,
        troubleshooting_url: str,
        update_interval: float,
        clock: Callable[[], float] = time.time,
        redact: Redact = redact_secrets,
    ) -> None:
        self._cloud = cloud
        self.outbox = outbox
        self._workspace_id = workspace_id or None
        self._troubleshooting_url = troubleshooting_url
        self.update_interval = update_interval
        self._clock = clock
        self._redact = redact
        self._lock = threading.Lock()
        self._open: set[AlertHandle] = set()

    @classmethod
    def create(
        cls,
        cloud: AlertCloud,
        settings: Settings,
        *,
        redact: Redact = redact_secrets,
    ) -> AlertBook:
        """The book and its outbox, configured from ``settings``."""
        outbox = AlertOutbox(
            cloud,
            retry_initial=settings.backoff_initial,
            retry_max=settings.backoff_max,
        )
        return cls(
            cloud,
            outbox,
            workspace_id=settings.workspace_id,
            troubleshooting_url=settings.driver_troubleshooting_url,
            update_interval=settings.driver_starting_alert_update_interval,
            redact=redact,
        )

    # -- driver_starting ------------------------------------------------------

    def starting(
        self,
        *,
        twin_uuid: str,
        environment_uuid: str | None,
        image: str,
        container_name: str,
        service_name: str | None,
        phase: str = PULL_STARTED,
    ) -> StartingAlert:
        """Open the ``driver_starting`` card of one launch attempt (force=true).

        ``phase`` is where the card begins: ``pull_started`` when the image
        pull is ahead, ``starting_container`` for a launch that needs none.
        """
        started_at = self._clock()
        metadata = self._redacted(
            payloads.starting_metadata(
                image=image,
                container_name=container_name,
                service_name=service_name,
                started_at=started_at,
                phase=phase,
            )
        )
        body = payloads.create_payload(
            alert_type=DRIVER_STARTING,
            name=payloads.starting_title(service_name),
            description=STARTING_DESCRIPTION,
            severity="info",
            twin_uuid=twin_uuid,
            environment_uuid=environment_uuid,
            workspace_id=self._workspace_id,
            metadata=metadata,
        )

        def recover() -> str | None:
            # A POST that timed out may still have made the card; find it by
            # its start time instead of making a second one.
            for alert in self._cloud.list_active_alerts(twin_uuid):
                found = alert.get("metadata")
                if (
                    alert.get("alert_type") == DRIVER_STARTING
                    and isinstance(found, Mapping)
                    and found.get("started_at") == started_at
                    and found.get("container_name") == container_name
                ):
                    return str(alert.get("uuid") or "") or None
            return None

        # The driver pass logs the launch itself; the card's own raise and
        # resolve are the reason behind it, so DEBUG.
        handle = self.outbox.create(
            body,
            label=f"{DRIVER_STARTING} of {container_name}",
            recover=recover,
            quiet=True,
        )
        with self._lock:
            self._open.add(handle)
        return StartingAlert(self, handle, metadata)

    def _closed(self, handle: AlertHandle) -> None:
        with self._lock:
            self._open.discard(handle)

    def _is_open(self, alert_uuid: str) -> bool:
        with self._lock:
            return any(handle.uuid == alert_uuid for handle in self._open)

    # -- one-shot alerts ------------------------------------------------------

    def raise_alert(
        self,
        *,
        alert_type: str,
        twin_uuid: str,
        environment_uuid: str | None,
        title: str | None = None,
        description: str | None = None,
        severity: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        restarts: int | None = None,
        window: float | None = None,
    ) -> AlertHandle:
        """Raise an alert the backend dedupes (no ``force``).

        Title, severity and text default to protocol.md 1.8 for the type.
        A ``driver_restart_loop`` without a description gets one naming the
        restart count, the window (``restarts``/``window``, else the
        metadata's ``restarts``/``window_seconds``) and the troubleshooting
        URL.
        """
        meta = dict(metadata or {})
        name = title or payloads.default_title(alert_type)
        text = description or self._default_description(
            alert_type, name, meta, restarts=restarts, window=window
        )
        body = payloads.create_payload(
            alert_type=alert_type,
            name=name,
            description=payloads.clip(self._redact(text), _DESCRIPTION_LIMIT),
            severity=severity or payloads.default_severity(alert_type),
            twin_uuid=twin_uuid,
            environment_uuid=environment_uuid,
            workspace_id=self._workspace_id,
            metadata=self._redacted(meta),
        )
        return self.outbox.create(body, label=f"{alert_type} of twin {twin_uuid}")

    def _default_description(
        self,
        alert_type: str,
        title: str,
        metadata: Mapping[str, Any],
        *,
        restarts: int | None,
        window: float | None,
    ) -> str:
        container = metadata.get("container_name")
        container = container if isinstance(container, str) else None
        if alert_type == DRIVER_RESTART_LOOP:
            count = restarts if restarts is not None else metadata.get("restarts")
            span = window if window is not None else metadata.get("window_seconds")
            return payloads.restart_loop_description(
                container_name=container,
                restarts=count if isinstance(count, int) else None,
                window=float(span) if isinstance(span, int | float) else None,
                troubleshooting_url=self._troubleshooting_url,
            )
        if alert_type == DRIVER_HEALTH:
            state = metadata.get("state")
            return payloads.health_description(
                container, state if isinstance(state, str) else None
            )
        if alert_type == DRIVER_START_FAILURE:
            return payloads.start_failure_description(title, None)
        return title

    def _redacted(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """``metadata`` with every text value passed through the redaction."""
        return {
            key: self._redact(value) if isinstance(value, str) else value
            for key, value in metadata.items()
        }

    # -- resolving by type ----------------------------------------------------

    def resolve_active(self, twin_uuid: str, alert_types: Iterable[str]) -> None:
        """Resolve the twin's ACTIVE alerts of these types (R11, then R14).

        Queued behind every call made before it, so it never resolves a
        card raised after it; a card this book still carries is left alone.
        """
        types = frozenset(alert_types)
        if not types:
            return
        label = f"resolve {', '.join(sorted(types))} of twin {twin_uuid}"
        self.outbox.call(lambda: self._resolve_listed(twin_uuid, types), label=label)

    def _resolve_listed(self, twin_uuid: str, types: frozenset[str]) -> None:
        for alert in self._cloud.list_active_alerts(twin_uuid):
            uuid = alert.get("uuid")
            if (
                not isinstance(uuid, str)
                or not uuid
                or alert.get("alert_type") not in types
                or alert.get("status", "active") != "active"
                or self._is_open(uuid)
            ):
                continue
            try:
                self._cloud.resolve_alert(uuid)
            except NotFoundError:
                continue
            log.info(
                "resolved %s alert %s of twin %s",
                alert.get("alert_type"),
                uuid,
                twin_uuid,
            )

    # -- edge_core_restart ----------------------------------------------------

    def restart_alert(self, alert_uuid: str) -> RestartAlert:
        """The backend's ``edge_core_restart`` card for one restart command."""
        return RestartAlert(self, alert_uuid)

    # -- lifecycle ------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every queued call was answered."""
        return self.outbox.flush(timeout)

    def stop(self, timeout: float) -> int:
        """Send what can be sent within ``timeout`` s; the number left."""
        return self.outbox.stop(timeout)


class StartingAlert:
    """One ``driver_starting`` card, from pull to running or failure.

    Every method returns at once. Once the card is resolved (``running``,
    ``failed`` or ``discard``), further calls do nothing.
    """

    def __init__(
        self, book: AlertBook, handle: AlertHandle, metadata: Mapping[str, Any]
    ) -> None:
        self._book = book
        self._handle = handle
        self._metadata: dict[str, Any] = dict(metadata)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def handle(self) -> AlertHandle:
        """The outbox handle (its ``uuid`` once the backend answered)."""
        return self._handle

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the merged metadata as last sent or queued."""
        with self._lock:
            return dict(self._metadata)

    @property
    def closed(self) -> bool:
        """True once the card was resolved or discarded."""
        with self._lock:
            return self._closed

    def progress(self, pull_keys: Mapping[str, Any]) -> None:
        """Merge pull-progress keys; throttled unless the phase changes.

        Ignored once the card has left the pull (a late event of a shared
        image must not move a card back).
        """
        with self._lock:
            if self._closed or self._metadata.get("phase") not in PULL_PHASES:
                return
            force = pull_keys.get("phase", self._metadata.get("phase")) != (
                self._metadata.get("phase")
            )
            self._send_locked(pull_keys, force=force)

    def phase(self, name: str, **extra: Any) -> None:
        """Move the card to phase ``name`` (always sent at once)."""
        with self._lock:
            if self._closed:
                return
            self._send_locked({**extra, "phase": name}, force=True)

    def running(self) -> None:
        """The container runs: phase ``container_running``, then resolve."""
        with self._lock:
            if self._closed:
                return
            self._send_locked({"phase": CONTAINER_RUNNING}, force=True)
            self._close_locked(discard=False)

    def failed(self, phase: str | None, detail: str) -> None:
        """The attempt failed in ``phase``: the failure patch, then resolve."""
        book = self._book
        with self._lock:
            if self._closed:
                return
            fields, patch = payloads.failure_patch(
                phase, detail, failed_at=book._clock(), redact=book._redact
            )
            self._metadata.update(patch)
            book.outbox.update(
                self._handle, {**fields, "metadata": dict(self._metadata)}, force=True
            )
            self._close_locked(discard=False)

    def discard(self) -> None:
        """Resolve quietly: nothing was launched after all (e.g. adopted)."""
        with self._lock:
            if self._closed:
                return
            self._close_locked(discard=True)

    def _send_locked(self, patch: Mapping[str, Any], *, force: bool) -> None:
        # Pull lines and image references may carry credentials.
        merged = {**self._metadata, **self._book._redacted(patch)}
        merged.update(payloads.derived_percentages(merged))
        if merged == self._metadata and not force:
            return
        self._metadata = merged
        self._book.outbox.update(
            self._handle,
            {"metadata": dict(merged)},
            force=force,
            interval=self._book.update_interval,
        )

    def _close_locked(self, *, discard: bool) -> None:
        self._closed = True
        self._book.outbox.resolve(self._handle, discard=discard)
        self._book._closed(self._handle)


class RestartAlert:
    """The ``edge_core_restart`` card of one restart (protocol.md 1.8, end).

    The card is read once (R12; a 404 means it is gone and every later
    step is skipped quietly), then each step PUTs the existing metadata
    with the step's keys and the terminal steps resolve it. Timestamps are
    taken when a step is called, not when it is sent.
    """

    def __init__(self, book: AlertBook, alert_uuid: str) -> None:
        self._book = book
        self.alert_uuid = alert_uuid
        self._metadata: dict[str, Any] | None = None
        self._gone = False
        self._done = False
        self._lock = threading.Lock()

    def in_progress(self) -> None:
        """The restart has begun."""
        now = self._book._clock()
        self._queue(lambda md: payloads.restart_in_progress(md, now), final=False)

    def completed(self) -> None:
        """The restart finished; the card is resolved."""
        now = self._book._clock()
        self._queue(lambda md: payloads.restart_completed(md, now), final=True)

    def failed(self, error: str) -> None:
        """The restart raised ``error``; the card is resolved."""
        now, redact = self._book._clock(), self._book._redact
        self._queue(
            lambda md: payloads.restart_failed(md, error, now, redact=redact),
            final=True,
        )

    def concurrent(self) -> None:
        """Another restart was already running; the card is resolved."""
        now = self._book._clock()
        self._queue(lambda md: payloads.restart_concurrent(md, now), final=True)

    def _queue(
        self, build: Callable[[Mapping[str, Any]], dict[str, Any]], *, final: bool
    ) -> None:
        with self._lock:
            if self._done:
                return
            self._done = final
        self._book.outbox.call(
            lambda: self._step(build, final),
            label=f"edge_core_restart alert {self.alert_uuid}",
        )

    def _step(
        self, build: Callable[[Mapping[str, Any]], dict[str, Any]], final: bool
    ) -> None:
        """On the outbox thread: read once, PUT the merged metadata, resolve."""
        cloud = self._book._cloud
        if self._gone:
            return
        if self._metadata is None:
            try:
                alert = cloud.get_alert(self.alert_uuid)
            except NotFoundError:
                log.debug("edge_core_restart alert %s is gone", self.alert_uuid)
                self._gone = True
                return
            found = alert.get("metadata")
            self._metadata = dict(found) if isinstance(found, Mapping) else {}
        metadata = build(self._metadata)
        try:
            cloud.update_alert(self.alert_uuid, {"metadata": metadata})
        except NotFoundError:
            log.debug("edge_core_restart alert %s is gone", self.alert_uuid)
            self._gone = True
            return
        except PermanentError as exc:
            if not final:
                raise
            # The restart is over whatever the backend thinks of the
            # metadata: the card must not stay open for good.
            log.warning(
                "edge_core_restart alert %s: the backend refused the update "
                "(%s); resolving it anyway",
                self.alert_uuid,
                exc,
            )
        else:
            self._metadata = metadata
        if final:
            cloud.resolve_alert(self.alert_uuid)
