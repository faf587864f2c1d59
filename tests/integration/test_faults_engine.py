"""The Docker engine away when the edge core starts, then back.

The edge core is pointed at a Unix socket where nothing listens yet (as
while dockerd starts after a power cut). It must register and keep
looping, say once that the engine is away and what to do, and start the
drivers as soon as the engine answers: here a proxy appears at that
socket, forwarding to the real engine.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    example_environment,
)
from tests.support.faults import CountingProxy

pytestmark = pytest.mark.integration

ENGINE_SOCKET = Path("/var/run/docker.sock")


def test_an_engine_that_comes_up_late_gets_the_drivers_started(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """With no engine for several retries, the edge core registers, warns
    once naming the fix, and once the engine answers starts the drivers
    and says the engine is back."""
    socket_path = tmp_path / "docker.sock"
    example = example_environment(fingerprint)
    edge = new_edge(example, env={"DOCKER_HOST": f"unix://{socket_path}"}).start()
    edge.wait_for(
        lambda: len(emulator.requests("POST", r"/edges/discover$")) >= 3,
        timeout=STARTUP_TIMEOUT,
        what="registration and a few keepalives without an engine",
    )
    warnings = [
        line
        for line in edge.log_lines()
        if "[WARNING]" in line and "Docker engine" in line
    ]
    assert len(warnings) == 1, warnings
    assert "systemctl start docker" in warnings[0]

    with CountingProxy.unix(socket_path, ENGINE_SOCKET) as proxy:
        wait_for_drivers(
            edge, docker_client, fingerprint, example.driver_names, what="drivers"
        )
        assert proxy.attempts()
        assert "Docker engine reachable again" in edge.log_text()
        assert "Traceback" not in edge.log_text()
        assert edge.stop(timeout=10) == 0
