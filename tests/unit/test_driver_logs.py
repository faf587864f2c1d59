"""Driver log lines and pull progress become driver_log messages.

Following runs against a fake engine that keeps stamped lines per
container and answers ``since`` the way the Engine API does (whole seconds,
inclusive); publishing goes to a fake broker that can be taken away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from edge_core.drivers.logs import (
    FollowTarget,
    LogForwarder,
    LogOutbox,
    LogPosition,
    detect_level,
    driver_log_message,
)
from edge_core.drivers.pulls import PullReporter, PullTarget
from edge_core.runtime.logs import LogStream


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


# -- following containers with a fake engine -----------------------------------


class FakeContainer:
    """One container as the engine would keep it: an id and stamped lines."""

    def __init__(self, container_id: str) -> None:
        self.id = container_id
        self.frames: list[tuple[datetime, bytes]] = []

    def print(self, text: str, at: datetime) -> None:
        self.frames.append((at, text.encode() + b"\n"))


class FakeEngine:
    """A ``LogSource`` over fake containers, with the engine's ``since``.

    Like the Engine API through the SDK, ``since`` is whole seconds and
    inclusive, and ``tail`` keeps the last lines; the lines come back as a
    real ``LogStream``. Following ends at once (the container "stopped").
    """

    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, datetime | None, int | None]] = []

    def logs(
        self,
        name: str,
        *,
        follow: bool,
        since: datetime | None = None,
        tail: int | None = None,
        stop_event: threading.Event | None = None,
        fingerprint: str | None = None,
    ) -> LogStream:
        self.calls.append((name, since, tail))
        container = self.containers[name]
        frames = container.frames
        if since is not None:
            floor = since.replace(microsecond=0)
            frames = [(at, data) for at, data in frames if at >= floor]
        if tail is not None:
            frames = frames[-tail:] if tail else []
        chunks = [stamp(at) + data for at, data in frames]
        return LogStream(
            iter(chunks),
            close=lambda: None,
            tty=False,
            since=since,
            container_id=container.id,
        )


def stamp(at: datetime) -> bytes:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f000Z ").encode()


BASE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


class Broker:
    """A publish function whose broker can be taken away and given back."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0

    def __call__(self, topic: str, payload: Mapping[str, Any]) -> bool:
        self.attempts += 1
        if not self.up:
            return False
        self.sent.append((topic, dict(payload)))
        return True

    def messages(self) -> list[str]:
        return [payload["message"] for _topic, payload in self.sent]


TARGET = FollowTarget(
    container_name="cyberwave-driver-1a2b3c4d",
    twin_uuid="1a2b3c4d-0000-4000-8000-000000000000",
    image="cw/driver:1",
    topic="cyberwave/twin/1a2b3c4d-0000-4000-8000-000000000000/driverlog",
)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.005)


def cycle(forwarder: LogForwarder, target: FollowTarget = TARGET) -> None:
    """What the daemon does each cycle for a running driver, to completion."""
    forwarder.follow(target)
    wait_until(lambda: not forwarder.following(), "the follower to end")
    forwarder.flush()


def make_forwarder(engine: FakeEngine, broker: Broker, **kwargs: Any) -> LogForwarder:
    kwargs.setdefault("cold_start_tail", 500)
    return LogForwarder(engine, broker, version="9.9.9", **kwargs)


def test_first_attach_reads_the_cold_start_tail() -> None:
    """The first follow of a container forwards only its last N lines."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    for i in range(5):
        container.print(f"line {i}", at(i))
    cycle(make_forwarder(engine, broker, cold_start_tail=2))
    assert broker.messages() == ["line 3", "line 4"]
    assert broker.sent[0][0] == TARGET.topic
    assert engine.calls == [(TARGET.container_name, None, 2)]


def test_reattach_to_a_restarted_container_repeats_and_loses_nothing() -> None:
    """Lines of the same second before the last one sent are not sent again;
    every line written while no follower was attached is."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    container.print("line 0", at(0.1))
    container.print("line 1", at(0.6))
    forwarder = make_forwarder(engine, broker)
    cycle(forwarder)

    # Restarted within the same second: the engine's since sends line 0
    # and line 1 again, and only the stream's own filter can drop them.
    container.print("line 2", at(0.8))
    container.print("line 3", at(2.5))
    cycle(forwarder)
    cycle(forwarder)

    assert broker.messages() == ["line 0", "line 1", "line 2", "line 3"]
    assert engine.calls[1] == (TARGET.container_name, at(0.6), None)
    assert forwarder.position(TARGET.container_name) == LogPosition("id-1", at(2.5))


