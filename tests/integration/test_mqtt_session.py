"""MqttSession against a real Mosquitto broker (protocol.md 2.1–2.3, 2.7)."""

from __future__ import annotations

import logging
import math
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_core.cloud.mqtt import MqttConfig, MqttSession, broker_credentials
from tests.emulator.broker import Broker
from tests.emulator.certs import make_tls_files
from tests.support.faults import CountingProxy

pytestmark = pytest.mark.integration

Message = tuple[str, object]


def config_for(broker: Broker, **overrides: object) -> MqttConfig:
    """A config for ``broker`` with test-sized reconnect delays."""
    settings: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "use_tls": broker.ca_cert is not None,
        "ca_cert": broker.ca_cert,
        "username": "",
        "password": None,
        "protocol": 5,
        "connect_timeout": 5.0,
        "reconnect_min_delay": 0.1,
        "reconnect_max_delay": 0.5,
    }
    settings.update(overrides)
    return MqttConfig(**settings)  # type: ignore[arg-type]


class Inbox:
    """A thread-safe handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()

    def __call__(self, topic: str, payload: object) -> None:
        self.messages.put((topic, payload))

    def deliver(self, publish: Callable[[], object], timeout: float = 10.0) -> Message:
        """Publish until a message arrives (subscriptions become active async)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            publish()
            try:
                return self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
        raise AssertionError("no message arrived")

    def drain(self) -> list[Message]:
        """Everything received and not yet read."""
        items = []
        while True:
            try:
                items.append(self.messages.get_nowait())
            except queue.Empty:
                return items


@pytest.fixture
def sessions() -> Iterator[Callable[..., MqttSession]]:
    """Start sessions for a test and stop them all at teardown."""
    made: list[MqttSession] = []

    def start(config: MqttConfig, *, connect: bool = True) -> MqttSession:
        session = MqttSession(config)
        made.append(session)
        session.start()
        if connect:
            assert session.wait_connected(10), f"no session to {config.endpoint}"
        return session

    yield start
    for session in made:
        session.stop()


