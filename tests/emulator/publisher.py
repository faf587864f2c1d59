"""How the emulated backend reaches an edge: one MQTT publish per command.

Commands go through a real broker, exactly as the platform sends them, so
a test proves the edge core's subscription and not a shortcut. Each
publish opens a short-lived paho connection (QoS 1, so the broker has the
message before the call returns) and closes it again; nothing is kept open
between commands.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class CommandPublisher:
    """Publishes JSON commands to one broker and remembers what it sent."""

    host: str
    port: int
    ca_cert: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 5.0
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` on ``topic``; RuntimeError if the broker is down."""
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"emulator_live_{uuid.uuid4().hex}",
            protocol=paho.MQTTv5,
        )
        client.connect_timeout = self.timeout
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.ca_cert:
            client.tls_set(ca_certs=self.ca_cert)
        try:
            client.connect(self.host, self.port)
            client.loop_start()
            info = client.publish(topic, json.dumps(payload), qos=1)
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise RuntimeError(
                    f"broker {self.host}:{self.port} did not take {topic}"
                )
        except OSError as exc:
            raise RuntimeError(
                f"broker {self.host}:{self.port} unreachable ({exc})"
            ) from exc
        finally:
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self.sent.append((topic, dict(payload)))

    def history(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (topic, payload) published so far, oldest first."""
        with self._lock:
            return list(self.sent)