def test_a_recreated_container_is_read_from_its_beginning() -> None:
    """A new container under the same name gets all its lines forwarded, even
    when its clock reads earlier than the last line of the old one."""
    engine, broker = FakeEngine(), Broker()
    old = engine.containers[TARGET.container_name] = FakeContainer("id-old")
    old.print("old 0", at(10))
    old.print("old 1", at(20))
    forwarder = make_forwarder(engine, broker, cold_start_tail=1)
    cycle(forwarder)

    new = engine.containers[TARGET.container_name] = FakeContainer("id-new")
    for i in range(3):
        new.print(f"new {i}", at(5 + i))
    cycle(forwarder)

    assert broker.messages() == ["old 1", "new 0", "new 1", "new 2"]
    assert engine.calls[-1] == (TARGET.container_name, None, None)
    assert forwarder.position(TARGET.container_name) == LogPosition("id-new", at(7))


def test_lines_wait_while_the_broker_is_away_and_leave_in_order() -> None:
    """Held lines are sent by flush, oldest first, before any newer line."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    forwarder = make_forwarder(engine, broker)
    container.print("line 0", at(0))
    cycle(forwarder)

    broker.up = False
    container.print("line 1", at(1))
    container.print("line 2", at(2))
    cycle(forwarder)
    assert (forwarder.buffered, forwarder.dropped) == (2, 0)
    assert broker.messages() == ["line 0"]

    broker.up = True
    assert forwarder.flush() == 2
    container.print("line 3", at(3))
    cycle(forwarder)
    assert broker.messages() == ["line 0", "line 1", "line 2", "line 3"]
    assert forwarder.buffered == 0


def test_a_new_line_sends_the_held_ones_first() -> None:
    """Without a flush, the next line takes the held ones out before itself."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=10)
    broker.up = False
    outbox.send("t", {"message": "a"})
    outbox.send("t", {"message": "b"})
    broker.up = True
    outbox.send("t", {"message": "c"})
    assert broker.messages() == ["a", "b", "c"]
    assert outbox.buffered == 0


def test_the_buffer_is_bounded_and_drops_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past its capacity the outbox drops the oldest lines, counts them and
    says so once, in one WARNING, when the broker is back."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=3)
    broker.up = False
    for i in range(7):
        outbox.send("t", {"message": f"line {i}"})
    assert (outbox.buffered, outbox.dropped) == (3, 4)

    broker.up = True
    with caplog.at_level(logging.DEBUG, logger="edge_core.drivers.logs"):
        assert outbox.flush() == 3
        outbox.send("t", {"message": "line 7"})
    assert broker.messages() == ["line 4", "line 5", "line 6", "line 7"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "dropped 4 driver log lines while the MQTT broker was unreachable"
    ]
    assert outbox.dropped == 4


def test_drops_are_counted_across_outages_and_warned_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``dropped`` is a running total; each outage gets its own warning."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=1)
    with caplog.at_level(logging.WARNING, logger="edge_core.drivers.logs"):
        for outage in range(2):
            broker.up = False
            for i in range(3):
                outbox.send("t", {"message": f"{outage}.{i}"})
            broker.up = True
            outbox.flush()
    assert outbox.dropped == 4
    assert broker.messages() == ["0.2", "1.2"]
    assert [r.getMessage() for r in caplog.records] == [
        "dropped 2 driver log lines while the MQTT broker was unreachable"
    ] * 2


def test_the_buffer_is_bounded_in_bytes_too() -> None:
    """Long lines cannot make the held lines outgrow the byte bound."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=1000, max_bytes=3 * 1300)
    broker.up = False
    for i in range(10):
        outbox.send("t", {"message": f"{i}" + "x" * 1000})
    assert outbox.buffered == 3
    assert outbox.dropped == 7


def test_no_buffer_drops_every_line_while_away() -> None:
    """With a capacity of 0 nothing is held, and every lost line is counted."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=0)
    broker.up = False
    outbox.send("t", {"message": "a"})
    outbox.send("t", {"message": "b"})
    broker.up = True
    outbox.send("t", {"message": "c"})
    assert broker.messages() == ["c"]
    assert (outbox.buffered, outbox.dropped) == (0, 2)


