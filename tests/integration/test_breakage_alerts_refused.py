"""Alert calls the backend refuses or garbles while drivers launch.

The whole edge core runs as a process against the backend emulator,
Mosquitto and the Docker engine. Whatever the backend answers to the
alert calls (a 4xx, a 5xx, a 200 whose body is not JSON), the drivers
start and run, the edge core keeps going, and once the backend behaves
again the next alert reaches it.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    driver_environment,
    is_running,
    prepare_loop_edge,
    wait_cycles,
    wait_running,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [
        ("POST", 200, b"<html><body>gateway page</body></html>"),
        ("POST", 409, None),
        ("POST", 422, None),
        ("POST", 500, None),
        ("PUT", 422, None),
        ("GET", 200, b"not json"),
    ],
)
def test_drivers_start_whatever_the_alert_calls_get(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    method: str,
    status: int,
    body: Any,
) -> None:
    """Every alert call of ``method`` is answered badly while two drivers
    launch: both run, and once the fault is gone a driver removed by hand
    raises its driver_health alert."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT] * 2)
    fault = emulator.fault(r"^/api/v1/alerts", method=method, status=status, body=body)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={"CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS": "1"},
    ).start()
    wait_running(
        edge,
        docker_client,
        environment,
        what="every driver with the alert calls failing",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert emulator.requests(method, r"^/api/v1/alerts")

    emulator.remove_fault(fault)
    twin = environment.twin_uuids[0]
    name = container_name(twin)
    docker_client.containers.get(name).remove(force=True)

    def health_raised() -> bool:
        return any(
            a["alert_type"] == "driver_health" and a["twin_uuid"] == twin
            for a in emulator.alerts()
        )

    edge.wait_for(
        health_raised, timeout=STARTUP_TIMEOUT, what="the driver_health alert"
    )
    edge.wait_for(
        lambda: is_running(docker_client, name),
        timeout=STARTUP_TIMEOUT,
        what="the removed driver back",
    )
    assert edge.running
    assert "Traceback" not in edge.log_text()
