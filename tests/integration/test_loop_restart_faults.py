"""``restart_edge_core`` while the backend and the broker misbehave.

The whole edge core runs as a process against the backend emulator,
Mosquitto and the Docker engine. A restart whose environment download
answers 500 while the broker goes away and comes back ends with one
clear phase on its alert and runs once; a twin file whose push the
backend refuses during a restart is kept and sent again later (7b 22).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory
from tests.support.loop import (
    DriverEnvironment,
    alert_phases,
    is_running,
    listening,
    listing_path,
    twin_pushes,
    wait_cycles,
    wait_restart_phase,
)

pytestmark = pytest.mark.integration

EDITED_NAME = "Arm renamed by its driver before the restart"
NO_RETRIES = {"CYBERWAVE_REST_RETRIES": "0"}


def all_new_and_running(
    client: docker.DockerClient,
    before: Mapping[str, str],
    environment: DriverEnvironment,
) -> dict[str, str] | None:
    ids = container_ids(client, environment.fingerprint)
    if set(ids) != set(before) or any(ids[n] == before[n] for n in before):
        return None
    if not all(is_running(client, name) for name in environment.driver_names):
        return None
    return ids


def rename_in_file(path: Path, name: str) -> None:
    document: dict[str, Any] = json.loads(path.read_text())
    document["name"] = name
    with open(path, "r+b") as file:
        file.write((json.dumps(document, indent=2) + "\n").encode())
        file.truncate()


def test_a_restart_with_the_backend_failing_and_the_broker_bouncing_runs_once(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The environment download answers 500 (after a while) and the broker
    goes down as the restart starts and up again after it: the restart
    completes from the saved desired state, its alert goes in_progress then
    completed, the drivers come back once, and the reconnect brings no
    second restart."""
    rig = listening(
        new_edge, emulator, mqtt_broker, docker_client, drivers=1, env=NO_RETRIES
    )
    edge, environment, edge_uuid = rig.edge, rig.environment, rig.edge_uuid
    before = container_ids(docker_client, new_edge.fingerprint)
    emulator.fault(
        listing_path(environment.environment_uuid), method="GET", status=500, delay=2
    )

    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for_log(
        f"restart_edge_core received (request_id {answer['request_id']})",
        timeout=STARTUP_TIMEOUT,
    )
    mqtt_broker.stop()
    phase = wait_restart_phase(edge, emulator, answer["alert_uuid"])
    assert phase == "completed"
    after = edge.wait_for(
        lambda: all_new_and_running(docker_client, before, environment),
        timeout=STARTUP_TIMEOUT,
        what="every driver recreated and running",
    )
    log = edge.log_text()
    assert "restarting the drivers of the saved desired state" in log
    # The broker really was away while the restart ran.
    assert log.index("MQTT connection to") < log.index("restart_edge_core completed")

    connects = edge.log_text().count("MQTT connected to")
    mqtt_broker.start()
    emulator.clear_faults()
    edge.wait_for(
        lambda: edge.log_text().count("MQTT connected to") > connects,
        timeout=STARTUP_TIMEOUT,
        what="the edge core connected to the broker again",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 4)

    assert alert_phases(emulator, answer["alert_uuid"]) == ["in_progress", "completed"]
    assert edge.log_text().count("restart_edge_core received") == 1
    assert container_ids(docker_client, new_edge.fingerprint) == after
    assert all(is_running(docker_client, n) for n in environment.driver_names)
    assert edge.error_lines() == []


def test_a_twin_file_the_backend_refuses_during_a_restart_is_kept_and_sent_later(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The restart's push of a driver's edit is answered 409: the restart
    completes, the file keeps the edit (its driver is recreated on it), and
    the edit is sent again and taken once the backend accepts it."""
    rig = listening(
        new_edge, emulator, mqtt_broker, docker_client, drivers=1, env=NO_RETRIES
    )
    edge, environment, edge_uuid = rig.edge, rig.environment, rig.edge_uuid
    [twin_uuid] = environment.twin_uuids
    path = edge.config_dir / f"{twin_uuid}.json"
    put = rf"^/api/v1/twins/{twin_uuid}$"
    fault = emulator.fault(put, method="PUT", status=409)
    rename_in_file(path, EDITED_NAME)

    answer = emulator.restart_core(edge_uuid).body
    phase = wait_restart_phase(edge, emulator, answer["alert_uuid"])
    assert phase == "completed"
    assert f"keeping twin file {path}" in edge.log_text()
    assert json.loads(path.read_text())["name"] == EDITED_NAME
    assert all(r.status == 409 for r in twin_pushes(emulator, twin_uuid))

    emulator.remove_fault(fault)
    edge.wait_for(
        lambda: emulator.twins[twin_uuid]["name"] == EDITED_NAME or None,
        timeout=STARTUP_TIMEOUT,
        what="the kept edit taken once the backend accepts it",
    )
    assert json.loads(path.read_text())["name"] == EDITED_NAME
