"""The broker goes away for a minute under a running edge core (2.1, 7b 15).

The edge core talks to Mosquitto through a counting proxy, so every
connection attempt it makes while the broker is stopped is seen (the
proxy resets it, as a closed port would). The drivers must not notice
the outage, the session must come back by itself without hammering the
broker, and driver logs must flow again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    check,
    example_environment,
    keepalives,
)
from tests.support.faults import (
    CountingProxy,
    RunningWatch,
    broker_sessions,
    container_facts,
    reconnect_offsets,
)
from tests.support.mqtt import Recorder, Seen, payloads

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 60.0
"""How long the broker stays stopped: the minute of a real network cut."""

RECONNECT_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 8.0
"""The session's reconnect backoff: paho waits 1, 2, 4, 8, 8, ... s between
attempts (``CYBERWAVE_MQTT_RECONNECT_MIN_SECONDS``, doubled up to
``CYBERWAVE_BACKOFF_MAX_SECONDS``)."""

EDGE_SESSION_PREFIX = "edge-core_live_"
TICKING_SCRIPT = "while true; do echo INFO tick; sleep 0.5; done"


@pytest.fixture
def proxy(mqtt_broker: Broker) -> Iterator[CountingProxy]:
    """A counting TCP proxy in front of the test's broker."""
    with CountingProxy(mqtt_broker.host, mqtt_broker.port) as counting:
        yield counting


def test_broker_outage_of_a_minute_reconnects_once_without_a_storm(
    emulator: Emulator,
    mqtt_broker: Broker,
    proxy: CountingProxy,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With the broker stopped for 60 s, the session retries with capped
    exponential backoff (1, 2, 4, 8, 8, ... s: at most 9 attempts in 60 s,
    where a retry per cycle would make about 60), connects exactly once
    when the broker is back, driver logs flow again, status shows the
    outage and then the session, and the drivers run untouched throughout."""
    example = example_environment(
        fingerprint, robot_script=TICKING_SCRIPT, camera_script=TICKING_SCRIPT
    )
    edge = new_edge(
        example,
        broker_port=proxy.port,
        env={
            "CYBERWAVE_MQTT_RECONNECT_MIN_SECONDS": str(RECONNECT_MIN_SECONDS),
            "CYBERWAVE_BACKOFF_MAX_SECONDS": str(BACKOFF_MAX_SECONDS),
        },
    ).start()
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    _wait_session(edge, connected=True)
    before = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, example.driver_names) as watch:
        stopped_at = time.time()
        mqtt_broker.stop()
        _wait_session(edge, connected=False)
        outage = check(edge.status_json(), "mqtt session")
        # The outage itself: nothing to wait for, the broker is just gone.
        time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.time()))

        restarted_at = time.time()
        sessions_before = len(broker_sessions(mqtt_broker))
        mqtt_broker.start()
        with Recorder(mqtt_broker) as recorder:
            _wait_session(edge, connected=True)
            recorder.wait_for(
                lambda seen: _ticks(seen, example.robot) >= 6,
                timeout=STARTUP_TIMEOUT,
                what="driver log lines after the broker came back",
            )
            # A few more cycles, in which a second session would show up.
            seen = keepalives(emulator)
            edge.wait_for(
                lambda: keepalives(emulator) >= seen + 5,
                timeout=STARTUP_TIMEOUT,
                what="five more keepalives",
            )
            report = edge.status_json()

    # No storm: the attempts during the outage keep to the backoff.
    during = [a.at for a in proxy.attempts(since=stopped_at) if a.at < restarted_at]
    allowed = reconnect_offsets(
        RECONNECT_MIN_SECONDS, BACKOFF_MAX_SECONDS, restarted_at - stopped_at
    )
    assert 1 <= len(during) <= len(allowed), (during, allowed)
    assert len(allowed) <= 10
    waits = [b - a for a, b in itertools.pairwise([stopped_at, *during])]
    least = [b - a for a, b in itertools.pairwise([0.0, *allowed])]
    for index, (waited, minimum) in enumerate(zip(waits, least, strict=False)):
        assert waited >= 0.9 * minimum, (index, waits, least)
    assert max(waits) < 2 * BACKOFF_MAX_SECONDS, f"the backoff is not capped: {waits}"

    # Exactly one session once the broker is back, through one connection.
    after = broker_sessions(mqtt_broker)[sessions_before:]
    assert [s.client_id[: len(EDGE_SESSION_PREFIX)] for s in after].count(
        EDGE_SESSION_PREFIX
    ) == 1, after
    forwarded = [a for a in proxy.attempts(since=restarted_at) if a.forwarded]
    assert len(forwarded) == 1, forwarded

    # Status said so, and says the session is back.
    assert outage["ok"] is False
    assert "broker unreachable" in outage["detail"]
    names = {item["name"] for item in report["checks"]}
    assert "mqtt session" not in names
    assert (edge.state() or {}).get("mqtt_connected") is True

    # The drivers never noticed.
    assert watch.samples > 0
    assert watch.problems == []
    assert container_facts(docker_client, fingerprint) == before
    assert edge.running
    assert edge.stop(timeout=10) == 0


def _wait_session(edge: EdgeProcess, *, connected: bool) -> None:
    edge.wait_for(
        lambda: (edge.state() or {}).get("mqtt_connected") is connected,
        timeout=STARTUP_TIMEOUT,
        what=f"the daemon to report mqtt_connected={connected}",
    )


def _ticks(seen: list[Seen], twin_uuid: str) -> int:
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"
    lines = payloads(message for message in seen if message.topic == topic)
    return sum(1 for payload in lines if payload.get("message") == "INFO tick")
