"""Driver images and engine limits, seen through the whole edge core.

A driver whose image can be neither found nor pulled fails on its own with
a reason a person can act on, while a driver whose image lives in a real
registry is pulled with its progress mirrored to the twin's driverlog. An
engine that refuses ``--privileged`` turns the default launch into a
failure that names the setting to change.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError, NotFound

from edge_core.model.spec import LABEL_FINGERPRINT
from tests.emulator.broker import Broker, free_port
from tests.emulator.server import Emulator
from tests.support.edge import (
    EdgeProcesses,
    check,
    container_name,
    example_environment,
    prepare_edge,
)
from tests.support.images import (
    DRIVER_COMMAND,
    DRIVER_IMAGE,
    build_unique_image,
    ensure_driver_image,
)
from tests.support.mqtt import Recorder
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def driver_image(docker_client: docker.DockerClient) -> str:
    """The busybox test driver image, built locally when needed."""
    ensure_driver_image(docker_client)
    return DRIVER_IMAGE


@pytest.fixture
def edges(fingerprint: str) -> Iterator[EdgeProcesses]:
    """Edge core processes of one test, ended before its containers are removed."""
    with EdgeProcesses() as processes:
        yield processes


@pytest.fixture
def pushed_driver(
    docker_client: docker.DockerClient, registry: LocalRegistry
) -> Iterator[str]:
    """A unique test driver image that exists only in the local registry."""
    local = f"cw-test/unique-driver-{uuid.uuid4().hex[:12]}:1"
    build_unique_image(docker_client, local, command=DRIVER_COMMAND)
    ref = registry.push(docker_client, local, "cw-test/robot-driver", "1.0.0")
    docker_client.api.remove_image(local)
    yield ref
    with contextlib.suppress(NotFound, APIError):
        docker_client.api.remove_image(ref, force=True)


def running_names(client: docker.DockerClient, fingerprint: str) -> set[str]:
    label = f"{LABEL_FINGERPRINT}={fingerprint}"
    found = client.api.containers(filters={"label": label, "status": "running"})
    return {item["Names"][0].lstrip("/") for item in found}


def driver_lines(recorder: Recorder, twin_uuid: str) -> list[str]:
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"
    return [
        str(m.payload["message"])
        for m in recorder.messages(topic)
        if isinstance(m.payload, dict)
    ]


def rows_for(report: dict[str, Any], twin_uuid: str) -> list[dict[str, Any]]:
    return [row for row in report["containers"] if row["twin_uuid"] == twin_uuid]


def test_unpullable_image_fails_alone_and_registry_image_is_pulled(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    edges: EdgeProcesses,
    docker_client: docker.DockerClient,
    pushed_driver: str,
    tmp_path: Path,
) -> None:
    """A driver image that is missing and unpullable fails that driver with a
    clear reason, while a registry image is really pulled with its progress
    on driverlog and its driver starts."""
    missing = f"127.0.0.1:{free_port()}/nope:1"
    assert docker_client.api.images(name=pushed_driver) == []
    example = example_environment(
        fingerprint, robot_image=pushed_driver, camera_image=missing
    )
    with Recorder(mqtt_broker) as recorder:
        edge = prepare_edge(
            edges,
            tmp_path,
            emulator=emulator,
            broker=mqtt_broker,
            fingerprint=fingerprint,
            example=example,
        )
        edge.start()
        edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
        recorder.wait_for(
            lambda _seen: (
                f"docker pull completed for image {pushed_driver}"
                in driver_lines(recorder, example.robot)
            ),
            timeout=10,
            what="the pull's completion line",
        )
        robot = driver_lines(recorder, example.robot)
        camera = driver_lines(recorder, example.overhead)

    assert running_names(docker_client, fingerprint) == {container_name(example.robot)}
    assert docker_client.api.images(name=pushed_driver) != []

    started = robot.index(f"docker pull started for image {pushed_driver}")
    completed = robot.index(f"docker pull completed for image {pushed_driver}")
    progress = [
        line for line in robot[started:completed] if line.startswith("docker pull: ")
    ]
    assert progress, robot
    assert any("Pull complete" in line for line in progress)
    assert f"docker pull started for image {missing}" in camera
    failed = [line for line in camera if line.startswith("docker pull failed")]
    assert failed and missing in failed[0]

    errors = [line for line in edge.log_lines() if "[ERROR]" in line]
    assert any(missing in line for line in errors)
    rows = rows_for(edge.status_json(), example.overhead)
    assert len(rows) == 1
    assert rows[0]["state"] == "not running"
    assert "image_missing" in rows[0]["note"]
    assert missing in rows[0]["note"]
    assert edge.running


def engine_refuses_privileged(client: docker.DockerClient, image: str) -> bool:
    """Whether this engine refuses to start a privileged container."""
    name = f"cw-test-privileged-{uuid.uuid4().hex[:12]}"
    container = client.containers.create(image, ["true"], name=name, privileged=True)
    try:
        container.start()
    except APIError:
        return True
    finally:
        container.remove(force=True)
    return False


def test_default_privileged_launch_names_the_setting_when_refused(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    edges: EdgeProcesses,
    driver_image: str,
    test_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """With CYBERWAVE_DRIVER_PRIVILEGED at its default the drivers are
    privileged; an engine that refuses that fails them with a reason naming
    the setting, which status shows."""
    example = example_environment(fingerprint)
    edge = prepare_edge(
        edges,
        tmp_path,
        emulator=emulator,
        broker=mqtt_broker,
        fingerprint=fingerprint,
        example=example,
        env={"CYBERWAVE_DRIVER_PRIVILEGED": None},
    )
    edge.start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)

    if not engine_refuses_privileged(docker_client, test_image):
        names = {container_name(t) for t in example.drivers}
        assert running_names(docker_client, fingerprint) == names
        for name in names:
            attrs = docker_client.api.inspect_container(name)
            assert attrs["HostConfig"]["Privileged"] is True
        return

    assert running_names(docker_client, fingerprint) == set()
    report = edge.status_json()
    for twin_uuid in example.drivers:
        rows = rows_for(report, twin_uuid)
        assert len(rows) == 1, report["containers"]
        assert rows[0]["state"] == "not running"
        assert "CYBERWAVE_DRIVER_PRIVILEGED=false" in rows[0]["note"]
    errors = [line for line in edge.log_lines() if "[ERROR]" in line]
    assert len(errors) == len(example.drivers)
    assert all("CYBERWAVE_DRIVER_PRIVILEGED" in line for line in errors)
    assert check(report, "daemon")["ok"] is True
    assert edge.running


def test_stalled_pull_holds_back_only_its_own_driver(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    edges: EdgeProcesses,
    docker_client: docker.DockerClient,
    driver_image: str,
    stalled_registry: Any,
    tmp_path: Path,
) -> None:
    """A driver whose image is local runs while another driver's pull stalls."""
    stalled = f"{stalled_registry.address}/cw-test/stuck-driver:1"
    example = example_environment(
        fingerprint, robot_image=driver_image, camera_image=stalled
    )
    edge = prepare_edge(
        edges,
        tmp_path,
        emulator=emulator,
        broker=mqtt_broker,
        fingerprint=fingerprint,
        example=example,
        env={"CYBERWAVE_DOCKER_PULL_TIMEOUT_SECONDS": "600"},
    )
    edge.start()
    robot = container_name(example.robot)
    edge.wait_for(
        lambda: robot in running_names(docker_client, fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="the robot driver running beside the stalled pull",
    )
    assert "driver pass done" not in edge.log_text()
    assert container_name(example.overhead) not in running_names(
        docker_client, fingerprint
    )
