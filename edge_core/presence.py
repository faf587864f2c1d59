"""The edge's presence in the cloud: registration and the discover keepalive.

Registration (``POST /api/v1/edges``) is an upsert by fingerprint; the
answer is kept whole in ``edge.json`` (0644). The keepalive thread posts
``/api/v1/edges/discover`` every 30 s so the backend does not show the
edge as "Standby". A failed keepalive is logged once per outage, not once
per attempt.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from edge_core.backoff import Backoff
from edge_core.config.files import atomic_write_json
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    EdgeCoreError,
    PermanentError,
)
from edge_core.logsetup import format_exception_line

log = logging.getLogger(__name__)

EDGE_FILE = "edge.json"


class PresenceApi(Protocol):
    def register_edge(self, fingerprint: str) -> dict[str, Any]: ...

    def discover(
        self,
        *,
        fingerprint: str,
        hostname: str,
        platform: str,
        host_facts: Mapping[str, Any],
    ) -> dict[str, Any]: ...


def register(api: PresenceApi, config_dir: Path, fingerprint: str) -> dict[str, Any]:
    """Register the edge and write ``edge.json``; returns the Edge object."""
    edge = api.register_edge(fingerprint)
    log.info("registered edge %s (fingerprint %s)", edge.get("uuid"), fingerprint)
    path = config_dir / EDGE_FILE
    try:
        atomic_write_json(path, edge, mode=0o644)
    except OSError as exc:
        # edge.json is a copy for other tools; the edge works without it.
        log.warning(
            "could not write %s: %s; the previous copy is kept (free some space "
            "or fix permissions)",
            path,
            format_exception_line(exc),
        )
    return edge


class RegistrationApi(PresenceApi, Protocol):
    def check_token(self) -> Any: ...


class DiscoverKeepalive:
    """Posts the host facts every ``interval`` seconds in a background thread."""

    def __init__(
        self,
        api: PresenceApi,
        *,
        fingerprint: str,
        hostname: str,
        platform: str,
        host_facts: Callable[[], Mapping[str, Any]],
        interval: float,
    ) -> None:
        self._api = api
        self._fingerprint = fingerprint
        self._hostname = hostname
        self._platform = platform
        self._host_facts = host_facts
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="discover-keepalive", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def beat(self) -> bool:
        """One keepalive; True when the backend took it."""
        try:
            self._api.discover(
                fingerprint=self._fingerprint,
                hostname=self._hostname,
                platform=self._platform,
                host_facts=self._host_facts(),
            )
        except EdgeCoreError as exc:
            if not self._failing:
                log.warning(
                    "edge keepalive failed: %s; retrying every %.0f s",
                    exc,
                    self._interval,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("edge keepalive works again")
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:
                log.exception("edge keepalive crashed; retrying next interval")
            self._stop.wait(self._interval)


class BackendStatus:
    """Whether the backend answers: the last error and since when it has not.

    Registration and the environment downloads both report to it, so
    ``status`` has one answer however the outage showed.
    """

    def __init__(self) -> None:
        self.error: str | None = None
        self.since: float | None = None
        self.token_refused = False
        """The last failure was the backend refusing the token (401/403)."""

    @property
    def away(self) -> bool:
        return self.error is not None or self.since is not None

    def failed(self, exc: EdgeCoreError) -> bool:
        """Note a failure; True when it starts an outage."""
        first = not self.away
        self.error = str(exc)
        self.token_refused = isinstance(exc, AuthError)
        self.since = self.since or time.time()
        return first

    def answered(self) -> bool:
        """Note an answer; True when it ends an outage."""
        was_away = self.away
        self.error = self.since = None
        self.token_refused = False
        return was_away


class Attempt(enum.Enum):
    """What one call of ``Registration.attempt`` did."""

    NOT_DUE = "not due"
    FAILED = "failed"
    REGISTERED = "registered"


class Registration:
    """The token check and registration, retried with backoff, then the
    keepalive (protocol.md 5.1 steps 3 to 6, with the rules of 7b item 13).

    ``call`` runs one blocking backend call (the daemon runs it on a thread
    it can walk away from when asked to stop); ``keepalive`` makes the
    discover keepalive once the edge is registered.
    """

    def __init__(
        self,
        api: RegistrationApi,
        config_dir: Path,
        fingerprint: str,
        *,
        status: BackendStatus,
        backoff: Backoff,
        call: Callable[[Callable[[], Any]], Any],
        keepalive: Callable[[], DiscoverKeepalive],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._config_dir = config_dir
        self._fingerprint = fingerprint
        self._status = status
        self._backoff = backoff
        self._call = call
        self._make_keepalive = keepalive
        self._clock = clock
        self.edge: dict[str, Any] | None = None
        self._keepalive: DiscoverKeepalive | None = None

    @property
    def retry_due(self) -> float | None:
        """When the next attempt is due, while not registered."""
        if self.edge is not None or not self._backoff.due:
            return None
        return self._backoff.due

    def attempt(self) -> Attempt:
        """Check the token (after an outage) and register, when due."""
        if self.edge is not None:
            return Attempt.REGISTERED
        if self._clock() < self._backoff.due:
            return Attempt.NOT_DUE
        try:
            if self._status.away:
                self._call(self._api.check_token)
            self.edge = self._call(
                lambda: register(self._api, self._config_dir, self._fingerprint)
            )
        except PermanentError as exc:
            # A token rejected after boot is not fatal: drivers keep running
            # and a rotated token in credentials.json is picked up.
            self.failed(exc)
            return Attempt.FAILED
        except BackendUnavailable as exc:
            self.failed(exc)
            return Attempt.FAILED
        if self._status.answered():
            log.info("backend reachable again")
        self._backoff.reset()
        if self._keepalive is None:
            self._keepalive = self._make_keepalive()
            self._keepalive.start()
        return Attempt.REGISTERED

    def failed(self, exc: EdgeCoreError) -> None:
        """The backend did not answer or refused: wait, then try again."""
        delay = self._backoff.failed(self._clock())
        if self._status.failed(exc):
            log.warning(
                "backend unavailable: %s; waiting for it, retrying in %.1f s",
                exc,
                delay,
            )
        else:
            log.info("backend still unavailable (%s); next try in %.1f s", exc, delay)

    def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
