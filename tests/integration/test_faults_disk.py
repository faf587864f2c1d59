"""The config dir on a file system with no byte left (an SD card filled up).

The config dir is a small tmpfs filled to the last byte by a file of the
test's own. The edge core must keep its drivers running, say once per
file what it cannot write and what to do, keep every file that exists
whole, and catch up by itself once space is freed. A first boot that
cannot even save the fingerprint stops with one line naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    check,
    container_name,
    example_environment,
    keepalives,
    link_new_twin,
    wait_keepalives,
)
from tests.support.faults import (
    RunningWatch,
    container_facts,
    fill_up,
    small_tmpfs,
    tree_bytes,
)

pytestmark = pytest.mark.integration

NO_SPACE = "No space left on device"
FILLER = "filler.bin"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs on the test's config dir (the edge logs stay outside)."""
    with small_tmpfs(tmp_path / "config", size="4m") as mounted:
        yield mounted


def test_full_disk_keeps_drivers_and_files_and_catches_up_once_freed(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    small_disk: Path,
) -> None:
    """With the config dir's file system full, an edge core restarted while
    the backend changed a twin's metadata and linked a new twin keeps every
    existing file byte for byte, logs one line per file it cannot write,
    never stops its drivers, and once space is freed writes what it could
    not: the pulled metadata, the new twin's file, the desired state."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    assert edge.stop(timeout=10) == 0

    config = edge.config_dir
    before = tree_bytes(config)
    fill_up(small_disk, FILLER)
    robot_file = config / f"{example.robot}.json"
    robot = next(t for t in example.twins if t["uuid"] == example.robot)
    emulator.edit_twin(
        example.robot,
        {"metadata": {**robot["metadata"], "calibration_note": "x" * 20_000}},
    )
    added = link_new_twin(
        emulator, example, fingerprint, name="Gripper linked while the disk was full"
    )
    running = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, example.driver_names) as watch:
        edge.start()
        edge.wait_for(
            lambda: keepalives(emulator) >= 3,
            timeout=STARTUP_TIMEOUT,
            what="the edge core registered and looping",
        )
        wait_keepalives(edge, emulator, 5)
        full_log = edge.log_text()
        status = edge.status_json()

    assert watch.samples > 0
    assert watch.problems == []
    after = tree_bytes(config, skip=[FILLER])
    for name, data in before.items():
        assert after.get(name) == data, f"{name} changed on a full disk"
    assert container_facts(docker_client, fingerprint).keys() >= running.keys()

    no_space = [line for line in full_log.splitlines() if NO_SPACE in line]
    assert no_space, full_log
    for line in no_space:
        assert "[WARNING]" in line or "[ERROR]" in line, line
        assert str(config) in line, line
    # One line per file and problem, not one per cycle.
    assert len(no_space) == len(set(_file_named(line) for line in no_space)), no_space
    assert "Traceback" not in full_log
    disk = check(status, "disk")
    assert disk["ok"] is False
    assert "full" in disk["detail"] and str(config) in disk["detail"]

    (config / FILLER).unlink()
    edge.wait_for(
        lambda: "calibration_note" in robot_file.read_text(),
        timeout=STARTUP_TIMEOUT,
        what="the backend's metadata pulled once space is back",
    )
    edge.wait_for(
        lambda: added in _saved_twins(config),
        timeout=STARTUP_TIMEOUT,
        what="the desired state saved once space is back",
    )
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        {*example.driver_names, container_name(added)},
        what="the driver of the twin linked while the disk was full",
    )
    # Its twin file is written at the next pass and the driver recreated on it.
    edge.wait_for(
        lambda: _mounts_twin_file(docker_client, added),
        timeout=STARTUP_TIMEOUT,
        what="the new driver recreated with its twin file mounted",
    )
    assert json.loads((config / f"{added}.json").read_text())["uuid"] == added
    for name in ("credentials.json", "environment.json", "fingerprint.json"):
        assert (config / name).read_bytes() == before[name], name
    assert "disk" not in {c["name"] for c in edge.status_json()["checks"]}
    assert edge.stop(timeout=10) == 0


def test_first_boot_on_a_full_disk_stops_with_one_line_naming_the_file(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    small_disk: Path,
) -> None:
    """Without fingerprint.json and no space to save it, the edge core exits
    1 with one line naming fingerprint.json and the missing space, and the
    installer's files stay as they were."""
    example = example_environment(fingerprint)
    edge = new_edge(example)
    (edge.config_dir / "fingerprint.json").unlink()
    before = tree_bytes(edge.config_dir)
    fill_up(small_disk, FILLER)

    edge.start()
    assert edge.wait_exit(timeout=30) == 1

    errors = [
        line
        for line in (edge.log_text() + edge.stdout_text()).splitlines()
        if NO_SPACE in line
    ]
    assert len(errors) == 1, edge.log_text()
    assert str(edge.config_dir / "fingerprint.json") in errors[0]
    assert "free" in errors[0]
    assert tree_bytes(edge.config_dir, skip=[FILLER]) == before


# -- helpers -------------------------------------------------------------------


def _mounts_twin_file(client: docker.DockerClient, twin_uuid: str) -> bool:
    """True when the twin's running driver has its twin file mounted."""
    try:
        attrs = client.api.inspect_container(container_name(twin_uuid))
    except docker.errors.NotFound:
        return False
    targets = {mount["Destination"] for mount in attrs["Mounts"]}
    return attrs["State"]["Running"] and f"/app/{twin_uuid}.json" in targets


def _saved_twins(config: Path) -> set[str]:
    try:
        saved = json.loads((config / "desired-state.json").read_text())
    except (OSError, ValueError):
        return set()
    return {twin["uuid"] for twin in saved.get("twins", [])}


def _file_named(line: str) -> str:
    """The config-dir path a log line names (its first absolute path)."""
    for word in line.split():
        if word.startswith("/"):
            return word.rstrip(":,;")
    return line
