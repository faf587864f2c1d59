"""Twin JSON sync when the backend refuses, forgets or races the driver.

The whole edge core runs as a process against the backend emulator,
Mosquitto and the Docker engine, one cycle a second. A push the backend
refuses with a 4xx keeps the file and is sent again, slowly, until it is
taken; a twin deleted on the backend keeps its edited file; bytes a
driver writes that are no JSON object are never pushed and are repaired
from the last good copy; a driver and the web UI editing metadata at
once are merged key by key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, EdgeProcess
from tests.support.loop import (
    IDLE_SCRIPT,
    DriverEnvironment,
    driver_environment,
    listing_path,
    start_loop_edge,
    twin_pushes,
    wait_cycles,
    wait_edge_uuid,
)

pytestmark = pytest.mark.integration

EDITED_NAME = "Arm renamed by its driver"


def write_in_place(path: Path, data: bytes) -> None:
    """Rewrite ``path`` on the same inode, as a driver does through its mount."""
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate()


def host_file(edge: EdgeProcess, twin_uuid: str) -> Path:
    return edge.config_dir / f"{twin_uuid}.json"


def rename_in_file(path: Path, name: str) -> None:
    document: dict[str, Any] = json.loads(path.read_text())
    document["name"] = name
    write_in_place(path, (json.dumps(document, indent=2) + "\n").encode())


def one_driver(
    new_edge: EdgeFactory, client: docker.DockerClient
) -> tuple[EdgeProcess, DriverEnvironment, str]:
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT])
    edge = start_loop_edge(new_edge, environment, client)
    [twin_uuid] = environment.twin_uuids
    # The file has a baseline once a cycle has seen it.
    wait_cycles(edge, new_edge.emulator, environment.environment_uuid, 2)
    return edge, environment, twin_uuid


def statuses(emulator: Emulator, twin_uuid: str) -> list[int | None]:
    return [request.status for request in twin_pushes(emulator, twin_uuid)]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, None),
        (409, {"detail": "twin is being edited"}),
        (422, b""),
    ],
    ids=["404-default", "409-json", "422-empty"],
)
def test_a_refused_push_is_kept_and_sent_again_slowly_until_taken(
    status: int,
    body: Any,
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The backend refuses the driver's edit for a while: the file keeps the
    edit, the refusal is one WARNING naming the file, the PUT is not
    repeated every cycle, and once the backend takes it the edit is there."""
    edge, environment, twin_uuid = one_driver(new_edge, docker_client)
    path = host_file(edge, twin_uuid)
    fault = emulator.fault(
        rf"^/api/v1/twins/{twin_uuid}$", method="PUT", status=status, body=body
    )

    rename_in_file(path, EDITED_NAME)
    edge.wait_for(
        lambda: status in statuses(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what=f"the edit refused with {status}",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 6)
    refused = statuses(emulator, twin_uuid)
    assert set(refused) == {status}
    assert len(refused) <= 3, f"{len(refused)} PUTs in 6 cycles"
    assert json.loads(path.read_text())["name"] == EDITED_NAME
    warnings = [
        line
        for line in edge.log_lines()
        if "WARNING" in line and "refused twin file" in line
    ]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and str(status) in warnings[0]

    emulator.remove_fault(fault)
    edge.wait_for(
        lambda: 200 in statuses(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the kept edit taken once the backend accepts it",
    )
    assert emulator.twins[twin_uuid]["name"] == EDITED_NAME
    assert json.loads(path.read_text())["name"] == EDITED_NAME
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert statuses(emulator, twin_uuid).count(200) == 1


DAMAGE = {
    "a list": b'[{"name": "not an object"}]\n',
    "a number": b"42\n",
    "null": b"null\n",
    "not UTF-8": b'{"name": "caf\xe9"}\n',
    "0 bytes": b"",
}


def test_bytes_that_are_no_json_object_are_repaired_and_never_pushed(
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver writes a list, a number, null, Latin-1 bytes or nothing at
    all: none of it is pushed; each is repaired in place from the last
    good copy once it stayed two cycles, its bytes kept in a backup."""
    edge, _environment, twin_uuid = one_driver(new_edge, docker_client)
    path = host_file(edge, twin_uuid)
    inode = path.stat().st_ino
    good = path.read_bytes()
    backups = edge.config_dir / "run" / "twin-backups"

    for kind, data in DAMAGE.items():
        write_in_place(path, data)
        edge.wait_for(
            lambda: path.read_bytes() == good,
            timeout=STARTUP_TIMEOUT,
            what=f"the file repaired after {kind}",
        )
        kept = sorted(backups.iterdir())
        assert kept and kept[-1].read_bytes() == data, kind

    assert twin_pushes(emulator, twin_uuid) == []
    assert path.stat().st_ino == inode
    assert len(list(backups.iterdir())) == len(DAMAGE)


def test_a_file_with_a_byte_order_mark_is_read_as_json(
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver on a platform whose JSON writer puts a UTF-8 byte order mark
    first: its edit is pushed, not thrown away as damage."""
    edge, environment, twin_uuid = one_driver(new_edge, docker_client)
    path = host_file(edge, twin_uuid)
    document = json.loads(path.read_text())
    document["name"] = EDITED_NAME
    write_in_place(path, b"\xef\xbb\xbf" + json.dumps(document).encode())

    edge.wait_for(
        lambda: emulator.twins[twin_uuid]["name"] == EDITED_NAME or None,
        timeout=STARTUP_TIMEOUT,
        what="the edit with a byte order mark pushed",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert json.loads(path.read_bytes().decode("utf-8-sig"))["name"] == EDITED_NAME
    assert len(twin_pushes(emulator, twin_uuid)) == 1


def test_a_driver_removing_uuid_and_asset_pushes_nothing_and_still_pulls(
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Removing keys that are never pushed is no edit the backend hears of
    and no damage to repair; the backend's metadata still reaches the file."""
    edge, environment, twin_uuid = one_driver(new_edge, docker_client)
    path = host_file(edge, twin_uuid)
    document = json.loads(path.read_text())
    del document["uuid"], document["asset"]
    write_in_place(path, (json.dumps(document, indent=2) + "\n").encode())
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    metadata = copy.deepcopy(emulator.twins[twin_uuid]["metadata"])
    metadata["privacy_frame_filter"] = {"enabled": True}
    emulator.edit_twin(twin_uuid, {"metadata": metadata})
    pulled = edge.wait_for(
        lambda: _pulled(path),
        timeout=STARTUP_TIMEOUT,
        what="the backend's metadata pulled into the stripped file",
    )

    assert pulled is not None and pulled["metadata"] == metadata
    assert twin_pushes(emulator, twin_uuid) == []
    assert not list((edge.config_dir / "run").glob("twin-backups/*"))


def _pulled(path: Path) -> dict[str, Any] | None:
    document: dict[str, Any] = json.loads(path.read_text())
    return document if "privacy_frame_filter" in document["metadata"] else None


def hold_listings(edge: EdgeProcess, emulator: Emulator, environment_uuid: str) -> Any:
    """Hold the next environment listing; return once the loop waits on it."""
    path = listing_path(environment_uuid)
    before = len(emulator.requests("GET", path))
    fault = emulator.fault(path, method="GET", hang=True, times=1)
    edge.wait_for(
        lambda: len(emulator.requests("GET", path)) > before,
        timeout=STARTUP_TIMEOUT,
        what="the loop waiting on a listing",
    )
    return fault


@pytest.mark.parametrize("same_key", [False, True], ids=["other-keys", "same-key"])
def test_a_driver_and_the_web_ui_editing_metadata_in_one_cycle(
    same_key: bool,
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The driver writes one metadata key while the web UI writes another
    (or the same one) before the cycle's listing: both keys end up on the
    backend and in the file; on the same key the driver's value wins, and
    backend and file agree."""
    edge, environment, twin_uuid = one_driver(new_edge, docker_client)
    path = host_file(edge, twin_uuid)
    hold_listings(edge, emulator, environment.environment_uuid)

    document = json.loads(path.read_text())
    document["metadata"]["calibration"] = {"done": True}
    write_in_place(path, (json.dumps(document, indent=2) + "\n").encode())
    web = copy.deepcopy(emulator.twins[twin_uuid]["metadata"])
    web["calibration" if same_key else "privacy_frame_filter"] = {"enabled": True}
    emulator.edit_twin(twin_uuid, {"metadata": web})
    emulator.clear_faults()

    edge.wait_for(
        lambda: twin_pushes(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the driver's edit pushed",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    backend = emulator.twins[twin_uuid]["metadata"]
    assert backend["calibration"] == {"done": True}
    if not same_key:
        assert backend["privacy_frame_filter"] == {"enabled": True}
    assert json.loads(path.read_text())["metadata"] == backend
    assert len(twin_pushes(emulator, twin_uuid)) == 1


def test_a_twin_deleted_on_the_backend_keeps_its_unpushed_edit(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The driver's edit could not be pushed (503) when the twin is deleted
    on the backend: the file keeps the edit through the following cycles
    and through a restart_edge_core whose push gets a 404."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    edge, environment, twin_uuid = one_driver(new_edge, docker_client)
    edge_uuid = wait_edge_uuid(edge, emulator, new_edge.fingerprint)
    edge.wait_for_log(f"listening for commands on edges/{edge_uuid}", timeout=10)
    path = host_file(edge, twin_uuid)
    emulator.fault(rf"^/api/v1/twins/{twin_uuid}$", method="PUT", status=503)
    rename_in_file(path, EDITED_NAME)
    edge.wait_for(
        lambda: 503 in statuses(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the edit's push failing",
    )

    emulator.backend.remove_twin(twin_uuid)
    emulator.clear_faults()
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    assert json.loads(path.read_text())["name"] == EDITED_NAME

    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for(
        lambda: _restart_phase(emulator, answer["alert_uuid"]) == "completed",
        timeout=STARTUP_TIMEOUT,
        what="the restart completed",
    )
    assert 404 in statuses(emulator, twin_uuid)
    assert json.loads(path.read_text())["name"] == EDITED_NAME
    assert f"keeping twin file {path}" in edge.log_text()
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert json.loads(path.read_text())["name"] == EDITED_NAME


def _restart_phase(emulator: Emulator, alert_uuid: str) -> str | None:
    [alert] = [a for a in emulator.alerts() if a["uuid"] == alert_uuid]
    if alert["status"] != "resolved":
        return None
    phase: str | None = alert["metadata"].get("phase")
    return phase
