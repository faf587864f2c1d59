"""The running edge core revives its drivers (spec.md "Driver revival").

A driver killed by hand is relaunched by the loop with a ``driver_health``
alert raised while it is down and resolved once it runs again; a driver
that exits cleanly once is running again; a driver removed by hand comes
back only after ``CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS``, and never
when that setting is 0 or less. The whole edge core runs as a process
against the backend emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import datetime as dt
import time

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import running_names
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    container_name,
    status_row,
)
from tests.support.loop import (
    IDLE_SCRIPT,
    SLEEP_FOREVER,
    alerts_of,
    cpu_seconds,
    driver_environment,
    driver_state,
    inspect,
    is_running,
    start_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration

# Exits cleanly on its first run; Docker's restart keeps the container's
# file system, so the second run finds the marker and stays up.
EXITS_ONCE_SCRIPT = (
    "if [ -e /tmp/ran-once ]; then echo INFO second run; "
    f"{SLEEP_FOREVER}; fi; touch /tmp/ran-once; echo INFO first run; "
    "sleep 2; exit 0"
)


def started_at(attrs: dict[str, object]) -> dt.datetime:
    state = attrs["State"]
    assert isinstance(state, dict)
    return dt.datetime.fromisoformat(str(state["StartedAt"])[:26] + "+00:00")


def test_a_killed_driver_is_revived_with_a_health_alert(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """``docker kill`` leaves the driver exited (Docker does not restart a
    killed container); the loop raises ``driver_health``, relaunches it under
    the same name, and resolves the alert once it runs."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    victim_twin, other_twin = environment.twin_uuids
    victim, other = container_name(victim_twin), container_name(other_twin)
    edge = start_loop_edge(new_edge, environment, docker_client)
    killed = inspect(docker_client, victim)
    untouched = inspect(docker_client, other)
    assert killed is not None and untouched is not None

    docker_client.api.kill(victim)
    edge.wait_for(
        lambda: alerts_of(emulator, victim_twin, "driver_health"),
        timeout=STARTUP_TIMEOUT,
        what="a driver_health alert for the killed driver",
    )
    edge.wait_for(
        lambda: (
            is_running(docker_client, victim)
            and alerts_of(emulator, victim_twin, "driver_health", status="resolved")
        ),
        timeout=STARTUP_TIMEOUT,
        what="the killed driver running again and its alert resolved",
    )

    [alert] = alerts_of(emulator, victim_twin, "driver_health")
    assert alert["severity"] == "warning"
    assert victim in alert["description"]
    assert "exited with code 137" in alert["description"]
    assert alert["environment_uuid"] == environment.environment_uuid
    log = edge.log_text()
    assert log.index(f"driver container {victim} stopped") < log.index(
        f"driver container {victim} is running again"
    )
    assert not alerts_of(emulator, other_twin, "driver_health")
    again = inspect(docker_client, other)
    assert again is not None and again["Id"] == untouched["Id"]
    assert again["State"]["StartedAt"] == untouched["State"]["StartedAt"]


def test_a_driver_that_exits_cleanly_once_runs_again(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver that exits with 0 after its first start is running again,
    and its second run is the one that stays up."""
    environment = driver_environment(fingerprint, [EXITS_ONCE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)

    def second_run() -> bool:
        if not is_running(docker_client, name):
            return False
        logs = docker_client.api.logs(name).decode("utf-8", "replace")
        return "INFO second run" in logs

    edge.wait_for(second_run, timeout=STARTUP_TIMEOUT, what="the driver's second run")
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert is_running(docker_client, name)
    row = status_row(edge.status_json(), name)
    assert row["state"] == "running"
    assert row["ok"] is True, row


def test_a_removed_driver_comes_back_after_the_removed_revival_delay(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """``docker rm -f`` of a driver raises ``driver_health``; status says it
    waits for CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS, and the driver is
    created again no earlier than that, then its alert is resolved."""
    delay = 4.0
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    victim_twin, other_twin = environment.twin_uuids
    victim, other = container_name(victim_twin), container_name(other_twin)
    edge = start_loop_edge(
        new_edge,
        environment,
        docker_client,
        env={"CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS": str(delay)},
    )
    untouched = inspect(docker_client, other)
    assert untouched is not None

    removed_at = dt.datetime.now(dt.UTC)
    docker_client.api.remove_container(victim, force=True)
    edge.wait_for(
        lambda: alerts_of(emulator, victim_twin, "driver_health"),
        timeout=STARTUP_TIMEOUT,
        what="a driver_health alert for the removed driver",
    )
    edge.wait_for(
        lambda: "recreated in" in str(driver_state(edge, victim).get("reason")),
        timeout=STARTUP_TIMEOUT,
        what="the daemon holding the removed driver",
    )
    row = status_row(edge.status_json(), victim)
    assert row["state"] == "missing", row
    assert "removed outside the edge core" in row["note"]

    edge.wait_for(
        lambda: (
            is_running(docker_client, victim)
            and alerts_of(emulator, victim_twin, "driver_health", status="resolved")
        ),
        timeout=STARTUP_TIMEOUT,
        what="the removed driver running again and its alert resolved",
    )
    back = inspect(docker_client, victim)
    assert back is not None
    assert (started_at(back) - removed_at).total_seconds() >= delay
    [alert] = alerts_of(emulator, victim_twin, "driver_health")
    assert "removed" in alert["description"]
    again = inspect(docker_client, other)
    assert again is not None and again["Id"] == untouched["Id"]


def test_a_removed_driver_stays_gone_when_removed_revival_is_off(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS=0 a driver removed by
    hand is not recreated, status says why and how to get it back, and the
    other driver keeps running."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    victim_twin, other_twin = environment.twin_uuids
    victim, other = container_name(victim_twin), container_name(other_twin)
    edge = start_loop_edge(
        new_edge,
        environment,
        docker_client,
        env={"CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS": "0"},
    )

    docker_client.api.remove_container(victim, force=True)
    edge.wait_for(
        lambda: "0 or less" in str(driver_state(edge, victim).get("reason")),
        timeout=STARTUP_TIMEOUT,
        what="the daemon holding the removed driver for good",
    )
    # Holding a driver is idle work: no pass after pass while it lasts.
    used, began = cpu_seconds(edge.pid), time.monotonic()
    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    busy = cpu_seconds(edge.pid) - used
    assert busy < 0.3 * (time.monotonic() - began), f"{busy:.2f} s of CPU"

    assert inspect(docker_client, victim) is None
    assert running_names(docker_client, fingerprint) == {other}
    row = status_row(edge.status_json(), victim)
    assert row["state"] == "missing", row
    assert "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS" in row["note"]
    assert "restart the edge core" in row["note"]
    assert alerts_of(emulator, victim_twin, "driver_health", status="active")
