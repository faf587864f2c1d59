"""The alerts of one driver pass: starting cards and start failures.

A driver pass opens one ``driver_starting`` card per launch attempt,
walks it through the phases of protocol.md 1.8 and resolves it, raises
``driver_start_failure`` under the title that says what went wrong (at
most once per twin per pass), and after a twin's drivers came up resolves
its earlier start failures. ``LaunchAlerts`` keeps that bookkeeping out
of the pass: the pass says what happened to which container, this says
it to the backend. Without a book every method does nothing.

It never waits on the backend (the book's outbox sends) and never looks
at Docker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from edge_core.alerts.book import AlertBook, StartingAlert
from edge_core.alerts.payloads import (
    CONTAINER_CREATED,
    DEFAULT_FAILURE_PHASE,
    DRIVER_START_FAILURE,
    DRIVER_STARTING,
    PULL_COMPLETE,
    PULL_SKIPPED,
    PULL_STARTED,
    PULL_STREAM_FINISHED,
    STARTING_CONTAINER,
)
from edge_core.model.failures import DriverFailure
from edge_core.model.spec import ContainerSpec

log = logging.getLogger(__name__)


class LaunchAlerts:
    """The alert bookkeeping of one driver pass; thread-safe.

    ``environments`` maps a twin uuid to its ``environment_uuid`` as the
    twin listing gave it (protocol.md 7b item 19: never an extra GET).
    """

    def __init__(
        self, book: AlertBook | None, environments: Mapping[str, str | None]
    ) -> None:
        self._book = book
        self._environments = dict(environments)
        self._lock = threading.Lock()
        self._cleaned: set[str] = set()
        self._cards: dict[str, StartingAlert] = {}
        self._failed: set[str] = set()
        self._succeeded: set[str] = set()

    # -- starting cards -------------------------------------------------------

    def open(self, spec: ContainerSpec, *, phase: str = PULL_STARTED) -> None:
        """Open the starting card of ``spec``, after clearing its twin's stale
        cards (once per twin per pass, queued before the new card)."""
        book = self._book
        if book is None:
            return
        with self._lock:
            if spec.name in self._cards:
                return
            if spec.twin_uuid not in self._cleaned:
                self._cleaned.add(spec.twin_uuid)
                book.resolve_active(spec.twin_uuid, [DRIVER_STARTING])
            self._cards[spec.name] = book.starting(
                twin_uuid=spec.twin_uuid,
                environment_uuid=self._environments.get(spec.twin_uuid),
                image=spec.image,
                container_name=spec.name,
                service_name=spec.service,
                phase=phase,
            )

    def _card(self, name: str) -> StartingAlert | None:
        with self._lock:
            return self._cards.get(name)

    def has_cards(self, names: Iterable[str]) -> bool:
        """Whether any of these containers has an open card to feed."""
        with self._lock:
            return any(name in self._cards for name in names)

    def progress(self, names: Iterable[str], keys: Mapping[str, Any]) -> None:
        """Pull progress of the image these containers wait for (throttled)."""
        for name in names:
            card = self._card(name)
            if card is not None:
                card.progress(keys)

    def pulled(
        self,
        names: Iterable[str],
        *,
        pulled: bool,
        keys: Mapping[str, Any],
        warning: str | None = None,
    ) -> None:
        """The image is present: ``pull_complete`` then ``pull_stream_finished``
        after a pull, ``pull_skipped`` when nothing was pulled."""
        for name in names:
            card = self._card(name)
            if card is None:
                continue
            if pulled:
                card.progress({**keys, "phase": PULL_COMPLETE})
                card.phase(PULL_STREAM_FINISHED)
            elif warning:
                card.phase(PULL_SKIPPED, last_error=warning)
            else:
                card.phase(PULL_SKIPPED)

    def launching(self, spec: ContainerSpec) -> None:
        """The container is about to be (re)created: ``starting_container``.

        A launch nobody foresaw before the pull gets its card now.
        """
        card = self._card(spec.name)
        if card is None:
            self.open(spec, phase=STARTING_CONTAINER)
            return
        card.phase(STARTING_CONTAINER)

    def created(self, name: str) -> None:
        """The container exists: ``container_created``."""
        card = self._card(name)
        if card is not None:
            card.phase(CONTAINER_CREATED)

    def running(self, spec: ContainerSpec) -> None:
        """The container runs: the card is resolved."""
        card = self._card(spec.name)
        if card is not None:
            card.running()
        with self._lock:
            self._succeeded.add(spec.twin_uuid)

    def discard(self, name: str) -> None:
        """Nothing was launched for ``name`` after all (adopted, waiting)."""
        card = self._card(name)
        if card is not None:
            card.discard()

    def adopted_first(self, twin_uuid: str) -> None:
        """A running container of the twin was adopted for the first time."""
        with self._lock:
            self._succeeded.add(twin_uuid)

    # -- failures -------------------------------------------------------------

    def failed(
        self, spec: ContainerSpec, *, phase: str | None, detail: str, title: str
    ) -> None:
        """The launch of ``spec`` failed in ``phase``: the card shows the
        failure and is resolved, and the twin gets ``driver_start_failure``."""
        card = self._card(spec.name)
        if card is not None:
            card.failed(phase, detail)
        self.start_failure(spec.twin_uuid, title=title, reason=detail)

    def spec_failure(self, failure: DriverFailure) -> None:
        """A twin whose metadata cannot become a container."""
        self.start_failure(
            failure.twin_uuid, title=failure.title, reason=failure.reason
        )

    def start_failure(self, twin_uuid: str, *, title: str, reason: str) -> None:
        """Raise ``driver_start_failure`` for the twin, once per pass."""
        book = self._book
        with self._lock:
            if book is None or twin_uuid in self._failed:
                return
            self._failed.add(twin_uuid)
        book.raise_alert(
            alert_type=DRIVER_START_FAILURE,
            twin_uuid=twin_uuid,
            environment_uuid=self._environments.get(twin_uuid),
            title=title,
            description=reason,
        )

    # -- the end of the pass --------------------------------------------------

    def finish(self, error: BaseException | None = None) -> None:
        """Close what the pass left open and clear start failures that are over.

        A card still open is failed when the pass ended with ``error``, and
        discarded otherwise. Twins whose drivers came up with no failure in
        this pass get their active ``driver_start_failure`` alerts resolved.
        """
        book = self._book
        if book is None:
            return
        with self._lock:
            cards = list(self._cards.values())
            recovered = sorted(self._succeeded - self._failed)
        for card in cards:
            if card.closed:
                continue
            if error is not None:
                card.failed(DEFAULT_FAILURE_PHASE, f"the driver pass stopped: {error}")
            else:
                card.discard()
        for twin_uuid in recovered:
            book.resolve_active(twin_uuid, [DRIVER_START_FAILURE])
