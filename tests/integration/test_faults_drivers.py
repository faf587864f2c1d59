"""Driver containers that die, crash in a loop or exit cleanly (4.11, 7b 23).

Each test breaks one driver of a running edge core on the real engine
and checks that the edge core brings it back or, when it crash-loops,
stops it and says so, while the other driver keeps running untouched:
same container, same process start, no restart.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    container_name,
    example_environment,
    keepalives,
    status_row,
)
from tests.support.faults import ContainerFact, RunningWatch, container_facts

pytestmark = pytest.mark.integration

QUICK_REVIVAL = {
    # Revive a driver at the first cycle after it went down.
    "CYBERWAVE_DRIVER_REVIVAL_DEBOUNCE_SECONDS": "0.5",
}

# Runs two seconds (the startup probe sees it up), then crashes at once at
# every restart Docker gives it, as a driver does when its device is gone.
CRASH_LOOP_SCRIPT = (
    "if [ -f /tmp/ran ]; then echo ERROR device gone; exit 1; fi; "
    "touch /tmp/ran; echo INFO driver up; sleep 2; exit 1"
)

# Sleeps until told to stop, then exits 0: on SIGUSR1 (docker kill
# --signal, which Docker does not restart) or when /tmp/exit-now appears
# (an exit of its own, which the restart policy answers).
CLEAN_EXIT_SCRIPT = (
    "trap 'echo INFO stopping cleanly; exit 0' USR1; echo INFO driver up; "
    "while true; do if [ -f /tmp/exit-now ]; then rm /tmp/exit-now; "
    "echo INFO done, exiting; exit 0; fi; sleep 0.2; done"
)


def test_killed_driver_is_revived_and_the_other_is_untouched(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """docker kill (SIGKILL) on one driver: the edge core starts it again,
    raises and then resolves its driver_health alert, and the other driver
    keeps its container and process."""
    example = example_environment(fingerprint)
    edge = new_edge(example, env=QUICK_REVIVAL).start()
    wait_settled(edge, docker_client, fingerprint, example.driver_names)
    robot, overhead = container_name(example.robot), container_name(example.overhead)
    before = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, [overhead]) as watch:
        docker_client.api.kill(before[robot].id)
        edge.wait_for(
            lambda: _alerts(emulator, example.robot, "driver_health"),
            timeout=STARTUP_TIMEOUT,
            what="the driver_health alert of the killed driver",
        )
        edge.wait_for(
            lambda: _restarted(docker_client, fingerprint, robot, before[robot]),
            timeout=STARTUP_TIMEOUT,
            what="the killed driver to run again",
        )
        edge.wait_for(
            lambda: _all_resolved(_alerts(emulator, example.robot, "driver_health")),
            timeout=STARTUP_TIMEOUT,
            what="the driver_health alert to be resolved",
        )

    assert watch.samples > 0
    assert watch.problems == []
    after = container_facts(docker_client, fingerprint)
    assert set(after) == example.driver_names
    assert after[overhead] == before[overhead]
    assert after[robot].state == "running"
    health = _alerts(emulator, example.robot, "driver_health")
    assert len(health) == 1, health
    assert "exited with code 137" in str(health[0]["description"])
    assert _alerts(emulator, example.overhead, "driver_health") == []
    assert edge.running
    assert edge.stop(timeout=10) == 0


def test_crash_looping_driver_is_parked_and_flagged_while_the_other_runs(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver that exits 1 at every restart is stopped with restart policy
    "no", a driver_restart_loop alert is raised, status shows it flapping
    with its restarts, and the other driver runs all along untouched."""
    example = example_environment(fingerprint, robot_script=CRASH_LOOP_SCRIPT)
    edge = new_edge(example, env=QUICK_REVIVAL).start()
    robot, overhead = container_name(example.robot), container_name(example.overhead)
    edge.wait_for_log(f"{overhead} is running", timeout=STARTUP_TIMEOUT)
    before = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, [overhead]) as watch:
        alerts = edge.wait_for(
            lambda: _alerts(emulator, example.robot, "driver_restart_loop"),
            timeout=STARTUP_TIMEOUT,
            what="the driver_restart_loop alert",
        )
        parked = edge.wait_for(
            lambda: _parked(docker_client, fingerprint, robot),
            timeout=STARTUP_TIMEOUT,
            what="the crash-looping driver to be stopped",
        )
        # A few more cycles: a parked driver must stay stopped.
        seen = keepalives(emulator)
        edge.wait_for(
            lambda: keepalives(emulator) >= seen + 3,
            timeout=STARTUP_TIMEOUT,
            what="three more keepalives",
        )
        report = edge.status_json()

    assert watch.samples > 0
    assert watch.problems == []
    assert container_facts(docker_client, fingerprint)[overhead] == before[overhead]

    assert parked.restart_policy == "no"
    assert parked.exit_code == 1
    assert parked.restart_count >= 5
    still = container_facts(docker_client, fingerprint)[robot]
    assert still.state == "exited"
    assert still.id == parked.id

    alert = alerts[0]
    assert alert["status"] == "active"
    assert alert["metadata"]["container_name"] == robot
    assert alert["metadata"]["restarts"] > 4
    assert len(_alerts(emulator, example.robot, "driver_restart_loop")) == 1
    assert _alerts(emulator, example.overhead, "driver_restart_loop") == []

    row = status_row(report, robot)
    assert row["outcome"] == "flapping"
    assert row["restarts"] > 4
    assert row["parked_until"] is not None
    assert "flapping" in row["note"]
    assert row["ok"] is False
    assert status_row(report, overhead)["ok"] is True
    assert edge.running
    assert edge.stop(timeout=10) == 0


