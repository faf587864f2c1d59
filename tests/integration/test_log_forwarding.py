"""Driver log lines reach a real broker exactly once, through restarts and outages.

A real container prints numbered lines; the forwarder follows it through
the real Docker adapter and publishes through a real ``MqttSession`` to
Mosquitto, where a ``Recorder`` sees what really arrived. Each test drives
the forwarder the way the daemon does every cycle (``follow`` for the
running driver, then ``flush``) and checks the exact sequence received:
no line twice, none missing, in order.

Containers keep their counter in ``/tmp/n`` so a restarted container goes
on numbering where it stopped; gates (files created with ``docker exec``)
decide when a container prints its next batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from edge_core.cloud.mqtt import MqttConfig, MqttSession
from edge_core.drivers.logs import FollowTarget, LogForwarder
from edge_core.runtime import DockerRuntime
from tests.emulator.broker import Broker
from tests.support.docker_helpers import create_container, run_container
from tests.support.mqtt import Recorder, payloads

pytestmark = pytest.mark.integration

TWIN = "5d2e0000-0000-4000-8000-000000000001"

# Prints the next $BATCH numbered lines, then waits; the count survives a
# restart of the container because /tmp/n is in its own file system.
NUMBERED = (
    "n=$(cat /tmp/n 2>/dev/null || echo 0); end=$((n + BATCH)); "
    'while [ $n -lt $end ]; do echo "line $n"; n=$((n + 1)); echo $n > /tmp/n; done; '
    "exec sleep 3600"
)


def numbered(batch: int) -> list[str]:
    return ["sh", "-c", NUMBERED.replace("BATCH", str(batch))]


def gated(batches: list[int]) -> list[str]:
    """Print ``batches[0]`` lines, then each next batch once ``/tmp/go<k>``
    exists, numbering on from the last."""
    steps = []
    total = 0
    for index, size in enumerate(batches):
        if index:
            steps.append(f"while [ ! -e /tmp/go{index} ]; do usleep 20000; done")
        total += size
        steps.append(f'while [ $i -lt {total} ]; do echo "line $i"; i=$((i + 1)); done')
    return ["sh", "-c", "i=0; " + "; ".join(steps) + "; exec sleep 3600"]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def lines(recorder: Recorder, topic: str) -> list[str]:
    return [str(p["message"]) for p in payloads(recorder.messages(topic))]


def arrived(recorder: Recorder, topic: str, count: int) -> Callable[[], bool]:
    """Whether ``count`` lines have arrived on ``topic``."""
    return lambda: len(lines(recorder, topic)) >= count


def expected(count: int, start: int = 0) -> list[str]:
    return [f"line {i}" for i in range(start, start + count)]


@pytest.fixture
def session(mqtt_broker: Broker) -> Iterator[MqttSession]:
    """The edge core's MQTT session on the test broker, reconnecting fast."""
    config = MqttConfig(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        use_tls=False,
        ca_cert=None,
        username="",
        password=None,
        protocol=5,
        connect_timeout=5.0,
        reconnect_min_delay=0.1,
        reconnect_max_delay=0.5,
    )
    mqtt = MqttSession(config)
    mqtt.start()
    assert mqtt.wait_connected(10), "the MQTT session did not connect"
    try:
        yield mqtt
    finally:
        mqtt.stop()


@pytest.fixture
def recorder(mqtt_broker: Broker) -> Iterator[Recorder]:
    with Recorder(mqtt_broker) as witness:
        yield witness


