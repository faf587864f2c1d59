"""Twin JSON sync both ways through the running daemon (protocol.md 1.7).

A driver edits its twin file through its bind mount and the loop pushes
only the allowed fields; a metadata edit made on the backend reaches the
file inside the running container (same inode) without a restart; an edit
made while the edge core was stopped is pushed at its first cycle after
the next start (7b item 22). The whole edge core runs as a process against
the backend emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    TWIN_PUSH_FIELDS,
    driver_environment,
    driver_state,
    inode_inside,
    inspect,
    is_running,
    listing_path,
    mounted_twin_file,
    prepare_loop_edge,
    read_inside,
    start_loop_edge,
    twin_pushes,
    wait_cycles,
    write_inside,
)

pytestmark = pytest.mark.integration


def identity(client: docker.DockerClient, name: str) -> tuple[str, str]:
    attrs = inspect(client, name)
    assert attrs is not None, f"{name} does not exist"
    return attrs["Id"], attrs["State"]["StartedAt"]


def driver_edit(document: dict[str, Any]) -> dict[str, Any]:
    """What a driver might write: allowed fields and fields it must not push."""
    edited = copy.deepcopy(document)
    edited["name"] = "Arm renamed by its driver"
    edited["position_x"] = 1.25
    edited["metadata"] = {**edited["metadata"], "calibration": {"done": True}}
    edited["asset_uuid"] = "00000000-0000-4000-8000-000000000000"
    edited["environment_uuid"] = "00000000-0000-4000-8000-000000000001"
    edited["driver_scratch"] = {"not": "a twin field"}
    return edited


def test_a_driver_edit_is_pushed_with_only_the_allowed_fields(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """An edit made inside the container reaches the backend as one PUT that
    carries the allowed fields and nothing else; the driver keeps running."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    before = identity(docker_client, name)
    mounted = mounted_twin_file(twin_uuid)

    edited = driver_edit(read_inside(docker_client, name, mounted))
    write_inside(docker_client, name, mounted, edited)
    [push] = edge.wait_for(
        lambda: twin_pushes(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the driver's edit pushed",
    )

    assert push.status == 200
    assert set(push.body) <= TWIN_PUSH_FIELDS, sorted(set(push.body) - TWIN_PUSH_FIELDS)
    assert push.body["name"] == edited["name"]
    assert push.body["position_x"] == 1.25
    assert push.body["metadata"]["calibration"] == {"done": True}
    backend = emulator.twins[twin_uuid]
    assert backend["name"] == edited["name"]
    assert backend["asset_uuid"] == environment.asset_uuid
    assert backend["environment_uuid"] == environment.environment_uuid
    assert "driver_scratch" not in backend

    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert len(twin_pushes(emulator, twin_uuid)) == 1
    assert identity(docker_client, name) == before
    assert read_inside(docker_client, name, mounted)["name"] == edited["name"]


def test_a_backend_metadata_edit_reaches_the_running_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """New metadata set on the backend appears in the file the container
    reads, through the same inode, without restarting the driver and without
    being pushed back."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    before = identity(docker_client, name)
    mounted = mounted_twin_file(twin_uuid)
    host_file = edge.config_dir / f"{twin_uuid}.json"
    inode = inode_inside(docker_client, name, mounted)
    host_inode = os.stat(host_file).st_ino

    metadata = copy.deepcopy(environment.twin(twin_uuid)["metadata"])
    metadata["privacy_frame_filter"] = {"enabled": True}
    emulator.edit_twin(twin_uuid, {"metadata": metadata})
    document = edge.wait_for(
        lambda: _with_filter(read_inside(docker_client, name, mounted)),
        timeout=STARTUP_TIMEOUT,
        what="the backend's metadata inside the container",
    )

    assert document["metadata"] == metadata
    assert document["uuid"] == twin_uuid
    assert document["asset"]["uuid"] == environment.asset_uuid
    assert inode_inside(docker_client, name, mounted) == inode
    assert os.stat(host_file).st_ino == host_inode
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert identity(docker_client, name) == before
    assert twin_pushes(emulator, twin_uuid) == []


def test_an_edit_made_while_stopped_is_pushed_at_the_first_cycle(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The driver keeps running while the edge core is stopped; what it
    writes meanwhile is pushed by the first cycle of the next start, before
    the loop downloads the environment a second time."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    edge.wait_for(
        lambda: _saved_baseline(edge.config_dir, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the twin file's baseline saved in desired-state.json",
    )
    assert edge.stop(timeout=10) == 0

    mounted = mounted_twin_file(twin_uuid)
    edited = driver_edit(read_inside(docker_client, name, mounted))
    write_inside(docker_client, name, mounted, edited)
    assert twin_pushes(emulator, twin_uuid) == []
    emulator.clear_requests()
    edge.start()

    [push] = edge.wait_for(
        lambda: twin_pushes(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the edit pushed after the start",
    )
    assert push.body["name"] == edited["name"]
    assert set(push.body) <= TWIN_PUSH_FIELDS
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    listings = emulator.requests("GET", listing_path(environment.environment_uuid))
    assert listings[0].timestamp < push.timestamp < listings[1].timestamp
    assert len(twin_pushes(emulator, twin_uuid)) == 1


def _with_filter(document: dict[str, Any]) -> dict[str, Any] | None:
    return document if "privacy_frame_filter" in document["metadata"] else None


def _saved_baseline(config_dir: Path, twin_uuid: str) -> bool:
    import json

    try:
        saved = json.loads((config_dir / "desired-state.json").read_text())
    except (OSError, ValueError):
        return False
    return twin_uuid in (saved.get("twin_baselines") or {})


def test_a_twin_file_replaced_on_the_host_is_mounted_again(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A person replaces the twin file on the host by rename (the way an
    editor saves): the edit is pushed and the driver is restarted onto the
    new file, so a later backend edit reaches the driver again."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    mounted = mounted_twin_file(twin_uuid)
    host_file = edge.config_dir / f"{twin_uuid}.json"
    started = identity(docker_client, name)[1]

    document = read_inside(docker_client, name, mounted)
    document["name"] = "Renamed in an editor on the host"
    replacement = host_file.with_name("edited.tmp")
    replacement.write_text(json.dumps(document, indent=2))
    os.replace(replacement, host_file)
    edge.wait_for(
        lambda: identity(docker_client, name)[1] != started,
        timeout=STARTUP_TIMEOUT,
        what="the driver restarted onto the new file",
    )
    assert emulator.twins[twin_uuid]["name"] == "Renamed in an editor on the host"
    assert inode_inside(docker_client, name, mounted) == os.stat(host_file).st_ino

    metadata = copy.deepcopy(emulator.twins[twin_uuid]["metadata"])
    metadata["privacy_frame_filter"] = {"enabled": True}
    emulator.edit_twin(twin_uuid, {"metadata": metadata})
    edge.wait_for(
        lambda: _with_filter(read_inside(docker_client, name, mounted)),
        timeout=STARTUP_TIMEOUT,
        what="the backend's metadata inside the restarted driver",
    )
    assert "replaced by another file" in edge.log_text()


def test_a_twin_file_replaced_while_stopped_is_mounted_at_the_next_start(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The driver keeps running on the old inode while the edge core is
    stopped and the file is replaced on the host: the next start pushes
    the edit and restarts the driver onto the file now at the path."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    edge.wait_for(
        lambda: _saved_baseline(edge.config_dir, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the twin file's baseline saved in desired-state.json",
    )
    assert edge.stop(timeout=10) == 0
    mounted = mounted_twin_file(twin_uuid)
    host_file = edge.config_dir / f"{twin_uuid}.json"
    started = identity(docker_client, name)[1]
    document = json.loads(host_file.read_text())
    document["name"] = "Replaced on the host while stopped"
    replacement = host_file.with_name("edited.tmp")
    replacement.write_text(json.dumps(document, indent=2))
    os.replace(replacement, host_file)
    assert inode_inside(docker_client, name, mounted) != os.stat(host_file).st_ino

    edge.start()

    edge.wait_for(
        lambda: identity(docker_client, name)[1] != started,
        timeout=STARTUP_TIMEOUT,
        what="the driver restarted onto the replaced file",
    )
    assert inode_inside(docker_client, name, mounted) == os.stat(host_file).st_ino
    edge.wait_for(
        lambda: emulator.twins[twin_uuid]["name"] == document["name"] or None,
        timeout=STARTUP_TIMEOUT,
        what="the replaced file's edit pushed",
    )
    assert "not the file its running driver has mounted" in edge.log_text()


def test_a_deleted_twin_file_does_not_start_a_parked_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The twin file of a driver parked for a restart loop is deleted: it
    is written again, but the stopped driver is not started before its
    cool-off ends (it mounts the new file when it next starts)."""
    environment = driver_environment(fingerprint, ["echo ERROR no device; exit 1"])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={
            "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "2",
            "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "600",
        },
    ).start()
    edge.wait_for(
        lambda: driver_state(edge, name).get("outcome") == "flapping",
        timeout=STARTUP_TIMEOUT,
        what="the driver parked",
    )
    started = identity(docker_client, name)[1]
    host_file = edge.config_dir / f"{twin_uuid}.json"

    host_file.unlink()

    # The loop's sync or a driver pass, whichever looks first, writes it.
    edge.wait_for(
        host_file.is_file, timeout=STARTUP_TIMEOUT, what="the twin file written again"
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert json.loads(host_file.read_text())["uuid"] == twin_uuid
    assert identity(docker_client, name)[1] == started
    assert not is_running(docker_client, name)


def test_a_paused_driver_is_remounted_only_once_it_runs_again(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A person paused the driver, then its twin file is deleted: the file
    is written again and the paused driver left alone; once unpaused it
    is restarted onto the new file."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = start_loop_edge(new_edge, environment, docker_client)
    mounted = mounted_twin_file(twin_uuid)
    host_file = edge.config_dir / f"{twin_uuid}.json"
    started = identity(docker_client, name)[1]
    docker_client.api.pause(name)

    host_file.unlink()

    edge.wait_for_log("was deleted; writing it again", timeout=STARTUP_TIMEOUT)
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    attrs = inspect(docker_client, name)
    assert attrs is not None
    assert attrs["State"]["Status"] == "paused"
    assert attrs["State"]["StartedAt"] == started

    docker_client.api.unpause(name)

    edge.wait_for(
        lambda: identity(docker_client, name)[1] != started,
        timeout=STARTUP_TIMEOUT,
        what="the unpaused driver restarted onto the new file",
    )
    assert inode_inside(docker_client, name, mounted) == os.stat(host_file).st_ino
