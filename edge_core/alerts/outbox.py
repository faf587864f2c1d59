"""Alert calls sent in order on one background thread, so nobody waits on REST.

A driver launch must never be slowed by the backend: a pull thread, a
launch thread or the daemon loop hands its alert call to the outbox and
goes on. One worker thread sends the calls in the order they were made. A
create returns a local ``AlertHandle`` at once; the backend uuid is filled
in when the POST answers, and the later calls of that handle wait behind
it in the queue.

Progress updates are throttled per alert: at most one unforced update per
``interval`` seconds. A throttled update is not lost: it waits, and a newer
one replaces it (callers send the full merged metadata every time, so the
latest wins). Forced updates (phase changes) go at once.

While the backend is unavailable the queue keeps its calls and the worker
retries the oldest one with capped exponential backoff. The queue is
bounded: when it is full, pending progress updates go first, then phase
updates, and the lifecycle calls (create, failure, resolve, queued reads)
only when nothing else is left. A call the backend refuses for good (4xx)
is logged once and dropped. Order is kept per card: a call that fails
while other cards wait goes to the back with the rest of its card, and
one the backend keeps failing while it answers the others is given up.

It decides nothing about what an alert says; ``book`` does.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_core.backoff import MAX_EXPONENT
from edge_core.errors import (
    BackendUnavailable,
    EdgeCoreError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from edge_core.logsetup import format_exception_line

log = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 1000
# A call the backend keeps failing while it answers the others is given up
# after this many such failures (a lasting outage keeps every call).
LONE_FAILURES_LIMIT = 5
_KNOWN_LIMIT = 4096


class AlertApi(Protocol):
    """The three REST calls the outbox sends (``CloudClient`` has them)."""

    def create_alert(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...

    def update_alert(
        self, alert_uuid: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def resolve_alert(self, alert_uuid: str) -> dict[str, Any]: ...


class Priority(enum.IntEnum):
    """Which calls a full queue gives up first (lowest first)."""

    PROGRESS = 0
    PHASE = 1
    LIFECYCLE = 2


class _State(enum.Enum):
    QUEUED = "queued"
    CREATED = "created"
    DROPPED = "dropped"
    CANCELLED = "cancelled"


class AlertHandle:
    """A local stand-in for one backend alert.

    ``uuid`` is None until the create has been answered; ``dropped`` is
    True when the create was refused or given up, so its later calls are
    skipped.
    """

    def __init__(self, label: str, *, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self._uuid: str | None = None
        self._state = _State.QUEUED
        self._closing = False

    @property
    def uuid(self) -> str | None:
        """The backend uuid once the create was answered."""
        return self._uuid

    @property
    def dropped(self) -> bool:
        """True when this alert will never exist on the backend."""
        return self._state in (_State.DROPPED, _State.CANCELLED)

    def __repr__(self) -> str:
        return f"AlertHandle({self.label!r}, uuid={self._uuid!r})"


class _Kind(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    RESOLVE = "resolve"
    CALL = "call"


@dataclass(eq=False)
class _Item:
    """One queued call."""

    kind: _Kind
    label: str
    priority: Priority
    handle: AlertHandle | None = None
    body: dict[str, Any] = field(default_factory=dict)
    fn: Callable[[], Any] | None = None
    recover: Callable[[], str | None] | None = None
    attempts: int = 0
    # Temporary failures while the backend answered other calls, and the
    # count of answered calls at the last failure.
    lone_failures: int = 0
    seen_successes: int = -1

    @property
    def key(self) -> object:
        """Calls with one key keep their order (one card; one labelled call)."""
        return self.handle if self.handle is not None else self.label


@dataclass(eq=False)
class _Deferred:
    """A throttled update and when it may go."""

    due: float
    item: _Item


class AlertOutbox:
    """Sends alert calls in order on one worker thread; never blocks callers.

    ``retry_initial`` and ``retry_max`` bound the backoff while the backend
    is unavailable; ``max_items`` bounds the queue; ``clock`` (monotonic
    seconds) times the throttle and the backoff, so tests can move it by
    hand and call ``wake``. Thread-safe.
    """

    def __init__(
        self,
        api: AlertApi,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        max_items: int = DEFAULT_MAX_ITEMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._retry_initial = max(0.0, retry_initial)
        self._retry_max = max(self._retry_initial, retry_max)
        self._max_items = max(1, max_items)
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._pending: dict[AlertHandle, _Item] = {}
        self._deferred: dict[AlertHandle, _Deferred] = {}
        self._last_sent: dict[AlertHandle, float] = {}
        self._in_flight: _Item | None = None
        self._retry_at = 0.0
        self._failures = 0
        self._successes = 0
        self._overflowing = False
        self._stopping = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        # Alert uuids already seen, so a deduped create is not announced again.
        self._known: dict[str, None] = {}

    # -- what callers hand in -------------------------------------------------

    def create(
        self,
        payload: Mapping[str, Any],
        *,
        label: str,
        recover: Callable[[], str | None] | None = None,
        quiet: bool = False,
    ) -> AlertHandle:
        """Queue ``POST /alerts``; the handle's uuid is set when it answers.

        ``recover``, when given, is called before a create is sent again
        after a temporary failure: it returns the uuid of the alert if the
        first POST did reach the backend, so no second card is made.
        ``quiet`` logs the raise and resolve at DEBUG, for cards whose
        story the caller already tells in its own log lines.
        """
        handle = AlertHandle(label, quiet=quiet)
        item = _Item(
            _Kind.CREATE,
            f"create {label}",
            Priority.LIFECYCLE,
            handle=handle,
            body=dict(payload),
            recover=recover,
        )
        with self._cond:
            if not self._accepting(item):
                handle._state = _State.DROPPED
                return handle
            self._put(item)
        return handle

    def update(
        self,
        handle: AlertHandle,
        fields: Mapping[str, Any],
        *,
        force: bool = False,
        interval: float = 0.0,
    ) -> None:
        """Queue ``PUT /alerts/{uuid}`` with ``fields``, throttled unless forced.

        An unforced update within ``interval`` seconds of the last one sent
        for this alert waits; a newer unforced update replaces a waiting
        one, and a forced update takes its place.
        """
        priority = Priority.PHASE if force else Priority.PROGRESS
        item = _Item(
            _Kind.UPDATE, f"update {handle.label}", priority, handle, dict(fields)
        )
        with self._cond:
            if handle.dropped or handle._closing or not self._accepting(item):
                return
            if force:
                self._put_forced(handle, item)
            else:
                self._put_throttled(handle, item, interval)

    def resolve(self, handle: AlertHandle, *, discard: bool = False) -> None:
        """Queue ``POST /alerts/{uuid}/resolve``; later updates are ignored.

        With ``discard`` an alert whose create has not been sent yet is
        never sent at all: there is nothing to show for it.
        """
        with self._cond:
            if handle.dropped or handle._closing:
                return
            handle._closing = True
            if discard and self._cancel(handle):
                return
            item = _Item(_Kind.RESOLVE, f"resolve {handle.label}", Priority.LIFECYCLE)
            item.handle = handle
            if not self._accepting(item):
                return
            self._pending.pop(handle, None)
            deferred = self._deferred.pop(handle, None)
            if deferred is not None:
                self._put(deferred.item)
            self._put(item)

    def call(self, fn: Callable[[], Any], *, label: str) -> None:
        """Queue a call of ``fn`` (for example a read then resolves) in order.

        ``fn`` runs on the worker thread; ``BackendUnavailable`` makes it run
        again later, a permanent error drops it.
        """
        item = _Item(_Kind.CALL, label, Priority.LIFECYCLE, fn=fn)
        with self._cond:
            if self._accepting(item):
                self._put(item)

    # -- control --------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (the first queued call also does)."""
        with self._cond:
            self._start_locked()

    def wake(self) -> None:
        """Look at the queue again now (after a test moved the clock)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Calls not yet answered: queued, throttled and in flight."""
        with self._cond:
            return self._count_locked()

    def flush(self, timeout: float) -> bool:
        """Send throttled updates now and wait until everything was answered.

        Returns False when calls are still unanswered after ``timeout``
        seconds (the backend is away or slow). Never needed for correctness;
        for a caller that is about to exit or restart.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._release_all()
            while self._count_locked():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self, timeout: float) -> int:
        """Send what can be sent within ``timeout`` seconds, then stop.

        Returns within ``timeout`` (a call hanging on the network is left
        behind on its daemon thread) with the number of calls not sent.
        """
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._release_all()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout))
        with self._cond:
            left = self._count_locked()
        if left:
            log.info("stopped with %d alert calls not sent", left)
        return left

    # -- the queue (callers hold the lock) ------------------------------------

    def _accepting(self, item: _Item) -> bool:
        if self._stopping:
            log.debug("outbox stopped; not sending %s", item.label)
            return False
        self._start_locked()
        return True

    def _start_locked(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(
                target=self._run, name="alert-outbox", daemon=True
            )
            self._thread.start()

    def _count_locked(self) -> int:
        return (
            len(self._queue)
            + len(self._deferred)
            + (1 if self._in_flight is not None else 0)
        )

    def _put_throttled(self, handle: AlertHandle, item: _Item, interval: float) -> None:
        queued = self._pending.get(handle)
        if queued is not None:
            queued.body = item.body
            return
        deferred = self._deferred.get(handle)
        if deferred is not None:
            deferred.item.body = item.body
            return
        last = self._last_sent.get(handle)
        if last is not None and self._clock() - last < interval:
            self._deferred[handle] = _Deferred(last + interval, item)
            self._cond.notify_all()
            return
        self._pending[handle] = item
        self._put(item)

    def _put_forced(self, handle: AlertHandle, item: _Item) -> None:
        deferred = self._deferred.pop(handle, None)
        if deferred is not None:
            item.body = {**deferred.item.body, **item.body}
        queued = self._pending.pop(handle, None)
        if queued is not None and queued in self._queue:
            # The queued progress update becomes this one, in its place.
            queued.body = {**queued.body, **item.body}
            queued.priority = Priority.PHASE
            return
        self._put(item)

    def _cancel(self, handle: AlertHandle) -> bool:
        """Forget every call of ``handle`` if its create was not sent yet."""
        if handle._state is not _State.QUEUED or (
            self._in_flight is not None and self._in_flight.handle is handle
        ):
            return False
        self._queue = deque(item for item in self._queue if item.handle is not handle)
        self._pending.pop(handle, None)
        self._deferred.pop(handle, None)
        handle._state = _State.CANCELLED
        log.debug("%s: never sent, nothing to resolve", handle.label)
        self._cond.notify_all()
        return True

    def _put(self, item: _Item) -> None:
        if len(self._queue) >= self._max_items and not self._make_room(item):
            return
        self._queue.append(item)
        self._cond.notify_all()

    def _make_room(self, item: _Item) -> bool:
        """Drop the oldest least important call; False when it is ``item``."""
        victim = min(self._queue, key=lambda queued: queued.priority)
        if not self._overflowing:
            log.warning(
                "alert queue full (%d calls; the backend has been away for a "
                "while): dropping progress updates first",
                self._max_items,
            )
            self._overflowing = True
        if item.priority < victim.priority:
            log.debug("alert queue full: not queueing %s", item.label)
            if item.handle is not None and item.kind is _Kind.CREATE:
                item.handle._state = _State.DROPPED
            return False
        self._queue.remove(victim)
        log.debug("alert queue full: dropped %s", victim.label)
        if victim.handle is not None:
            if self._pending.get(victim.handle) is victim:
                del self._pending[victim.handle]
            if victim.kind is _Kind.CREATE:
                victim.handle._state = _State.DROPPED
        return True

    def _release_all(self) -> None:
        """Queue every throttled update now (flush and stop)."""
        for handle, deferred in list(self._deferred.items()):
            del self._deferred[handle]
            self._pending[handle] = deferred.item
            self._put(deferred.item)

    def _release_due(self, now: float) -> float | None:
        """Queue the throttled updates that are due; seconds to the next one."""
        soonest: float | None = None
        for handle, deferred in list(self._deferred.items()):
            if deferred.due <= now:
                del self._deferred[handle]
                self._pending[handle] = deferred.item
                self._put(deferred.item)
            elif soonest is None or deferred.due - now < soonest:
                soonest = deferred.due - now
        return soonest

    # -- the worker -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                self._send(item)
            finally:
                with self._cond:
                    self._in_flight = None
                    self._cond.notify_all()

    def _next(self) -> _Item | None:
        """The next call to send, waiting as long as needed; None to stop."""
        with self._cond:
            while True:
                now = self._clock()
                wait = self._release_due(now)
                if self._stopping and (
                    not self._queue or time.monotonic() >= self._deadline
                ):
                    return None
                if self._queue:
                    if now >= self._retry_at:
                        item = self._queue.popleft()
                        handle = item.handle
                        if handle is not None and self._pending.get(handle) is item:
                            del self._pending[handle]
                        self._in_flight = item
                        return item
                    retry = self._retry_at - now
                    wait = retry if wait is None else min(wait, retry)
                if self._stopping:
                    left = self._deadline - time.monotonic()
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def _send(self, item: _Item) -> None:
        """Carry out one call; requeue it at the head when the backend is away."""
        handle = item.handle
        if handle is not None and item.kind is not _Kind.CREATE and not handle.uuid:
            log.debug("skipping %s: the alert was never created", item.label)
            return
        item.attempts += 1
        try:
            self._perform(item)
            with self._cond:
                self._successes += 1
        except TemporaryError as exc:
            self._held_back(item, exc)
            return
        except NotFoundError as exc:
            log.debug("%s: the backend no longer has it (%s); dropped", item.label, exc)
            self._dropped(item)
        except PermanentError as exc:
            log.warning("%s was refused and is dropped: %s", item.label, exc)
            self._dropped(item)
        except EdgeCoreError as exc:
            log.warning("%s failed and is dropped: %s", item.label, exc)
            self._dropped(item)
        except Exception:
            # One bad call must not end the worker that sends all the others.
            log.exception("%s failed unexpectedly and is dropped", item.label)
            self._dropped(item)
        self._recovered()

    def _perform(self, item: _Item) -> None:
        handle = item.handle
        if item.kind is _Kind.CALL:
            assert item.fn is not None
            item.fn()
            log.debug("%s done", item.label)
            return
        assert handle is not None
        if item.kind is _Kind.CREATE:
            self._create(item, handle)
            return
        assert handle.uuid is not None
        if item.kind is _Kind.UPDATE:
            with self._cond:
                self._last_sent[handle] = self._clock()
            self._api.update_alert(handle.uuid, item.body)
            log.debug("%s: %s", item.label, sorted(item.body))
            return
        self._api.resolve_alert(handle.uuid)
        with self._cond:
            self._last_sent.pop(handle, None)
        level = logging.DEBUG if handle.quiet else logging.INFO
        log.log(level, "resolved alert %s (%s)", handle.label, handle.uuid)

    def _create(self, item: _Item, handle: AlertHandle) -> None:
        uuid: str | None = None
        if item.attempts > 1 and item.recover is not None:
            uuid = item.recover()
            if uuid:
                log.debug("%s had reached the backend as %s", item.label, uuid)
        if not uuid:
            answer = self._api.create_alert(item.body)
            uuid = str(answer.get("uuid") or "") or None
        if uuid is None:
            raise PermanentError(f"{item.label}: the backend's answer has no uuid")
        with self._cond:
            handle._uuid = uuid
            handle._state = _State.CREATED
            new = uuid not in self._known
            self._known[uuid] = None
            while len(self._known) > _KNOWN_LIMIT:
                del self._known[next(iter(self._known))]
        if new:
            level = logging.DEBUG if handle.quiet else logging.INFO
            log.log(level, "raised alert %s (%s)", handle.label, uuid)
        else:
            # The backend deduped it onto an alert raised before.
            log.debug("alert %s is still active (%s)", handle.label, uuid)

    def _dropped(self, item: _Item) -> None:
        with self._cond:
            self._dropped_locked(item)

    def _dropped_locked(self, item: _Item) -> None:
        if item.kind is _Kind.CREATE and item.handle is not None:
            item.handle._state = _State.DROPPED

    def _held_back(self, item: _Item, exc: TemporaryError) -> None:
        """Queue ``item`` again and wait before trying the queue again.

        It goes back in front, unless other cards wait: then it and the
        later calls of its own card go to the back, so one card the
        backend cannot serve holds up no other. A call that keeps failing
        while the backend answers the others is given up.
        """
        with self._cond:
            self._failures += 1
            delay = self._delay(exc)
            self._retry_at = self._clock() + delay
            if 0 <= item.seen_successes < self._successes:
                item.lone_failures += 1
            item.seen_successes = self._successes
            given_up = item.lone_failures >= LONE_FAILURES_LIMIT
            if given_up:
                self._dropped_locked(item)
            elif not self._superseded(item):
                self._requeue(item)
            queued = len(self._queue)
        if given_up:
            log.warning(
                "%s given up after %d attempts: the backend keeps failing it "
                "while it answers other alert calls (%s)",
                item.label,
                item.attempts,
                format_exception_line(exc),
            )
        elif self._failures == 1:
            log.info(
                "alert calls held back (%d queued): %s; retrying in %.1f s",
                queued,
                format_exception_line(exc),
                delay,
            )
        else:
            log.debug("%s held back again: %s", item.label, exc)

    def _requeue(self, item: _Item) -> None:
        """Put a failed ``item`` back (callers hold the lock)."""
        if item.handle is not None and item.priority is Priority.PROGRESS:
            self._pending.setdefault(item.handle, item)
        if all(other.key == item.key for other in self._queue):
            self._queue.appendleft(item)
            return
        own = [other for other in self._queue if other.key == item.key]
        self._queue = deque(other for other in self._queue if other.key != item.key)
        self._queue.extend([item, *own])

    def _superseded(self, item: _Item) -> bool:
        """Whether ``item`` need not be tried again: its alert is gone, or a
        newer progress update (with the whole metadata) is already queued."""
        handle = item.handle
        if handle is None:
            return False
        if handle.dropped:
            return True
        newer = handle in self._pending or handle in self._deferred
        return item.priority is Priority.PROGRESS and newer

    def _delay(self, exc: TemporaryError) -> float:
        if isinstance(exc, BackendUnavailable) and exc.retry_after is not None:
            return min(self._retry_max, max(0.0, exc.retry_after))
        exponent = min(self._failures - 1, MAX_EXPONENT)
        capped = min(self._retry_max, self._retry_initial * 2.0**exponent)
        # Equal jitter: edges that lost the backend together do not retry
        # in lockstep.
        return capped / 2 + random.uniform(0.0, capped / 2)

    def _recovered(self) -> None:
        with self._cond:
            failures, self._failures = self._failures, 0
            self._retry_at = 0.0
            if len(self._queue) < self._max_items // 2:
                self._overflowing = False
        if failures:
            log.info("alert calls are sent again after %d failed attempts", failures)
