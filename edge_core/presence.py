"""The edge's presence in the cloud: registration and the discover keepalive.

Registration (``POST /api/v1/edges``) is an upsert by fingerprint; the
answer is kept whole in ``edge.json`` (0644). The keepalive thread posts
``/api/v1/edges/discover`` every 30 s so the backend does not show the
edge as "Standby". A failed keepalive is logged once per outage, not once
per attempt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from edge_core.config.files import atomic_write_json
from edge_core.errors import EdgeCoreError
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
