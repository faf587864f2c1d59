"""Restart loops at the edges of the rule: clean exits, Docker's own restarts,
a parked driver left alone, and one a person starts by hand.

The whole edge core runs against the emulator, Mosquitto and Docker with
a threshold of 2 in 60 s and a cool-off long enough that no retry happens
while a test watches.
"""

from __future__ import annotations

import io
import tarfile
import time

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    alerts_of,
    driver_environment,
    driver_state,
    inspect,
    prepare_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration

PARKING = {
    "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "2",
    "CYBERWAVE_DRIVER_RESTART_LOOP_WINDOW_SECONDS": "60",
    "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "120",
}


def _tar(file_name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo(file_name), io.BytesIO(b""))
    return buffer.getvalue()


def _parked(edge: object, name: str) -> bool:
    return driver_state(edge, name).get("outcome") == "flapping"  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 3])
def test_a_loop_of_quick_exits_is_parked_and_stays_stopped(
    code: int,
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver that exits at once, with code 0 or not, is restarted by
    Docker's policy faster than the loop looks; those restarts count, it is
    parked, and then neither Docker nor revival starts it again."""
    script = f"echo INFO up and out; sleep 0.3; exit {code}"
    environment = driver_environment(fingerprint, [script])
    [twin] = environment.twin_uuids
    name = container_name(twin)
    edge = prepare_loop_edge(new_edge, environment, env=PARKING).start()
    edge.wait_for(lambda: _parked(edge, name), timeout=STARTUP_TIMEOUT, what="parking")
    [alert] = alerts_of(emulator, twin, "driver_restart_loop")
    assert alert["status"] == "active"

    before = inspect(docker_client, name)
    assert before is not None
    assert before["HostConfig"]["RestartPolicy"]["Name"] == "no"
    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    after = inspect(docker_client, name)
    assert after is not None
    assert after["State"]["Status"] == "exited"
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["RestartCount"] == before["RestartCount"]
    assert _parked(edge, name)
    assert edge.stop(timeout=15) == 0


def test_a_parked_driver_started_by_hand_runs_and_stays_parked(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """``docker start`` of a parked driver is a person's decision: the edge
    core does not stop it again, keeps it flapping until its cool-off ends,
    and a further crash is not restarted by Docker (its policy is ``no``)."""
    script = (
        "if [ -e /tmp/fixed ]; then echo INFO fixed; "
        "while true; do sleep 3600; done; fi; "
        "echo ERROR no device; sleep 0.3; exit 1"
    )
    environment = driver_environment(fingerprint, [script])
    [twin] = environment.twin_uuids
    name = container_name(twin)
    edge = prepare_loop_edge(new_edge, environment, env=PARKING).start()
    edge.wait_for(lambda: _parked(edge, name), timeout=STARTUP_TIMEOUT, what="parking")
    # The person fixes the device (a file in the stopped container), starts it.
    docker_client.api.put_archive(name, "/tmp", _tar("fixed"))
    docker_client.api.start(name)
    started = time.monotonic()
    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    attrs = inspect(docker_client, name)
    assert attrs is not None
    assert attrs["State"]["Status"] == "running", time.monotonic() - started
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert _parked(edge, name)
    assert edge.stop(timeout=15) == 0
