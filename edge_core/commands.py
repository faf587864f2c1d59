"""Commands the cloud sends to this edge on ``{P}edges/{edge_uuid}/command``.

The MQTT network thread only decodes and queues a message; the daemon's
loop drains the inbox, so no work ever runs in a paho callback. The only
command acted upon is ``restart_edge_core`` (protocol.md 2.6); a repeat of
one (the same ``request_id``, or the same ``alert_uuid``: the card the
backend made for one request) is ignored. Anything else is ignored with a
DEBUG line, and a malformed payload is reported
once per distinct payload so a misbehaving sender cannot flood the log.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass

log = logging.getLogger(__name__)

RESTART_EDGE_CORE = "restart_edge_core"

# How many request ids are remembered for de-duplication (protocol 2.6).
REMEMBERED_REQUESTS = 1024
# How many commands may wait for the loop; more are dropped with a warning.
INBOX_SIZE = 64
# The longest request_id or alert_uuid kept as sent; a longer one keeps its
# first ID_KEPT characters and a digest of the whole.
ID_LIMIT = 200
ID_KEPT = 64


class MalformedCommand(ValueError):
    """A payload on the command topic that is not a usable command."""


@dataclass(frozen=True)
class EdgeCommand:
    """One decoded command: its name and the optional dedupe and alert ids."""

    name: str
    request_id: str | None = None
    alert_uuid: str | None = None


def _id_text(value: str) -> str | None:
    """An id as it is remembered, logged and shown: one printable line.

    Line breaks and other control characters become spaces (an id must not
    forge log lines); an id longer than ``ID_LIMIT`` keeps its start and a
    digest of the whole, so it stays distinct and bounded in size.
    """
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    flat = " ".join(value.split())
    if len(flat) <= ID_LIMIT:
        return flat or None
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{flat[:ID_KEPT]}...sha256:{digest[:32]}"


def _optional_text(payload: dict[str, object], key: str) -> str | None:
    """A string field; a number is taken as its text (be liberal, protocol 8)."""
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise MalformedCommand(f"{key!r} must be a string, not {type(value).__name__}")
    return _id_text(value)


def parse_command(payload: object) -> EdgeCommand:
    """Decode a command payload; unknown keys are ignored (protocol 8)."""
    if not isinstance(payload, dict):
        raise MalformedCommand(f"expected a JSON object, got {type(payload).__name__}")
    name = payload.get("command")
    if not isinstance(name, str) or not name.strip():
        raise MalformedCommand("'command' is missing or not a non-empty string")
    return EdgeCommand(
        name=name.strip().lower(),
        request_id=_optional_text(payload, "request_id"),
        alert_uuid=_optional_text(payload, "alert_uuid"),
    )


class RecentIds:
    """The last ``size`` request ids seen, oldest forgotten first."""

    def __init__(self, size: int = REMEMBERED_REQUESTS) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, request_id: str) -> bool:
        """True when ``request_id`` was seen before; remembers it either way."""
        if request_id in self._ids:
            self._ids.move_to_end(request_id)
            return True
        self._ids[request_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False


class CommandInbox:
    """Decodes edge commands on the network thread and hands them to the loop.

    ``on_message`` is the MQTT handler; ``wake`` is called after a command
    is queued so the loop does not wait for its next cycle.
    """

    def __init__(self, wake: threading.Event | None = None) -> None:
        self._queue: queue.Queue[EdgeCommand] = queue.Queue(INBOX_SIZE)
        self._wake = wake
        self._recent = RecentIds()
        self._cards = RecentIds()
        self._malformed: set[str] = set()
        self._lock = threading.Lock()

    def on_message(self, topic: str, payload: object) -> None:
        try:
            command = parse_command(payload)
        except MalformedCommand as exc:
            self._report_malformed(topic, payload, exc)
            return
        if command.name != RESTART_EDGE_CORE:
            log.debug("ignoring command %r on %s", command.name, topic)
            return
        with self._lock:
            # Both are remembered whichever matched: a request_id is the
            # dedupe key, and an alert_uuid names the one restart card the
            # backend made for one request, so it is never acted on twice.
            repeated_id = command.request_id is not None and self._recent.seen(
                command.request_id
            )
            repeated_card = command.alert_uuid is not None and self._cards.seen(
                command.alert_uuid
            )
        if repeated_id:
            log.info(
                "ignoring repeated %s (request_id %s)", command.name, command.request_id
            )
            return
        if repeated_card:
            log.info(
                "ignoring repeated %s (alert_uuid %s)", command.name, command.alert_uuid
            )
            return
        try:
            self._queue.put_nowait(command)
        except queue.Full:
            log.warning("too many commands waiting; dropped %s", command.name)
            return
        if self._wake is not None:
            self._wake.set()

    def drain(self) -> list[EdgeCommand]:
        """Every queued command, oldest first."""
        commands: list[EdgeCommand] = []
        while True:
            try:
                commands.append(self._queue.get_nowait())
            except queue.Empty:
                return commands

    def _report_malformed(
        self, topic: str, payload: object, exc: MalformedCommand
    ) -> None:
        key = repr(payload)[:200]
        with self._lock:
            first = key not in self._malformed
            if first and len(self._malformed) < REMEMBERED_REQUESTS:
                self._malformed.add(key)
        if first:
            log.warning("ignoring malformed command on %s: %s", topic, exc)
        else:
            log.debug("ignoring a repeat of a malformed command on %s", topic)
