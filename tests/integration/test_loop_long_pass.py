"""A driver pass stuck on a stalled registry hides nothing and blocks nothing.

One driver's image lives on a registry that accepts connections and never
answers, so the pass pulling it lasts until the stall timeout. Meanwhile
the drivers it already started are supervised (a kill is reported at
once), and a ``restart_edge_core`` cuts the pass short instead of waiting
for the pull. The whole edge core runs as a process against the backend
emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    alerts_of,
    driver_environment,
    driver_profile,
    inspect,
    is_running,
    prepare_loop_edge,
    wait_edge_uuid,
)
from tests.support.registry import StalledRegistry

pytestmark = pytest.mark.integration

# The engine gives up on the silent registry after about 25 s whatever
# this says; the log tells whether a pass waited for that.
STALL = {"CYBERWAVE_DOCKER_PULL_TIMEOUT_SECONDS": "180"}


def _with_stalled_driver(
    fingerprint: str, registry: StalledRegistry
) -> tuple[object, str, str]:
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    ready_twin, stalled_twin = environment.twin_uuids
    image = f"{registry.address}/cw-test/stuck-driver:1"
    environment.twin(stalled_twin)["metadata"]["drivers"] = driver_profile(
        IDLE_SCRIPT, image=image
    )
    return environment, ready_twin, stalled_twin


def test_a_driver_killed_during_a_stalled_boot_pass_is_reported(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    stalled_registry: StalledRegistry,
) -> None:
    """The first pass still pulls the other driver's image when the
    started one is killed: its driver_health alert and log line come at
    once, not when the pass ends."""
    environment, ready_twin, _ = _with_stalled_driver(fingerprint, stalled_registry)
    ready = container_name(ready_twin)
    edge = prepare_loop_edge(new_edge, environment, env=STALL).start()  # type: ignore[arg-type]
    edge.wait_for_log(f"{ready} is running", timeout=STARTUP_TIMEOUT)

    docker_client.api.kill(ready)

    edge.wait_for(
        lambda: alerts_of(emulator, ready_twin, "driver_health"),
        timeout=STARTUP_TIMEOUT,
        what="the killed driver's driver_health alert",
    )
    assert f"driver container {ready} stopped" in edge.log_text()
    assert "driver pass done" not in edge.log_text()


def test_a_restart_does_not_wait_for_a_stalled_pull(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    stalled_registry: StalledRegistry,
) -> None:
    """``restart_edge_core`` arrives while the boot pass waits for a
    stalled registry: the pass is cut short and the restart recreates the
    ready driver at once, before the pull could have timed out."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    environment, ready_twin, _ = _with_stalled_driver(fingerprint, stalled_registry)
    ready = container_name(ready_twin)
    edge = prepare_loop_edge(new_edge, environment, env=STALL).start()  # type: ignore[arg-type]
    edge_uuid = wait_edge_uuid(edge, emulator, fingerprint)
    edge.wait_for(
        lambda: is_running(docker_client, ready),
        timeout=STARTUP_TIMEOUT,
        what="the driver with a local image running",
    )
    edge.wait_for_log(
        f"listening for commands on edges/{edge_uuid}/command", timeout=STARTUP_TIMEOUT
    )
    before = inspect(docker_client, ready)
    assert before is not None

    emulator.restart_core(edge_uuid)

    def recreated() -> bool:
        now = inspect(docker_client, ready)
        return (
            now is not None
            and now["Id"] != before["Id"]
            and is_running(docker_client, ready)
        )

    edge.wait_for(
        recreated,
        timeout=STARTUP_TIMEOUT,
        what="the ready driver recreated by the restart",
    )
    log_text = edge.log_text()
    assert "cutting the driver pass short: restart_edge_core is waiting" in log_text
    # The boot pass's pull never came to an end of its own.
    assert "is not available" not in log_text
