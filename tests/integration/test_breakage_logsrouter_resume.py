"""Driver log lines held for an absent broker when the edge core restarts.

Lines read while the broker is down wait in the edge core's memory. If the
edge core is stopped before the broker comes back, those lines must be
read again by the next process, not skipped: the read positions kept on
disk may only cover lines that left the edge core.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.integration.test_loop_log_resume import (
    COUNTER_SCRIPT,
    _numbers,
    _printed,
    _wait_numbers,
)
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory
from tests.support.loop import driver_environment, start_loop_edge, wait_cycles
from tests.support.mqtt import Recorder

pytestmark = pytest.mark.integration


def test_lines_held_for_the_broker_at_a_restart_arrive_after_it(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The broker goes down, the driver prints on, the edge core is
    stopped (SIGTERM) while holding those lines and started again once the
    broker is back: every number arrives, none twice."""
    environment = driver_environment(new_edge.fingerprint, [COUNTER_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"

    with Recorder(mqtt_broker) as recorder:
        edge = start_loop_edge(new_edge, environment, docker_client)
        _wait_numbers(recorder, topic, 10)
        mqtt_broker.stop()
        down_at = _printed(docker_client, twin_uuid)
        edge.wait_for(
            lambda: _printed(docker_client, twin_uuid) >= down_at + 25,
            timeout=STARTUP_TIMEOUT,
            what="the driver printing on while the broker is down",
        )
        # Several loops, so the read positions are saved meanwhile.
        wait_cycles(edge, emulator, environment.environment_uuid, 6)
        assert edge.stop(timeout=15) == 0
        before = _numbers(recorder, topic)
    assert max(before) < down_at + 25

    mqtt_broker.start()
    # A new recorder, subscribed before the edge core is back.
    with Recorder(mqtt_broker) as recorder:
        edge.start()
        restarted_at = _printed(docker_client, twin_uuid)
        _wait_numbers(recorder, topic, restarted_at + 10)
        numbers = before + _numbers(recorder, topic)
        edge.stop(timeout=15)

    highest = max(numbers)
    missing = sorted(set(range(1, highest + 1)) - set(numbers))
    assert not missing, f"lines lost: {missing}"
    assert len(numbers) == len(set(numbers)), numbers
