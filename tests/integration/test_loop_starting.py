"""``driver_starting`` cards through the whole daemon (protocol.md 1.8).

At the first boot every driver's launch opens a forced ``driver_starting``
card that follows the launch and is resolved once the container runs; a
second start of the edge core adopts the running containers and opens no
card at all. The whole edge core runs as a process against the backend
emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    alert_posts,
    alerts_of,
    driver_environment,
    start_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration


def test_first_boot_opens_one_card_per_driver_and_a_restart_none(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Each driver gets one forced card, resolved after ``container_running``;
    after SIGTERM and a new start the containers are adopted and no new
    card is opened."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    edge = start_loop_edge(new_edge, environment, docker_client)

    for twin_uuid in environment.twin_uuids:
        edge.wait_for(
            lambda uid=twin_uuid: alerts_of(
                emulator, uid, "driver_starting", status="resolved"
            ),
            timeout=STARTUP_TIMEOUT,
            what=f"the starting card of {twin_uuid} resolved",
        )
        [post] = alert_posts(emulator, "driver_starting", twin_uuid)
        assert post["force"] is True
        assert post["severity"] == "info"
        assert post["metadata"]["container_name"] == container_name(twin_uuid)
        [card] = alerts_of(emulator, twin_uuid, "driver_starting")
        assert card["metadata"]["phase"] == "container_running"
        assert card["metadata"]["overall_progress_percent"] == 80
        assert not card["metadata"].get("failed")
        puts = [
            request.body["metadata"]["phase"]
            for request in emulator.requests("PUT", rf"^/api/v1/alerts/{card['uuid']}$")
        ]
        assert puts[-1] == "container_running"
    posted = len(alert_posts(emulator, "driver_starting"))
    assert posted == len(environment.twin_uuids)

    assert edge.stop(timeout=10) == 0
    emulator.clear_requests()
    edge.start()
    for twin_uuid in environment.twin_uuids:
        edge.wait_for_log(
            f"adopted running container {container_name(twin_uuid)}",
            timeout=STARTUP_TIMEOUT,
        )
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    assert alert_posts(emulator, "driver_starting") == []
    assert not emulator.requests("PUT", r"^/api/v1/alerts/")
    for twin_uuid in environment.twin_uuids:
        assert not alerts_of(emulator, twin_uuid, "driver_starting", status="active")
