"""The bootstrap publisher sends edge_health messages per protocol 2.6."""

from __future__ import annotations

import threading
from typing import Any

from edge_core.health import BootstrapHealthPublisher
from edge_core.host.metrics import HostMetricsSampler


class FixedMetrics(HostMetricsSampler):
    def __init__(self, values: dict[str, float]) -> None:
        super().__init__(min_interval=30.0)
        self._values = values

    def sample(self) -> dict[str, float]:
        return dict(self._values)


def make(
    sent: list[tuple[str, dict[str, Any]]], **kwargs: Any
) -> BootstrapHealthPublisher:
    now = [100.0]
    defaults: dict[str, Any] = {
        "publish": lambda topic, payload: sent.append((topic, dict(payload))) or True,
        "topic_for": lambda twin: f"cyberwave/twin/{twin}/edge_health",
        "fingerprint": "robot-lab-local-a859819bdb99",
        "twins": lambda: ["t1", "t2"],
        "interval": 5.0,
        "metrics": FixedMetrics({"host_memory_percent": 41.2, "source_type": 7.0}),
        "clock": lambda: now[0],
        "wall_clock": lambda: 1733240000.12,
    }
    defaults.update(kwargs)
    return BootstrapHealthPublisher(**defaults)


def test_payload_fields() -> None:
    """One message carries exactly the fields of the edge_health payload."""
    sent: list[tuple[str, dict[str, Any]]] = []
    publisher = make(sent, watchdog_layers=("systemd",), battery_wh=55.5)
    payload = publisher.payload("t1")
    assert payload == {
        "type": "edge_health",
        "timestamp": 1733240000.12,
        "edge_id": "robot-lab-local-a859819bdb99",
        "uptime_seconds": 0.0,
        "streams": {},
        "stream_count": 0,
        "healthy_streams": 0,
        "camera_config": None,
        "consecutive_critical": 0,
        "watchdog_layers": ["systemd"],
        "host_memory_percent": 41.2,
        "battery_wh": 55.5,
        "source_type": "edge",
        "twin_uuid": "t1",
    }


def test_one_message_per_linked_twin() -> None:
    """Each tick publishes to the edge_health topic of every linked twin."""
    sent: list[tuple[str, dict[str, Any]]] = []
    publisher = make(sent)
    assert publisher.publish_once() == 2
    assert [topic for topic, _ in sent] == [
        "cyberwave/twin/t1/edge_health",
        "cyberwave/twin/t2/edge_health",
    ]


def test_thread_publishes_until_stopped() -> None:
    """The background thread publishes, and stops when asked."""
    sent: list[tuple[str, dict[str, Any]]] = []
    got = threading.Event()

    def publish(topic: str, payload: Any) -> bool:
        sent.append((topic, payload))
        got.set()
        return True

    publisher = make(sent, publish=publish, interval=1.0)
    publisher.start()
    assert got.wait(5)
    publisher.stop()
    assert not publisher.running
    count = len(sent)
    assert count >= 1
