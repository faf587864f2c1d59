"""A broker-side witness: a paho client that records every message it sees.

``Recorder`` subscribes to ``#`` on a real broker (plain or TLS) and keeps
each message as a ``Seen`` (topic, decoded payload, arrival time), so a
test asserts on what the edge core really published instead of on its
internal calls. Payloads are decoded as JSON when they parse, else kept as
text. Recording is thread-safe: paho's network thread appends while the
test thread reads.

It publishes nothing and never interprets a message.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.emulator.broker import Broker


@dataclass(frozen=True)
class Seen:
    """One message as the recorder received it."""

    topic: str
    payload: Any
    at: float


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    try:
        return json.loads(text)
    except ValueError:
        return text


def payloads(messages: Iterable[Seen]) -> list[dict[str, Any]]:
    """The payloads of ``messages`` that are JSON objects, in order."""
    return [m.payload for m in messages if isinstance(m.payload, dict)]


class Recorder:
    """Records every message published on one broker, from ``start`` on."""

    def __init__(self, broker: Broker, *, timeout: float = 10.0) -> None:
        self._broker = broker
        self._timeout = timeout
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"recorder_live_{uuid.uuid4().hex}",
            protocol=paho.MQTTv5,
        )
        if broker.ca_cert:
            self._client.tls_set(ca_certs=broker.ca_cert)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> Recorder:
        """Connect, subscribe to ``#`` and wait until the broker confirmed it."""
        self._client.connect(self._broker.host, self._broker.port)
        self._client.loop_start()
        if not self._subscribed.wait(self._timeout):
            self.stop()
            raise RuntimeError(f"recorder could not subscribe on {self._broker!r}")
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reading ---------------------------------------------------------

    def messages(
        self, topic: str | None = None, *, since: float | None = None
    ) -> list[Seen]:
        """Messages so far, oldest first, on ``topic`` and after ``since``."""
        with self._lock:
            seen = list(self._seen)
        return [
            item
            for item in seen
            if (topic is None or item.topic == topic)
            and (since is None or item.at > since)
        ]

    def topics(self) -> set[str]:
        """Every topic a message arrived on."""
        return {item.topic for item in self.messages()}

    def wait_for(
        self,
        predicate: Callable[[list[Seen]], bool],
        *,
        timeout: float,
        what: str = "the expected messages",
    ) -> list[Seen]:
        """Wait until ``predicate(messages)`` holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.messages()
            if predicate(seen):
                return seen
            if time.monotonic() >= deadline:
                topics = sorted({item.topic for item in seen})
                raise AssertionError(
                    f"{what} did not arrive in {timeout:.0f} s; "
                    f"{len(seen)} message(s) on {topics}"
                )
            time.sleep(0.05)

    # -- paho callbacks (network thread) ---------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        client.subscribe("#", qos=0)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: Any, reasons: Any, props: Any
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: Any) -> None:
        item = Seen(str(message.topic), _decode(bytes(message.payload)), time.time())
        with self._lock:
            self._seen.append(item)