def test_driver_exiting_cleanly_is_running_again(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver that exits with code 0 runs again: an exit of its own is
    restarted in the same container, one Docker does not restart (stopped
    by a signal it handles) is revived by the edge core; neither counts as
    flapping and the other driver is untouched."""
    example = example_environment(fingerprint, robot_script=CLEAN_EXIT_SCRIPT)
    edge = new_edge(example, env=QUICK_REVIVAL).start()
    wait_settled(edge, docker_client, fingerprint, example.driver_names)
    robot, overhead = container_name(example.robot), container_name(example.overhead)
    before = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, [overhead]) as watch:
        # An exit of its own, with code 0.
        docker_client.api.exec_start(
            docker_client.api.exec_create(before[robot].id, ["touch", "/tmp/exit-now"])
        )
        first = edge.wait_for(
            lambda: _restarted(docker_client, fingerprint, robot, before[robot]),
            timeout=STARTUP_TIMEOUT,
            what="the driver to run again after exiting 0",
        )
        # An exit with code 0 that Docker leaves alone.
        docker_client.api.kill(first.id, signal="SIGUSR1")
        edge.wait_for(
            lambda: _alerts(emulator, example.robot, "driver_health"),
            timeout=STARTUP_TIMEOUT,
            what="the driver_health alert of the exited driver",
        )
        second = edge.wait_for(
            lambda: _restarted(docker_client, fingerprint, robot, first),
            timeout=STARTUP_TIMEOUT,
            what="the driver to be revived after a clean stop",
        )
        edge.wait_for(
            lambda: _all_resolved(_alerts(emulator, example.robot, "driver_health")),
            timeout=STARTUP_TIMEOUT,
            what="the driver_health alerts to be resolved",
        )
        report = edge.status_json()

    assert first.id == before[robot].id, "Docker restarts its own container"
    assert first.restart_count == before[robot].restart_count + 1
    assert second.state == "running"
    health = _alerts(emulator, example.robot, "driver_health")
    assert any("code 0" in str(alert["description"]) for alert in health), health
    assert _alerts(emulator, example.robot, "driver_restart_loop") == []
    assert status_row(report, robot)["ok"] is True
    assert status_row(report, robot)["outcome"] != "flapping"

    assert watch.samples > 0
    assert watch.problems == []
    assert container_facts(docker_client, fingerprint)[overhead] == before[overhead]
    assert edge.running
    assert edge.stop(timeout=10) == 0


# -- helpers -------------------------------------------------------------------


def wait_settled(
    edge: EdgeProcess,
    client: docker.DockerClient,
    fingerprint: str,
    names: set[str],
) -> None:
    """Wait until the daemon itself saw every driver of ``names`` running."""
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    wait_for_drivers(edge, client, fingerprint, names, what="the drivers")


def _alerts(
    emulator: Emulator, twin_uuid: str, alert_type: str, status: str | None = None
) -> list[dict[str, object]]:
    return emulator.alerts(twin_uuid=twin_uuid, alert_type=alert_type, status=status)


def _all_resolved(alerts: list[dict[str, object]]) -> bool:
    return bool(alerts) and all(alert["status"] == "resolved" for alert in alerts)


def _parked(
    client: docker.DockerClient, fingerprint: str, name: str
) -> ContainerFact | None:
    """The container's facts once it is stopped with restart policy "no"."""
    fact = container_facts(client, fingerprint).get(name)
    if fact is None or fact.state != "exited" or fact.restart_policy != "no":
        return None
    return fact


def _restarted(
    client: docker.DockerClient,
    fingerprint: str,
    name: str,
    previous: ContainerFact,
) -> ContainerFact | None:
    """The container's facts once it runs again after ``previous``."""
    fact = container_facts(client, fingerprint).get(name)
    if fact is None or fact.state != "running":
        return None
    if fact.id == previous.id and fact.started_at == previous.started_at:
        return None
    return fact
