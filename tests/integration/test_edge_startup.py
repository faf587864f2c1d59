"""The whole edge core on real parts: a first start, and a restart that adopts.

The edge core runs as a process against the backend emulator, a real
Mosquitto broker and the real Docker engine, with an environment like the
example one: a robot with its own driver and ``-e`` params, a child camera
attached to it, a camera whose driver comes from its asset, a twin of
another edge, and twins whose driver params are malformed.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from edge_core import __version__
from edge_core.model.spec import (
    LABEL_CREATED_BY,
    LABEL_FINGERPRINT,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
)
from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import managed
from tests.support.edge import (
    CAMERA_SCRIPT,
    ROBOT_SCRIPT,
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    ExampleEnvironment,
    check,
    container_name,
    example_environment,
    running_in_status,
    status_rows,
)
from tests.support.images import DRIVER_IMAGE
from tests.support.mqtt import Recorder, payloads

pytestmark = pytest.mark.integration

SESSION_ID = re.compile(r"^[\w-]+_live_[0-9a-f]{32}$")


@pytest.fixture
def recorder(mqtt_broker: Broker) -> Iterator[Recorder]:
    """Everything published on the test's broker."""
    with Recorder(mqtt_broker) as witness:
        yield witness


@dataclass(frozen=True)
class Started:
    """An edge core whose first driver pass has finished."""

    edge: EdgeProcess
    example: ExampleEnvironment
    emulator: Emulator
    recorder: Recorder
    fingerprint: str

    @property
    def config_dir(self) -> Path:
        return self.edge.config_dir


@pytest.fixture
def started(
    emulator: Emulator,
    recorder: Recorder,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
) -> Started:
    """The example environment (with two broken twins), started until its
    first driver pass is done."""
    example = example_environment(fingerprint, broken=2)
    edge = new_edge(example).start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
    return Started(edge, example, emulator, recorder, fingerprint)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def environment_of(attrs: dict[str, Any]) -> dict[str, str]:
    pairs = (item.partition("=") for item in attrs["Config"]["Env"])
    return {key: value for key, _, value in pairs}


def test_first_start_registers_the_edge_and_writes_its_files(started: Started) -> None:
    """The edge registers by fingerprint, keeps posting discover and writes
    edge.json, its state for status and twin files (0644) for its linked
    twins only."""
    emulator, example, config = started.emulator, started.example, started.config_dir

    registrations = emulator.requests("POST", r"^/api/v1/edges$")
    assert registrations
    assert registrations[0].body == {"fingerprint": started.fingerprint}
    edge = emulator.edge_by_fingerprint(started.fingerprint)
    assert edge is not None

    edge_file = config / "edge.json"
    assert mode(edge_file) == 0o644
    assert json.loads(edge_file.read_text())["uuid"] == edge["uuid"]
    assert mode(config / "fingerprint.json") == 0o644
    saved = json.loads((config / "fingerprint.json").read_text())
    assert saved == {"fingerprint": started.fingerprint}

    twins = {twin["uuid"]: twin for twin in example.twins}
    for twin_uuid in example.linked:
        path = config / f"{twin_uuid}.json"
        assert mode(path) == 0o644, path
        document = json.loads(path.read_text())
        assert document["uuid"] == twin_uuid
        assert document["name"] == twins[twin_uuid]["name"]
        assert document["asset"]["uuid"] == twins[twin_uuid]["asset_uuid"]
    assert not (config / f"{example.foreign}.json").exists()
    assert mode(config / "credentials.json") == 0o600
    # status may run in the owner's shell while the daemon runs as root.
    assert mode(config / "run") == 0o755
    assert mode(config / "run" / "edge-core-state.json") == 0o644

    discover = started.edge.wait_for(
        lambda: emulator.requests("POST", r"^/api/v1/edges/discover$"),
        timeout=10,
        what="POST /api/v1/edges/discover",
    )
    body = discover[0].body
    assert body["fingerprint"] == started.fingerprint
    assert re.fullmatch(r"\w+-\w+", body["platform"])
    assert isinstance(body["host_facts"], dict)
    assert emulator.token not in started.edge.log_text()


