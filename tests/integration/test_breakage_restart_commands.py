"""``restart_edge_core`` commands that are stale, repeated or odd, and
restarts that meet a refusing or slow backend.

The whole edge core runs as a process against the backend emulator,
Mosquitto and the Docker engine. A command the broker kept (retained)
from before the edge core subscribed is old news, not a request: it
must not restart the drivers at every boot or reconnect. A command
naming a restart card already taken is not acted on again; request ids
cannot forge or flood the log; a refused environment download fails the
restart and the drivers come back; a restart sent before the first
download, or while alert calls hang, still ends with every driver running.
"""

from __future__ import annotations

import json
import uuid

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory
from tests.support.loop import (
    IDLE_SCRIPT,
    alert_phases,
    driver_environment,
    is_running,
    listening,
    listing_path,
    listings,
    prepare_loop_edge,
    publish_raw,
    restart_phase,
    wait_cycles,
    wait_edge_uuid,
    wait_restart_phase,
    wait_running,
)

pytestmark = pytest.mark.integration


def test_a_retained_restart_command_does_not_restart_the_next_boot(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A restart command published with the retain flag is carried out once
    when it arrives live; the next start of the edge core, which the broker
    hands the retained copy at subscribe time, adopts the drivers instead of
    restarting them again."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client, drivers=1)
    edge, environment, topic = rig.edge, rig.environment, rig.topic

    command = {"command": "restart_edge_core", "request_id": uuid.uuid4().hex}
    publish_raw(mqtt_broker, topic, json.dumps(command).encode(), retain=True)
    edge.wait_for_log("restart_edge_core completed", timeout=STARTUP_TIMEOUT)
    wait_running(
        edge, docker_client, environment, what="the drivers after the live restart"
    )
    edge.stop()
    before = container_ids(docker_client, new_edge.fingerprint)

    edge.start()
    edge.wait_for_log(f"listening for commands on {topic}", timeout=STARTUP_TIMEOUT)
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    assert "restart_edge_core received" not in edge.log_text()
    assert container_ids(docker_client, new_edge.fingerprint) == before


@pytest.mark.parametrize("status", [403, 404])
def test_a_restart_whose_download_is_refused_fails_and_the_drivers_come_back(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    status: int,
) -> None:
    """The environment listing is refused (not merely unreachable) while a
    restart runs: its alert ends failed naming the refusal, and the drivers
    it removed are started again from the desired state known before."""
    rig = listening(
        new_edge,
        emulator,
        mqtt_broker,
        docker_client,
        env={"CYBERWAVE_REST_RETRIES": "0"},
    )
    edge, environment, edge_uuid = rig.edge, rig.environment, rig.edge_uuid
    before = container_ids(docker_client, new_edge.fingerprint)
    refusal = emulator.fault(
        listing_path(environment.environment_uuid), method="GET", status=status
    )

    answer = emulator.restart_core(edge_uuid).body
    phase = wait_restart_phase(edge, emulator, answer["alert_uuid"])
    assert phase == "failed"
    [card] = [a for a in emulator.alerts() if a["uuid"] == answer["alert_uuid"]]
    assert str(status) in card["metadata"]["error"]

    def back() -> dict[str, str] | None:
        ids = container_ids(docker_client, new_edge.fingerprint)
        if set(ids) != set(before) or any(ids[n] == before[n] for n in before):
            return None
        if not all(is_running(docker_client, n) for n in environment.driver_names):
            return None
        return ids

    after = edge.wait_for(
        back, timeout=STARTUP_TIMEOUT, what="every driver started again"
    )
    emulator.remove_fault(refusal)
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert container_ids(docker_client, new_edge.fingerprint) == after
    assert edge.running


def test_a_restart_sent_before_the_first_download_starts_each_driver_once(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """No desired state saved, the first environment listing slow: a
    restart command that arrives while it is still under way completes,
    and every driver ends up running in one container."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT] * 2)
    env_uuid = environment.environment_uuid
    slow = emulator.fault(listing_path(env_uuid), method="GET", delay=4, times=1)
    edge = prepare_loop_edge(new_edge, environment).start()
    edge_uuid = wait_edge_uuid(edge, emulator, new_edge.fingerprint)
    edge.wait_for_log(
        f"listening for commands on edges/{edge_uuid}", timeout=STARTUP_TIMEOUT
    )
    edge.wait_for(
        lambda: listings(emulator, env_uuid) >= 1,
        timeout=STARTUP_TIMEOUT,
        what="the first listing under way",
    )
    assert container_ids(docker_client, new_edge.fingerprint) == {}

    answer = emulator.restart_core(edge_uuid).body
    phase = wait_restart_phase(edge, emulator, answer["alert_uuid"])
    assert phase == "completed"
    emulator.remove_fault(slow)
    wait_running(
        edge, docker_client, environment, what="every driver after the restart"
    )
    settled_ids = container_ids(docker_client, new_edge.fingerprint)
    wait_cycles(edge, emulator, env_uuid, 3)

    assert set(settled_ids) == environment.driver_names
    assert container_ids(docker_client, new_edge.fingerprint) == settled_ids
    assert edge.log_text().count("restart_edge_core received") == 1
    assert edge.error_lines() == []


def test_a_restart_delivered_again_under_another_request_id_keeps_its_card(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The backend's restart command arrives a second time while the
    restart runs, naming the same card without its request_id: the card
    goes in_progress then completed only, never failed as concurrent."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client, drivers=1)
    edge, edge_uuid, topic = rig.edge, rig.edge_uuid, rig.topic
    env_uuid = rig.environment.environment_uuid
    # The restart's own download is slow, so the repeat finds it running.
    slow = emulator.fault(listing_path(env_uuid), method="GET", delay=4)

    answer = emulator.restart_core(edge_uuid).body
    card = answer["alert_uuid"]
    edge.wait_for_log(
        f"restart_edge_core received (request_id {answer['request_id']})",
        timeout=STARTUP_TIMEOUT,
    )
    repeat = {"command": "restart_edge_core", "alert_uuid": card}
    publish_raw(mqtt_broker, topic, json.dumps(repeat).encode())
    phase = wait_restart_phase(edge, emulator, card)
    emulator.remove_fault(slow)
    wait_cycles(edge, emulator, env_uuid, 2)

    assert phase == "completed"
    assert "ignoring repeated restart_edge_core" in edge.log_text()
    assert alert_phases(emulator, card) == ["in_progress", "completed"]
    assert edge.log_text().count("restart_edge_core received") == 1


def test_odd_request_ids_restart_without_forging_or_flooding_the_log(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A 2 MB request_id and one carrying a line break with a fake ERROR
    line each restart the drivers once; the edge core's log gets neither
    a forged line nor a line megabytes long."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client, drivers=1)
    edge, environment, topic = rig.edge, rig.environment, rig.topic

    forged = "r1\n2026-01-01 00:00:00.000 UTC [ERROR] [edge_core.daemon] forged line"
    for done, request_id in enumerate(("x" * 2_000_000, forged), start=1):
        command = {"command": "restart_edge_core", "request_id": request_id}
        publish_raw(mqtt_broker, topic, json.dumps(command).encode())
        edge.wait_for(
            lambda done=done: (
                edge.log_text().count("restart_edge_core completed") == done
            ),
            timeout=STARTUP_TIMEOUT,
            what=f"restart {done} completed",
        )
    wait_cycles(edge, emulator, environment.environment_uuid, 2)

    lines = edge.log_lines()
    assert not [line for line in lines if line.startswith("2026-01-01")]
    assert all("[INFO]" in line for line in lines if "forged line" in line)
    assert max(len(line) for line in lines) < 10_000
    assert edge.log_text().count("restart_edge_core received") == 2


def test_a_restart_does_not_wait_for_hanging_alert_calls(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Every alert call hangs while a restart runs: the drivers are
    recreated and running all the same, and once the alert calls are
    answered again the restart's card ends completed."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge, environment, edge_uuid = rig.edge, rig.environment, rig.edge_uuid
    before = container_ids(docker_client, new_edge.fingerprint)
    emulator.fault(r"^/api/v1/alerts", hang=True)

    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for_log("restart_edge_core completed", timeout=STARTUP_TIMEOUT)

    def recreated() -> bool:
        ids = container_ids(docker_client, new_edge.fingerprint)
        return (
            set(ids) == set(before)
            and all(ids[n] != before[n] for n in before)
            and all(is_running(docker_client, n) for n in environment.driver_names)
        )

    edge.wait_for(recreated, timeout=STARTUP_TIMEOUT, what="drivers recreated")
    assert restart_phase(emulator, answer["alert_uuid"]) is None
    # Lets the hung calls go on and answers the later ones.
    emulator.clear_faults()
    phase = wait_restart_phase(edge, emulator, answer["alert_uuid"])
    assert phase == "completed"
