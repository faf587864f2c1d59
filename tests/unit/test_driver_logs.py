"""Driver log lines and pull progress become driver_log messages."""

from __future__ import annotations

from typing import Any

from edge_core.drivers.logs import detect_level, driver_log_message
from edge_core.drivers.pulls import PullReporter, PullTarget


def test_level_detection_order() -> None:
    """The first level of ERROR, CRITICAL, WARNING, WARN, DEBUG, INFO wins."""
    assert detect_level("2026-01-01 [info] error reading port") == "ERROR"
    assert detect_level("critical: debug mode") == "CRITICAL"
    assert detect_level("WARN disk almost full") == "WARNING"
    assert detect_level("Warning: low battery") == "WARNING"
    assert detect_level("debug: tick") == "DEBUG"
    assert detect_level("just a line") == "INFO"


def test_level_only_looks_at_first_80_characters() -> None:
    """A level word after the 80th character does not count."""
    assert detect_level("x" * 80 + " ERROR") == "INFO"


def test_driver_log_message_fields() -> None:
    """A driver_log payload carries the fields of the wire contract."""
    message = driver_log_message(
        message="ERROR serial port gone  \n",
        container_name="cyberwave-driver-1a2b3c4d",
        version="1.2.3",
        driver_image="cw/driver:1",
        now=lambda: 42.0,
    )
    assert message == {
        "type": "driver_log",
        "message": "ERROR serial port gone",
        "level": "ERROR",
        "container_name": "cyberwave-driver-1a2b3c4d",
        "source": "edge",
        "timestamp": 42.0,
        "edge_core_version": "1.2.3",
        "driver_image": "cw/driver:1",
    }


def test_pull_lines_go_to_every_twin_using_the_image() -> None:
    """Each pull line is published once per twin, with its container name."""
    sent: list[tuple[str, dict[str, Any]]] = []
    now = [0.0]
    reporter = PullReporter(
        "reg/img:1",
        [
            PullTarget("t/a/driverlog", "cyberwave-driver-a"),
            PullTarget("t/b/driverlog", "cyberwave-driver-b"),
        ],
        lambda topic, payload: sent.append((topic, dict(payload))) or True,
        version="1",
        progress_interval=5.0,
        clock=lambda: now[0],
    )
    reporter.started()
    reporter.event("abc123", "Downloading", 1_000_000, 2_000_000)
    reporter.event("abc123", "Downloading", 1_500_000, 2_000_000)
    now[0] = 6.0
    reporter.event("abc123", "Downloading", 1_900_000, 2_000_000)
    reporter.event("abc123", "Pull complete", None, None)
    reporter.completed(pulled=True, warning=None)
    messages = [p["message"] for topic, p in sent if topic == "t/a/driverlog"]
    assert messages == [
        "docker pull started for image reg/img:1",
        "docker pull: abc123: Downloading 1.0 MB / 2.0 MB",
        "docker pull: abc123: Downloading 1.9 MB / 2.0 MB",
        "docker pull: abc123: Pull complete",
        "docker pull completed for image reg/img:1",
    ]
    assert {p["container_name"] for t, p in sent if t == "t/b/driverlog"} == {
        "cyberwave-driver-b"
    }


def test_pull_failure_line() -> None:
    """A failed pull says so on the driverlog topic."""
    sent: list[dict[str, Any]] = []
    reporter = PullReporter(
        "img:1",
        [PullTarget("t", "c")],
        lambda _t, p: sent.append(dict(p)) or True,
        version="1",
    )
    reporter.failed("manifest unknown")
    reporter.failed("", timed_out=True)
    assert [p["message"] for p in sent] == [
        "docker pull failed for image img:1: manifest unknown",
        "docker pull timed out for image img:1",
    ]