def test_flush_while_away_keeps_everything_and_stops_at_the_first_failure() -> None:
    """A flush with the broker still away sends nothing and loses nothing."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=10)
    broker.up = False
    outbox.send("t", {"message": "a"})
    outbox.send("t", {"message": "b"})
    attempts = broker.attempts
    assert outbox.flush() == 0
    assert broker.attempts == attempts + 1
    assert outbox.buffered == 2


def test_while_disconnected_nothing_is_attempted() -> None:
    """With the session's state known, a line is held without a publish."""
    broker = Broker()
    outbox = LogOutbox(broker, capacity=10, connected=lambda: broker.up)
    broker.up = False
    outbox.send("t", {"message": "a"})
    outbox.flush()
    assert broker.attempts == 0
    assert outbox.buffered == 1


def test_a_refused_line_does_not_block_the_others() -> None:
    """A line the connected session refuses (too large) is not held."""
    sent: list[str] = []

    def publish(_topic: str, payload: Mapping[str, Any]) -> bool:
        if payload["message"] == "huge":
            return False
        sent.append(payload["message"])
        return True

    outbox = LogOutbox(publish, capacity=10, connected=lambda: True)
    for message in ("a", "huge", "b"):
        outbox.send("t", {"message": message})
    assert sent == ["a", "b"]
    assert (outbox.buffered, outbox.dropped) == (0, 0)


def test_held_lines_keep_the_time_they_were_read() -> None:
    """A held line keeps its timestamp field; nothing else is added to it."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    container.print("WARNING late", at(0))
    forwarder = make_forwarder(engine, broker)
    broker.up = False
    cycle(forwarder)
    broker.up = True
    forwarder.flush()
    ((_topic, payload),) = broker.sent
    assert set(payload) == {
        "type",
        "message",
        "level",
        "container_name",
        "source",
        "timestamp",
        "edge_core_version",
        "driver_image",
    }
    assert payload["level"] == "WARNING"
    assert isinstance(payload["timestamp"], float)


def test_lines_are_echoed_to_the_edge_log_even_while_the_broker_is_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every line reaches the edge's own log as ``<container> | <line>``."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    container.print("hello", at(0))
    container.print("   ", at(1))
    broker.up = False
    with caplog.at_level(logging.INFO, logger="edge_core.driver_output"):
        cycle(make_forwarder(engine, broker))
    echoed = [
        r.getMessage() for r in caplog.records if r.name == "edge_core.driver_output"
    ]
    assert echoed == ["cyberwave-driver-1a2b3c4d | hello"]


def test_stop_sends_what_waits() -> None:
    """Stopping the forwarder makes one last attempt at the held lines."""
    engine, broker = FakeEngine(), Broker()
    container = engine.containers[TARGET.container_name] = FakeContainer("id-1")
    container.print("last words", at(0))
    forwarder = make_forwarder(engine, broker)
    broker.up = False
    cycle(forwarder)
    broker.up = True
    forwarder.stop()
    assert broker.messages() == ["last words"]


def test_concurrent_followers_share_one_ordered_bounded_buffer() -> None:
    """Lines of several containers held at once stay in per-container order
    and within the shared bound."""
    engine, broker = FakeEngine(), Broker()
    targets = []
    for n in range(4):
        name = f"cyberwave-driver-{n}"
        container = engine.containers[name] = FakeContainer(f"id-{n}")
        for i in range(50):
            container.print(f"{n}:{i}", at(i))
        targets.append(FollowTarget(name, f"twin-{n}", "img", f"t/{n}"))
    forwarder = make_forwarder(engine, broker, buffer_lines=120)
    broker.up = False
    for target in targets:
        forwarder.follow(target)
    wait_until(lambda: not forwarder.following(), "the followers to end")
    assert (forwarder.buffered, forwarder.dropped) == (120, 80)

    broker.up = True
    forwarder.flush()
    for n in range(4):
        numbers = [int(m.split(":")[1]) for m in broker.messages() if m[0] == str(n)]
        assert numbers == sorted(numbers)
    assert len(broker.messages()) == 120