def test_first_start_runs_exactly_the_expected_driver_containers(
    started: Started, docker_client: docker.DockerClient
) -> None:
    """Only the robot and the overhead camera get a container, configured as
    protocol.md 4.4 to 4.7 say; the child camera and the other edge's twin
    get none."""
    example, config = started.example, started.config_dir
    containers = managed(docker_client, started.fingerprint)
    assert sorted(containers) == sorted(example.driver_names)

    for twin_uuid, script in (
        (example.robot, ROBOT_SCRIPT),
        (example.overhead, CAMERA_SCRIPT),
    ):
        attrs = containers[container_name(twin_uuid)]
        env = environment_of(attrs)
        assert attrs["State"]["Status"] == "running"
        assert attrs["Config"]["Image"] == DRIVER_IMAGE
        assert env["CYBERWAVE_TWIN_UUID"] == twin_uuid
        assert env["CYBERWAVE_API_KEY"] == started.emulator.token
        assert env["CYBERWAVE_TWIN_JSON_FILE"] == f"/app/{twin_uuid}.json"
        assert env["CYBERWAVE_BASE_URL"] == started.emulator.url
        assert env["CYBERWAVE_API_URL"] == started.emulator.url
        assert env["CYBERWAVE_DATA_BACKEND"] == "zenoh"
        assert env["CYBERWAVE_EDGE_CONFIG_DIR"] == "/app/.cyberwave"
        assert env["DRIVER_SCRIPT"] == script

        labels = attrs["Config"]["Labels"]
        assert labels[LABEL_TWIN] == twin_uuid
        assert re.fullmatch(r"[0-9a-f]{64}", labels[LABEL_SPEC_HASH])
        assert labels[LABEL_CREATED_BY] == f"cyberwave-edge-core/{__version__}"
        assert labels[LABEL_FINGERPRINT] == started.fingerprint

        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "host"
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["Init"] is True
        assert host["Privileged"] is False
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        twin_mount = mounts[f"/app/{twin_uuid}.json"]
        assert twin_mount["Source"] == str(config / f"{twin_uuid}.json")
        assert twin_mount["RW"] is True
        assert mounts["/app/.cyberwave"]["Source"] == str(config)
        assert mounts["/app/.cyberwave"]["RW"] is False

    robot = environment_of(containers[container_name(example.robot)])
    camera = environment_of(containers[container_name(example.overhead)])
    assert robot["CYBERWAVE_CHILD_TWIN_UUIDS"] == example.wrist
    assert robot["SO101_CALIBRATION"] == "auto"
    assert "CYBERWAVE_CHILD_TWIN_UUIDS" not in camera

    # The twin file really is the driver's view of its twin.
    inside = docker_client.containers.get(container_name(example.robot)).exec_run(
        ["cat", f"/app/{example.robot}.json"]
    )
    assert inside.exit_code == 0
    assert json.loads(inside.output)["uuid"] == example.robot


def test_bootstrap_health_covers_linked_twins_then_stops(started: Started) -> None:
    """edge_health goes to every linked twin with the protocol 2.6 fields and
    stops once the drivers run."""
    example, recorder = started.example, started.recorder
    health = {
        twin: payloads(recorder.messages(f"cyberwave/twin/{twin}/edge_health"))
        for twin in (*example.linked, example.foreign)
    }
    for twin_uuid in example.linked:
        assert health[twin_uuid], f"no edge_health for linked twin {twin_uuid}"
        for message in health[twin_uuid]:
            assert message["type"] == "edge_health"
            assert isinstance(message["timestamp"], float)
            assert message["edge_id"] == started.fingerprint
            assert isinstance(message["uptime_seconds"], float)
            assert message["streams"] == {}
            assert message["stream_count"] == 0
            assert message["healthy_streams"] == 0
            assert message["source_type"] == "edge"
            assert message["twin_uuid"] == twin_uuid
            assert SESSION_ID.match(message["session_id"])
    assert health[example.foreign] == []

    # The publisher was joined before its "stopped" line, so after a few
    # intervals with nothing new it is known to be silent for good.
    started.edge.wait_for_log("bootstrap health publisher stopped", timeout=10)

    def health_count() -> int:
        return sum(1 for m in recorder.messages() if m.topic.endswith("/edge_health"))

    time.sleep(0.5)
    count = health_count()
    time.sleep(3.5)
    assert health_count() == count


