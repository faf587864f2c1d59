"""The edge core itself killed with SIGKILL while it starts up (a power cut).

A kill at any moment of the startup (while the environment downloads,
after twin files are written, between creating and starting containers,
while a started driver is probed) must leave nothing a later start cannot
take over: the next run ends with exactly one container per driver, every
file of the config dir whole (the installer's byte for byte, the edge
core's own parsing), and no temp file of an interrupted write left over.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import docker
import pytest

from edge_core.model.spec import LABEL_FINGERPRINT, LABEL_TWIN
from tests.emulator.server import Emulator
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    wait_keepalives,
)
from tests.support.loop import (
    IDLE_SCRIPT,
    driver_environment,
    prepare_loop_edge,
    wait_running,
)

pytestmark = pytest.mark.integration

DRIVERS = 6

INSTALLER_FILES = ("credentials.json", "environment.json", "fingerprint.json")

KILL_POINTS = (
    # (what the test waits for in the log before the kill, what it means)
    ("GET /api/v1/environments/", "the environment download under way"),
    ("wrote twin file", "the first twin file written"),
    ("created container", "the first container created, not started"),
    ("started container", "the first container started, still probed"),
)


def test_sigkill_during_startup_leaves_one_container_per_driver_and_whole_files(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Killed with SIGKILL at four moments of its startup, one run after the
    other on the same config dir, then started once more: every driver runs
    in exactly one container, the installer's files are unchanged, every
    JSON file the edge core wrote parses, and no temp file is left."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT] * DRIVERS)
    # Slow asset answers and one launch at a time widen each phase enough
    # for a kill to land inside it.
    emulator.fault(r"^/api/v1/assets/", method="GET", delay=0.5)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={
            "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM": "1",
            "CYBERWAVE_EDGE_LOG_LEVEL": "DEBUG",
        },
    )
    installer = {
        name: (edge.config_dir / name).read_bytes() for name in INSTALLER_FILES
    }

    killed_at = []
    for marker, moment in KILL_POINTS:
        edge.start()
        edge.wait_for(
            lambda marker=marker: marker in edge.log_text(),
            timeout=STARTUP_TIMEOUT,
            what=f"{moment} (log line {marker!r})",
            interval=0.005,
        )
        edge.stop(signal.SIGKILL, timeout=10)
        killed_at.append(_last_line(edge))
    emulator.clear_faults()

    edge.start()
    wait_running(edge, docker_client, environment, what="every driver after the kills")
    # A few cycles more, in which a leftover would be tripped over.
    wait_keepalives(edge, emulator, 3)

    per_twin = _containers_per_twin(docker_client, fingerprint)
    assert per_twin == Counter({twin: 1 for twin in environment.twin_uuids}), (
        per_twin,
        killed_at,
    )
    assert not [
        c.name
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_FINGERPRINT}={fingerprint}"}
        )
        if c.status != "running"
    ]

    config = edge.config_dir
    for name, data in installer.items():
        assert (config / name).read_bytes() == data, name
    for path in _json_files(config):
        json.loads(path.read_text())
    for twin_uuid in environment.twin_uuids:
        twin_file = json.loads((config / f"{twin_uuid}.json").read_text())
        assert twin_file["uuid"] == twin_uuid
        assert twin_file["asset"]["uuid"] == environment.asset_uuid
    saved = json.loads((config / "desired-state.json").read_text())
    assert {t["uuid"] for t in saved["twins"]} == set(environment.twin_uuids)
    assert _temp_files(config) == []
    assert "Traceback" not in edge.log_text()
    assert edge.stop(timeout=10) == 0


# -- helpers -------------------------------------------------------------------


def _last_line(edge: EdgeProcess) -> str:
    lines = edge.log_lines()
    return lines[-1] if lines else ""


def _containers_per_twin(client: docker.DockerClient, fingerprint: str) -> Counter[str]:
    found = client.containers.list(
        all=True, filters={"label": f"{LABEL_FINGERPRINT}={fingerprint}"}
    )
    return Counter(str(c.labels.get(LABEL_TWIN)) for c in found)


def _json_files(config: Path) -> list[Path]:
    """Every JSON file in the config dir and its run/ directory."""
    return sorted([*config.glob("*.json"), *(config / "run").glob("*.json")])


def _temp_files(config: Path) -> list[str]:
    """Names of temp files of interrupted writes, anywhere under ``config``."""
    return sorted(str(path.relative_to(config)) for path in config.rglob(".tmp_*"))