class Driver:
    """One test container followed by one forwarder, cycled like the daemon."""

    def __init__(
        self,
        runtime: DockerRuntime,
        client: docker.DockerClient,
        fingerprint: str,
        forwarder: LogForwarder,
        name: str,
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.fingerprint = fingerprint
        self.forwarder = forwarder
        self.name = name
        self.topic = f"test/{fingerprint}/twin/{TWIN}/driverlog"

    def cycle(self) -> None:
        """Follow the container if it runs, then send what waits."""
        view = self.runtime.inspect(self.name, fingerprint=self.fingerprint)
        if view is not None and view.running:
            self.forwarder.follow(
                FollowTarget(self.name, TWIN, "cw-test/busybox:1", self.topic)
            )
        self.forwarder.flush()

    def cycle_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within 30 s")
            self.cycle()
            time.sleep(0.05)

    def detached(self) -> None:
        """Wait until no follower is attached (the container stopped)."""
        wait_until(lambda: not self.forwarder.following(), "the follower to end")

    def printed(self, count: int) -> None:
        """Wait until the container's own log holds ``count`` lines."""

        def done() -> bool:
            stream = self.runtime.logs(
                self.name, follow=False, fingerprint=self.fingerprint
            )
            return len(list(stream)) >= count

        wait_until(done, f"{self.name} to print {count} lines")

    def open_gate(self, index: int) -> None:
        exec_id = self.client.api.exec_create(self.name, ["touch", f"/tmp/go{index}"])
        self.client.api.exec_start(exec_id)


@pytest.fixture
def make_driver(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    session: MqttSession,
) -> Iterator[Callable[..., Driver]]:
    forwarders: list[LogForwarder] = []

    def make(command: list[str], image: str, **options: Any) -> Driver:
        options.setdefault("cold_start_tail", 500)
        forwarder = LogForwarder(
            docker_runtime,
            session.publish,
            version="test",
            fingerprint=fingerprint,
            connected=lambda: session.is_connected,
            **options,
        )
        forwarders.append(forwarder)
        name = run_container(
            docker_runtime, fingerprint, image, command, suffix="driver"
        )
        return Driver(docker_runtime, docker_client, fingerprint, forwarder, name)

    yield make
    for forwarder in forwarders:
        forwarder.stop()


def test_restarted_container_resumes_without_gaps_or_duplicates(
    make_driver: Callable[..., Driver],
    recorder: Recorder,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    """After ``docker restart`` the lines printed while nobody followed the
    container arrive, and none of the earlier ones again."""
    driver = make_driver(numbered(20), test_image)
    driver.cycle_until(arrived(recorder, driver.topic, 20), "batch 1")

    for round_ in (1, 2):
        docker_client.api.restart(driver.name, timeout=0)
        driver.detached()
        driver.printed(20 * (round_ + 1))
        total = 20 * (round_ + 1)
        driver.cycle_until(
            arrived(recorder, driver.topic, total), f"the lines after restart {round_}"
        )
        driver.cycle()
        assert lines(recorder, driver.topic) == expected(total)


def test_killed_and_started_container_resumes_without_gaps_or_duplicates(
    make_driver: Callable[..., Driver],
    recorder: Recorder,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    """A container killed and started again is followed on from where its
    last forwarded line was."""
    driver = make_driver(numbered(15), test_image)
    driver.cycle_until(arrived(recorder, driver.topic, 15), "batch 1")

    docker_client.api.kill(driver.name)
    driver.detached()
    driver.cycle()  # the container is down: nothing to follow, nothing lost
    docker_client.api.start(driver.name)
    driver.printed(30)
    driver.cycle_until(arrived(recorder, driver.topic, 30), "batch 2")
    driver.cycle()
    assert lines(recorder, driver.topic) == expected(30)


def test_recreated_container_is_forwarded_from_its_first_line(
    make_driver: Callable[..., Driver],
    recorder: Recorder,
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
) -> None:
    """A new container under the same name is read from its beginning, and
    the old one's lines are not sent again."""
    driver = make_driver(numbered(10), test_image, cold_start_tail=3)
    driver.printed(10)
    driver.cycle_until(arrived(recorder, driver.topic, 3), "the tail")

    docker_runtime.remove(driver.name, fingerprint=fingerprint)
    driver.detached()
    create_container(
        docker_runtime,
        fingerprint,
        test_image,
        suffix="driver",
        command=numbered(12),
    )
    docker_runtime.start(driver.name, fingerprint=fingerprint)
    driver.printed(12)
    driver.cycle_until(arrived(recorder, driver.topic, 15), "new lines")
    driver.cycle()
    assert lines(recorder, driver.topic) == expected(3, start=7) + expected(12)


def test_lines_printed_while_the_broker_is_down_arrive_in_order_after_it(
    make_driver: Callable[..., Driver],
    mqtt_broker: Broker,
    session: MqttSession,
    test_image: str,
) -> None:
    """Lines printed while the broker is stopped wait, and arrive after it
    comes back, in order, once each, before the lines printed after it."""
    with Recorder(mqtt_broker) as before:
        driver = make_driver(gated([10, 25, 5]), test_image)
        driver.cycle_until(arrived(before, driver.topic, 10), "batch 1")
        mqtt_broker.stop()
        wait_until(lambda: not session.is_connected, "the session to notice")

    driver.open_gate(1)
    driver.printed(35)
    wait_until(lambda: driver.forwarder.buffered == 25, "25 lines to be held")
    driver.cycle()
    assert driver.forwarder.buffered == 25

    mqtt_broker.start()
    with Recorder(mqtt_broker) as after:
        assert session.wait_connected(10), "the session did not reconnect"
        driver.cycle_until(arrived(after, driver.topic, 25), "held lines")
        driver.open_gate(2)
        driver.cycle_until(arrived(after, driver.topic, 30), "batch 3")
        driver.cycle()
        received = lines(before, driver.topic) + lines(after, driver.topic)
    assert received == expected(40)
    assert (driver.forwarder.buffered, driver.forwarder.dropped) == (0, 0)


def test_an_outage_longer_than_the_buffer_keeps_the_newest_lines(
    make_driver: Callable[..., Driver],
    mqtt_broker: Broker,
    session: MqttSession,
    test_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With more lines than the buffer holds, the newest arrive in order, the
    others are counted and reported in one warning."""
    with Recorder(mqtt_broker) as before:
        driver = make_driver(gated([5, 30]), test_image, buffer_lines=8)
        driver.cycle_until(arrived(before, driver.topic, 5), "batch 1")
        mqtt_broker.stop()
        wait_until(lambda: not session.is_connected, "the session to notice")

    driver.open_gate(1)
    driver.printed(35)
    wait_until(lambda: driver.forwarder.dropped == 22, "22 lines to be dropped")
    assert driver.forwarder.buffered == 8

    mqtt_broker.start()
    warnings = caplog.at_level(logging.WARNING, logger="edge_core.drivers.logs")
    with warnings, Recorder(mqtt_broker) as after:
        assert session.wait_connected(10), "the session did not reconnect"
        driver.cycle_until(arrived(after, driver.topic, 8), "held")
        received = lines(after, driver.topic)
    assert received == expected(8, start=27)
    ours = [r for r in caplog.records if r.name == "edge_core.drivers.logs"]
    assert [(r.levelno, r.getMessage()) for r in ours] == [
        (
            logging.WARNING,
            "dropped 22 driver log lines while the MQTT broker was unreachable",
        )
    ]