def test_driver_output_reaches_the_driverlog_topic(started: Started) -> None:
    """Each driver line arrives on its twin's driverlog with its detected level."""
    example, recorder = started.example, started.recorder
    robot_topic = f"cyberwave/twin/{example.robot}/driverlog"
    camera_topic = f"cyberwave/twin/{example.overhead}/driverlog"

    def lines(topic: str) -> dict[str, dict[str, Any]]:
        return {p["message"]: p for p in payloads(recorder.messages(topic))}

    recorder.wait_for(
        lambda _seen: (
            "DEBUG camera frames flowing" in lines(camera_topic)
            and "plain line without a level" in lines(robot_topic)
        ),
        timeout=15,
        what="the drivers' own lines",
    )
    robot, camera = lines(robot_topic), lines(camera_topic)
    assert robot["INFO robot driver up"]["level"] == "INFO"
    assert robot["WARNING gripper current high"]["level"] == "WARNING"
    assert robot["plain line without a level"]["level"] == "INFO"
    assert camera["DEBUG camera frames flowing"]["level"] == "DEBUG"

    message = robot["WARNING gripper current high"]
    assert message["type"] == "driver_log"
    assert message["container_name"] == container_name(example.robot)
    assert message["source"] == "edge"
    assert message["edge_core_version"] == __version__
    assert isinstance(message["timestamp"], float)
    assert SESSION_ID.match(message["session_id"])
    assert not recorder.messages(f"cyberwave/twin/{example.wrist}/driverlog")


def test_twins_with_malformed_params_fail_alone(
    started: Started, docker_client: docker.DockerClient
) -> None:
    """Each twin whose params cannot become a container fails with a reason
    that names it (log and status), while the other drivers start."""
    edge, example = started.edge, started.example
    assert len(example.broken) == 2

    errors = edge.error_lines()
    assert len(errors) == len(example.broken)
    report = edge.status_json()
    for twin_uuid in example.broken:
        named = [line for line in errors if twin_uuid in line]
        assert len(named) == 1
        assert "'NOT A PAIR'" in named[0]
        rows = status_rows(report, twin_uuid)
        assert len(rows) == 1, report["containers"]
        assert rows[0]["state"] == "not running"
        assert "KEY=value" in rows[0]["note"]
        assert not docker_client.api.containers(
            all=True, filters={"name": container_name(twin_uuid)}
        )
    assert running_in_status(report) == example.driver_names


def test_restart_adopts_running_containers(
    started: Started, docker_client: docker.DockerClient
) -> None:
    """SIGTERM ends the edge core with 0 within 10 s and leaves the drivers
    running; the next start adopts them without recreating anything."""
    example, edge = started.example, started.edge
    before = managed(docker_client, started.fingerprint)

    def ids(containers: dict[str, Any]) -> dict[str, str]:
        return {name: attrs["Id"] for name, attrs in containers.items()}

    assert edge.stop(timeout=10) == 0
    after_stop = managed(docker_client, started.fingerprint)
    assert ids(after_stop) == ids(before)
    assert all(c["State"]["Status"] == "running" for c in after_stop.values())

    edge.start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
    again = managed(docker_client, started.fingerprint)
    assert ids(again) == ids(before)
    for name, attrs in again.items():
        assert attrs["State"]["StartedAt"] == before[name]["State"]["StartedAt"]
    log = edge.log_text()
    for twin_uuid in example.drivers:
        assert f"adopted running container {container_name(twin_uuid)}" in log
    assert "created container" not in log
    assert edge.stop(timeout=10) == 0


def test_status_explains_twins_without_a_driver(started: Started) -> None:
    """status counts the linked twins and says why the attached camera has
    no driver of its own."""
    example = started.example
    started.edge.wait_for(
        lambda: example.wrist in (started.edge.state() or {}).get("without_driver", {}),
        timeout=STARTUP_TIMEOUT,
        what="the state file naming the attached camera",
    )
    twins = check(started.edge.status_json(), "twins")
    assert twins["ok"] is True
    assert f"{len(example.linked)} linked" in twins["detail"]
    assert (
        f"{example.wrist[:8]}: attached camera of twin {example.robot}"
        in (twins["detail"])
    )
