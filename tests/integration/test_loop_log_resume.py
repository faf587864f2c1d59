"""Driver logs across a restart of the edge core itself (an upgrade, a crash).

A driver prints a numbered line every 0.2 s. The edge core forwarding it
is stopped (SIGTERM) or killed (SIGKILL) and started again while the
driver keeps running: the lines printed while no edge core ran arrive
after the restart, and no line of the cold-start tail is sent a second
time. After SIGKILL only lines forwarded since the last save of the read
positions may come again; none is lost.
"""

from __future__ import annotations

import re
import signal

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import driver_environment, start_loop_edge
from tests.support.mqtt import Recorder, payloads

pytestmark = pytest.mark.integration

COUNTER_SCRIPT = "i=0; while true; do i=$((i+1)); echo INFO line $i; sleep 0.2; done"
LINE = re.compile(r"^INFO line (\d+)$")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_restarted_edge_core_resumes_driver_logs_without_gaps_or_repeats(
    sig: signal.Signals,
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Every number the driver printed arrives on driverlog at least once,
    in order per run; after SIGTERM none arrives twice, after SIGKILL at
    most the few seconds of lines since the last position save do."""
    environment = driver_environment(new_edge.fingerprint, [COUNTER_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"

    with Recorder(mqtt_broker) as recorder:
        edge = start_loop_edge(new_edge, environment, docker_client)
        _wait_numbers(recorder, topic, 25)
        # Past the first position save (four 1 s loops on test timings).
        _wait_numbers(recorder, topic, 50)
        edge.stop(sig, timeout=15)
        stopped_at = _highest(recorder, topic)
        # The driver goes on printing while no edge core runs.
        edge.wait_for(
            lambda: _printed(docker_client, twin_uuid) >= stopped_at + 15,
            timeout=STARTUP_TIMEOUT,
            what="the driver printing on while the edge core is down",
            allow_exit=True,
        )
        edge.start()
        restarted_at = _printed(docker_client, twin_uuid)
        _wait_numbers(recorder, topic, restarted_at + 10)
        numbers = _numbers(recorder, topic)
        edge.stop(timeout=15)

    highest = max(numbers)
    assert set(range(1, highest + 1)) <= set(numbers), "a line was lost"
    repeated = len(numbers) - len(set(numbers))
    if sig == signal.SIGTERM:
        assert repeated == 0, numbers
    else:
        # At most what the last four loops forwarded (5 lines a second).
        assert repeated <= 4 * 5 + 5, numbers
    # Not the cold-start tail again: that would repeat everything.
    assert repeated < stopped_at // 2


# -- helpers -------------------------------------------------------------------


def _numbers(recorder: Recorder, topic: str) -> list[int]:
    found = []
    for payload in payloads(recorder.messages(topic)):
        match = LINE.match(str(payload.get("message", "")))
        if match:
            found.append(int(match.group(1)))
    return found


def _highest(recorder: Recorder, topic: str) -> int:
    return max(_numbers(recorder, topic), default=0)


def _wait_numbers(recorder: Recorder, topic: str, count: int) -> None:
    recorder.wait_for(
        lambda _seen: _highest(recorder, topic) >= count,
        timeout=STARTUP_TIMEOUT,
        what=f"line {count} on {topic}",
    )


def _printed(client: docker.DockerClient, twin_uuid: str) -> int:
    """The highest number the driver has printed so far."""
    tail = client.containers.get(container_name(twin_uuid)).logs(tail=5).decode()
    numbers = [int(m.group(1)) for m in map(LINE.match, tail.splitlines()) if m]
    return max(numbers, default=0)
