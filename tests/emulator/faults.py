"""Request recording and fault injection for the emulated backend.

``Recorder`` keeps every API request the emulator saw, so a test can
assert on what the edge core sent (never the token itself: only whether
one was present and accepted). ``FaultBook`` holds rules that make chosen
requests fail the ways a real network and backend fail: an error status,
a delay, a hang that never answers, or a dropped connection.

Neither decides what a request means; ``state`` does that.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    """One request as received (the Authorization value is never kept)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    auth: str
    body: Any
    timestamp: float
    status: int | None = None

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name``, if present."""
        values = self.query.get(name)
        return values[-1] if values else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for the control API."""
        return asdict(self)


class Recorder:
    """Thread-safe list of recorded requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def add(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        auth: str,
        body: Any,
    ) -> RecordedRequest:
        """Record one request and return the entry (its status is set later)."""
        kept = {
            name: ("<redacted>" if name.lower() == "authorization" else value)
            for name, value in headers.items()
        }
        item = RecordedRequest(
            method=method,
            path=path,
            query={key: list(values) for key, values in query.items()},
            headers=kept,
            auth=auth,
            body=body,
            timestamp=time.time(),
        )
        with self._lock:
            self._items.append(item)
        return item

    def find(
        self, method: str | None = None, path_regex: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests, oldest first, filtered by method and path regex."""
        pattern = re.compile(path_regex) if path_regex else None
        with self._lock:
            items = list(self._items)
        return [
            item
            for item in items
            if (method is None or item.method == method.upper())
            and (pattern is None or pattern.search(item.path))
        ]

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._items.clear()


@dataclass
class Fault:
    """A rule: requests matching ``method`` and ``path_regex`` misbehave.

    ``status`` answers with that HTTP status (and ``body``); ``delay``
    waits first; ``hang`` never answers until the faults are cleared or the
    emulator stops; ``drop`` closes the connection without an answer.
    ``times`` limits the rule to the next N matching requests (None: all).
    """

    path_regex: str
    method: str | None = None
    status: int | None = None
    body: Any = None
    times: int | None = None
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """True when this rule applies to the request."""
        if self.method is not None and self.method.upper() != method:
            return False
        return re.search(self.path_regex, path) is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for the control API."""
        return asdict(self)


class FaultBook:
    """The active fault rules; the first matching rule wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._release = threading.Event()

    def add(self, fault: Fault) -> Fault:
        """Activate ``fault`` after the ones already set."""
        re.compile(fault.path_regex)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> tuple[Fault | None, threading.Event]:
        """The rule for this request (used up once when limited) and the
        event that releases hung requests."""
        with self._lock:
            release = self._release
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault, release
        return None, release

    def remove(self, fault_id: str) -> bool:
        """Deactivate the rule ``fault_id``; False when it is not active.

        Requests it already holds hung stay hung until ``clear``, so one
        fault can be swapped for another without a moment of health.
        """
        with self._lock:
            for fault in self._faults:
                if fault.id == fault_id:
                    self._faults.remove(fault)
                    return True
        return False

    def active(self) -> list[Fault]:
        """The active rules."""
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        """Remove every rule and let hung requests go on."""
        with self._lock:
            self._faults.clear()
            release, self._release = self._release, threading.Event()
        release.set()
