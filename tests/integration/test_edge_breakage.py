"""The whole edge core treated the way a hostile field engineer treats it.

Each test sets up one situation an operator meets on a real device (a
container of someone else holding a driver's name, a driver removed by
hand, a backend that never answers while SIGTERM arrives) and checks what
README.md and protocol.md promise: the edge core keeps going, never touches
what is not its own, exits promptly when asked, and ``status`` says what
is wrong with a non-zero exit code.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    container_name,
    example_environment,
    running_in_status,
    status_row,
)

pytestmark = pytest.mark.integration


def test_foreign_container_holding_a_driver_name_fails_that_driver_alone(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A container without our fingerprint label that holds a driver's name is
    left untouched, that driver fails with a reason status shows, the other
    driver runs and the pass neither crashes nor repeats back to back."""
    example = example_environment(fingerprint)
    robot_name = container_name(example.robot)
    foreign = docker_client.containers.run(
        driver_image,
        name=robot_name,
        environment={"DRIVER_SCRIPT": "while true; do sleep 3600; done"},
        detach=True,
    )
    try:
        edge = new_edge(example).start()
        edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
        edge.wait_for_log(f"{container_name(example.overhead)} is running", timeout=5)
        # A few more cycles: a failing pass must not be rerun at once.
        edge.wait_for(
            lambda: len(emulator.requests("POST", r"/edges/discover$")) >= 3,
            timeout=30,
            what="three keepalives",
        )

        foreign.reload()
        assert foreign.status == "running"
        assert foreign.name == robot_name
        log = edge.log_text()
        assert "Traceback" not in log
        assert "driver pass failed" not in log
        assert log.count("driver pass done") <= 2
        code, report = edge.status()
        robot = status_row(report, robot_name)
        assert robot["ok"] is False
        assert "not managed by this edge core" in robot["note"]
        assert status_row(report, container_name(example.overhead))["ok"] is True
        assert report["healthy"] is False
        assert code == 1
        assert edge.stop(timeout=10) == 0
    finally:
        foreign.remove(force=True)


def test_drivers_killed_or_removed_by_hand_show_in_status(
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """docker kill and docker rm -f on the drivers leave the daemon running,
    and status marks the killed one exited and the removed one missing,
    with a non-zero exit code."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
    code, report = edge.status()
    assert code == 0, report

    robot, overhead = container_name(example.robot), container_name(example.overhead)
    docker_client.containers.get(robot).kill()
    docker_client.containers.get(overhead).remove(force=True)
    edge.wait_for(
        lambda: docker_client.containers.get(robot).status == "exited",
        timeout=10,
        what="the killed driver to exit",
    )

    code, report = edge.status()
    assert edge.running
    assert status_row(report, robot)["state"] == "exited"
    assert status_row(report, robot)["ok"] is False
    missing = status_row(report, overhead)
    assert missing["state"] == "missing"
    assert "removed outside the edge core" in missing["note"]
    assert missing["ok"] is False
    assert report["healthy"] is False
    assert code == 1
    assert edge.stop(timeout=10) == 0


def test_sigterm_while_the_backend_never_answers_at_boot_exits_at_once(
    emulator: Emulator, new_edge: EdgeFactory
) -> None:
    """With the token check hanging (no answer, default REST timeouts),
    SIGTERM still ends the edge core with exit code 0 within 10 s."""
    emulator.fault(r"/users/workspaces$", hang=True)
    edge = new_edge(None, env={"CYBERWAVE_REST_TIMEOUT_SECONDS": None}).start()
    edge.wait_for(
        lambda: emulator.requests("GET", r"/users/workspaces$"),
        timeout=STARTUP_TIMEOUT,
        what="the token check",
    )

    assert edge.stop(timeout=10) == 0
    assert "Traceback" not in edge.log_text()


@pytest.fixture
def silent_port() -> Iterator[tuple[socket.socket, int]]:
    """A local port that accepts TCP connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    try:
        yield server, server.getsockname()[1]
    finally:
        server.close()


def test_sigterm_while_the_broker_never_answers_at_boot_exits_at_once(
    new_edge: EdgeFactory, silent_port: tuple[socket.socket, int]
) -> None:
    """A broker port that accepts TCP and never sends CONNACK, with the
    default connect timeout and attempts, does not hold SIGTERM back."""
    server, port = silent_port
    edge = new_edge(
        None,
        broker_port=port,
        env={
            "CYBERWAVE_MQTT_CONNECT_TIMEOUT": None,
            "CYBERWAVE_MQTT_CONNECT_ATTEMPTS": None,
        },
    ).start()
    connection = edge.wait_for(
        lambda: _accept(server), timeout=STARTUP_TIMEOUT, what="the broker check"
    )
    assert connection is not None
    try:
        assert edge.stop(timeout=10) == 0
    finally:
        connection.close()


def _accept(server: socket.socket) -> socket.socket | None:
    try:
        connection, _ = server.accept()
    except OSError:
        return None
    return connection


def test_twin_uuid_that_leaves_the_config_dir_writes_nothing_outside(
    fingerprint: str, new_edge: EdgeFactory, driver_image: str, tmp_path: Path
) -> None:
    """A linked twin whose uuid is a relative path gets no twin file outside
    the config dir and no container, while the other drivers start."""
    example = example_environment(fingerprint)
    escape = f"../escaped-{uuid.uuid4().hex[:8]}"
    evil = dict(example.twins[0], uuid=escape, name="path twin")
    example.fixture["twins"].append(evil)
    edge = new_edge(example).start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)

    assert not (edge.config_dir / f"{escape}.json").exists()
    assert list(tmp_path.glob("escaped-*")) == []
    assert "Traceback" not in edge.log_text()
    assert running_in_status(edge.status_json()) == example.driver_names
    assert edge.stop(timeout=10) == 0
