"""Driver images and engine limits, seen through the whole edge core.

A driver whose image can be neither found nor pulled fails on its own with
a reason a person can act on, while a driver whose image lives in a real
registry is pulled with its progress mirrored to the twin's driverlog. An
engine that refuses ``--privileged`` turns the default launch into a
failure that names the setting to change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from docker.errors import APIError

from tests.emulator.broker import Broker, free_port
from tests.support.docker_helpers import pushed_unique_image, running_names
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    check,
    container_name,
    example_environment,
    status_rows,
)
from tests.support.images import DRIVER_COMMAND
from tests.support.mqtt import Recorder, payloads
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.integration


@pytest.fixture
def pushed_driver(
    docker_client: docker.DockerClient, registry: LocalRegistry
) -> Iterator[str]:
    """A unique test driver image that exists only in the local registry."""
    with pushed_unique_image(
        docker_client,
        registry,
        "cw-test/robot-driver",
        "1.0.0",
        command=DRIVER_COMMAND,
    ) as ref:
        yield ref


def driver_lines(recorder: Recorder, twin_uuid: str) -> list[str]:
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"
    return [str(p["message"]) for p in payloads(recorder.messages(topic))]


def test_unpullable_image_fails_alone_and_registry_image_is_pulled(
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    docker_client: docker.DockerClient,
    pushed_driver: str,
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
        edge = new_edge(example).start()
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

    assert any(missing in line for line in edge.error_lines())
    rows = status_rows(edge.status_json(), example.overhead)
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
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    test_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With CYBERWAVE_DRIVER_PRIVILEGED at its default the drivers are
    privileged; an engine that refuses that fails them with a reason naming
    the setting, which status shows."""
    example = example_environment(fingerprint)
    edge = new_edge(example, env={"CYBERWAVE_DRIVER_PRIVILEGED": None}).start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)

    if not engine_refuses_privileged(docker_client, test_image):
        assert running_names(docker_client, fingerprint) == example.driver_names
        for name in example.driver_names:
            attrs = docker_client.api.inspect_container(name)
            assert attrs["HostConfig"]["Privileged"] is True
        return

    assert running_names(docker_client, fingerprint) == set()
    report = edge.status_json()
    for twin_uuid in example.drivers:
        rows = status_rows(report, twin_uuid)
        assert len(rows) == 1, report["containers"]
        assert rows[0]["state"] == "not running"
        assert "CYBERWAVE_DRIVER_PRIVILEGED=false" in rows[0]["note"]
    errors = edge.error_lines()
    assert len(errors) == len(example.drivers)
    assert all("CYBERWAVE_DRIVER_PRIVILEGED" in line for line in errors)
    assert check(report, "daemon")["ok"] is True
    assert edge.running


def test_stalled_pull_holds_back_only_its_own_driver(
    fingerprint: str,
    new_edge: EdgeFactory,
    docker_client: docker.DockerClient,
    driver_image: str,
    stalled_registry: Any,
) -> None:
    """A driver whose image is local runs while another driver's pull stalls."""
    stalled = f"{stalled_registry.address}/cw-test/stuck-driver:1"
    example = example_environment(
        fingerprint, robot_image=driver_image, camera_image=stalled
    )
    edge = new_edge(
        example, env={"CYBERWAVE_DOCKER_PULL_TIMEOUT_SECONDS": "600"}
    ).start()
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
