"""Our containers as last seen, re-read only after the engine reports a change.

Listing our containers costs one inspect per container; at every loop
cycle that is most of an idle edge core's CPU. The engine's event stream
(filtered by this edge's fingerprint label) says when anything happened
to one of them, so the listing is re-read only after an event, when the
stream is not up, or when the cached listing is older than ``max_age``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_core.runtime.container import ContainerView
from edge_core.runtime.docker import DockerRuntime

log = logging.getLogger(__name__)

# How long to wait before opening the event stream again after it broke.
_REOPEN_SECONDS = 2.0


class ContainerWatch:
    """Caches ``list_managed`` between engine events about our containers.

    ``on_change`` gets each event's action (``die``, ``start`` ...) on the
    watch thread; it must only note it, never do work.
    """

    def __init__(
        self,
        runtime: DockerRuntime,
        fingerprint: str,
        *,
        max_age: float,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._fingerprint = fingerprint
        self._max_age = max_age
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        self._watching = False
        self._cached: list[ContainerView] | None = None
        self._cached_generation = -1
        self._cached_at = 0.0
        self._stream: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="docker-events", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a dead stream is fine
                log.debug("closing the Docker event stream failed", exc_info=True)

    def views(self) -> list[ContainerView]:
        """Our containers; from the cache when nothing can have changed."""
        with self._lock:
            generation = self._generation
            fresh = (
                self._watching
                and self._cached is not None
                and self._cached_generation == generation
                and self._clock() - self._cached_at < self._max_age
            )
            if fresh and self._cached is not None:
                return list(self._cached)
        # Read after taking the generation: an event during the listing
        # makes the next call read again.
        views = self._runtime.list_managed(self._fingerprint)
        with self._lock:
            self._cached = list(views)
            self._cached_generation = generation
            self._cached_at = self._clock()
        return views

    def invalidate(self) -> None:
        """Forget the cache (after the edge core changed containers itself)."""
        with self._lock:
            self._generation += 1

    def _changed(self, event: Any) -> None:
        with self._lock:
            self._generation += 1
        if self._on_change is not None:
            action = event.get("Action") if isinstance(event, dict) else None
            self._on_change(str(action or ""))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream = self._runtime.container_events(self._fingerprint)
                with self._lock:
                    self._watching = True
                    # Anything may have happened while nobody was watching.
                    self._generation += 1
                for event in self._stream:
                    if self._stop.is_set():
                        break
                    self._changed(event)
            except Exception as exc:  # any failure means: re-list
                if not self._stop.is_set():
                    log.debug("Docker event stream ended: %s", exc)
            with self._lock:
                self._watching = False
            self._stop.wait(_REOPEN_SECONDS)