def topic() -> str:
    """A topic unique to the test."""
    return f"test/{uuid.uuid4().hex}/command"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_round_trip_adds_session_id_and_nulls_non_finite(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """A JSON object arrives decoded, with the sender's session_id and NaN → null."""
    receiver = sessions(config_for(mqtt_broker))
    sender = sessions(config_for(mqtt_broker))
    inbox, name = Inbox(), topic()
    receiver.subscribe(name, inbox)

    got = inbox.deliver(lambda: sender.publish(name, {"command": "x", "v": math.nan}))

    assert got == (name, {"command": "x", "v": None, "session_id": sender.client_id})


def test_tls_round_trip_with_the_broker_ca(
    mqtt_broker_tls: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """Over TLS, verified against the test CA, messages flow both ways."""
    session = sessions(config_for(mqtt_broker_tls))
    inbox, name = Inbox(), topic()
    session.subscribe(name, inbox)
    assert inbox.deliver(lambda: session.publish(name, "ping")) == (name, "ping")


def test_tls_with_a_wrong_ca_never_connects(
    mqtt_broker_tls: Broker,
    sessions: Callable[..., MqttSession],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A certificate from another CA fails verification: no session, no raise."""
    caplog.set_level(logging.WARNING, logger="edge_core.cloud.mqtt")
    other = make_tls_files(tmp_path / "other", name="other")
    session = sessions(
        config_for(mqtt_broker_tls, ca_cert=str(other.ca_cert)), connect=False
    )
    assert not session.wait_connected(1.5)
    assert session.publish(topic(), {"a": 1}) is False
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "TLS verification failed" in warnings[0]


def test_mqtt_311_round_trip(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """Protocol 3.1.1 connects and delivers as well as v5."""
    session = sessions(config_for(mqtt_broker, protocol=311))
    inbox, name = Inbox(), topic()
    session.subscribe(name, inbox)
    assert inbox.deliver(lambda: session.publish(name, {"a": 1}))[1] == {
        "a": 1,
        "session_id": session.client_id,
    }


def test_resubscribes_after_broker_restart(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """After the broker restarts on the same port, old subscriptions still deliver."""
    session = sessions(config_for(mqtt_broker))
    peer = sessions(config_for(mqtt_broker))
    inbox, name = Inbox(), topic()
    session.subscribe(name, inbox)
    inbox.deliver(lambda: peer.publish(name, {"n": 1}))

    mqtt_broker.stop()
    assert wait_until(lambda: not session.is_connected)
    assert session.publish(name, {"n": 2}) is False

    mqtt_broker.start()
    assert session.wait_connected(15)
    assert peer.wait_connected(15)
    inbox.drain()
    got = inbox.deliver(lambda: peer.publish(name, {"n": 3}))
    assert got[1] == {"n": 3, "session_id": peer.client_id}
    assert mqtt_broker.connect_count() >= 2


def test_start_with_broker_down_connects_later_and_warns_once(
    tmp_path: Path,
    sessions: Callable[..., MqttSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start() does not raise while the broker is down; it connects once it is up."""
    caplog.set_level(logging.DEBUG, logger="edge_core.cloud.mqtt")
    broker = Broker(workdir=tmp_path / "late")
    try:
        session = sessions(config_for(broker), connect=False)
        assert wait_until(
            lambda: sum("unreachable" in r.getMessage() for r in caplog.records) >= 3
        )
        assert not session.is_connected
        broker.start()
        assert session.wait_connected(15)
        assert wait_until(
            lambda: any(r.levelno == logging.INFO for r in caplog.records)
        )
        records = list(caplog.records)
    finally:
        broker.close()
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert ["unreachable" in r.getMessage() for r in warnings] == [True]
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert any(m.startswith(f"MQTT connected to {broker.host}:") for m in infos)


def test_publish_returns_false_before_start(mqtt_broker: Broker) -> None:
    """A session that was never started refuses to publish instead of raising."""
    session = MqttSession(config_for(mqtt_broker))
    assert session.publish(topic(), {"a": 1}) is False
    assert session.is_connected is False


def test_oversized_payload_is_dropped_with_a_warning(
    mqtt_broker: Broker,
    sessions: Callable[..., MqttSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A payload over max_payload_bytes is not sent; smaller ones are."""
    session = sessions(config_for(mqtt_broker, max_payload_bytes=64))
    assert session.publish(topic(), b"x" * 65) is False
    assert session.publish(topic(), b"x" * 64) is True
    assert "over the 64 byte limit; dropped" in caplog.text


def test_failing_handler_does_not_stop_delivery(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """A handler that raises is logged; later messages are still delivered."""
    session = sessions(config_for(mqtt_broker))
    inbox, name = Inbox(), topic()

    def explode(topic_name: str, payload: object) -> None:
        inbox(topic_name, payload)
        raise RuntimeError("handler bug")

    session.subscribe(name, explode)
    inbox.deliver(lambda: session.publish(name, "one"))
    inbox.drain()
    assert inbox.deliver(lambda: session.publish(name, "two"))[1] == "two"
    assert session.is_connected


def test_unsubscribe_stops_delivery(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """After unsubscribe a topic is no longer delivered; others still are."""
    session = sessions(config_for(mqtt_broker))
    gone, kept = Inbox(), Inbox()
    first, second = topic(), topic()
    session.subscribe(first, gone)
    session.subscribe(second, kept)
    gone.deliver(lambda: session.publish(first, "a"))
    kept.deliver(lambda: session.publish(second, "b"))

    session.unsubscribe(first)
    time.sleep(0.2)
    gone.drain()
    session.publish(first, "late")
    kept.drain()
    kept.deliver(lambda: session.publish(second, "marker"))
    assert gone.drain() == []


def test_wildcard_subscription_passes_the_real_topic(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """A + filter matches, and the handler gets the concrete topic."""
    session = sessions(config_for(mqtt_broker))
    inbox, base = Inbox(), f"test/{uuid.uuid4().hex}"
    session.subscribe(f"{base}/+/command", inbox)
    got = inbox.deliver(lambda: session.publish(f"{base}/twin-1/command", "go"))
    assert got == (f"{base}/twin-1/command", "go")


def test_topic_aliases_still_deliver_full_topics(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """With topic aliases on, repeated publishes still arrive on the right topic."""
    sender = sessions(config_for(mqtt_broker, topic_aliases=True))
    receiver = sessions(config_for(mqtt_broker))
    inbox, name = Inbox(), topic()
    receiver.subscribe(name, inbox)
    inbox.deliver(lambda: sender.publish(name, "first"))
    inbox.drain()
    for index in range(3):
        assert sender.publish(name, f"again-{index}")
    received = [inbox.messages.get(timeout=5) for _ in range(3)]
    assert received == [(name, f"again-{index}") for index in range(3)]
    assert sender.is_connected


def test_hashed_username_is_accepted_by_an_authenticating_broker(
    tmp_path: Path, sessions: Callable[..., MqttSession]
) -> None:
    """cwh_<sha256(token)> with the token as password logs in (protocol.md 2.2)."""
    token = f"cw_{uuid.uuid4().hex}"
    username, password = broker_credentials(
        token=token, username_setting="mqttcyb", password_setting=None
    )
    with Broker(users={username: password}, workdir=tmp_path / "auth") as broker:
        session = sessions(config_for(broker, username=username, password=password))
        assert session.is_connected
        session.stop()


def test_stop_closes_the_session(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """After stop the session is down and publishes are refused."""
    session = sessions(config_for(mqtt_broker))
    session.stop()
    assert session.is_connected is False
    assert session.publish(topic(), {"a": 1}) is False


def test_a_stalled_uplink_bounds_what_waits_and_recovers(
    mqtt_broker: Broker, sessions: Callable[..., MqttSession]
) -> None:
    """Through a link that stays up but carries nothing, publishing stops
    being accepted once the bytes not yet sent pass the limit (nothing
    queues without end), and every accepted message arrives once the link
    moves again, after which publishing is accepted again."""
    limit = 1024 * 1024
    piece = {"blob": "x" * 60_000}
    receiver = sessions(config_for(mqtt_broker))
    inbox = Inbox()
    topic = f"edge-core-test/{uuid.uuid4().hex}/stall"
    receiver.subscribe(topic, inbox)
    with CountingProxy(mqtt_broker.host, mqtt_broker.port) as proxy:
        sender = sessions(
            config_for(mqtt_broker, port=proxy.port, max_unsent_bytes=limit)
        )
        inbox.deliver(lambda: sender.publish(topic, {"n": -1}))
        time.sleep(0.5)
        inbox.drain()

        proxy.stall()
        accepted = 0
        # Far more than the socket buffers and the limit together hold.
        for n in range(2000):
            if not sender.publish(topic, {"n": n, **piece}):
                break
            accepted += 1
        assert 0 < accepted < 2000, accepted
        assert sender.is_connected
        assert not sender.can_send

        proxy.resume()
        deadline = time.monotonic() + 20
        received: list[Message] = []
        while len(received) < accepted and time.monotonic() < deadline:
            try:
                received.append(inbox.messages.get(timeout=0.5))
            except queue.Empty:
                continue
        numbers = [payload["n"] for _, payload in received]  # type: ignore[index]
        assert numbers == list(range(accepted))
        assert sender.can_send
        assert sender.publish(topic, {"n": accepted})
