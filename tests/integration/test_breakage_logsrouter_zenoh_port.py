"""The Zenoh router's port held by another program on the host.

A router that cannot listen exits, and Docker restarts it over and over;
that must not pass for a running router. The edge core names the setting
and the fix in one line and in ``status``, and the drivers run anyway.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import pytest

from tests.emulator.broker import free_port
from tests.integration.test_loop_zenoh import _router_failed, _start
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, check
from tests.support.images import ensure_router_image
from tests.support.loop import IDLE_SCRIPT, driver_environment, inspect, settled

pytestmark = pytest.mark.integration

BINDING_ROUTER = "cw-test/zenoh-binding:local"
# Like zenohd: listens on 7447, or where --listen says, and exits when it cannot.
BINDING_ENTRYPOINT = [
    "/bin/sh",
    "-c",
    'port=7447; case "$*" in *--listen*) port=${*##*:};; esac; '
    "echo zenohd $*; exec nc -l -p $port",
    "zenohd",
]


@pytest.fixture(scope="module")
def binding_router(docker_client: docker.DockerClient) -> str:
    """A router stand-in that really listens on its port."""
    ensure_router_image(docker_client, BINDING_ROUTER, entrypoint=BINDING_ENTRYPOINT)
    return BINDING_ROUTER


@contextmanager
def listened_on(port: int) -> Iterator[None]:
    """Another program of the host listens on TCP ``port`` meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("0.0.0.0", port))
        holder.listen()
        yield


@pytest.fixture
def held_port() -> Iterator[int]:
    """A TCP port another program of the host listens on."""
    port = free_port()
    with listened_on(port):
        yield port


def test_a_router_port_in_use_is_named_and_holds_no_driver_back(
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    binding_router: str,
    held_port: int,
    docker_client: docker.DockerClient,
) -> None:
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    edge = _start(
        new_edge,
        environment,
        env={
            "ZENOH_ROUTER_ENABLED": "true",
            "ZENOH_ROUTER_IMAGE": binding_router,
            "ZENOH_ROUTER_PORT": str(held_port),
        },
    )
    report: dict[str, Any] = edge.wait_for(
        lambda: _router_failed(edge.status_json()),
        timeout=STARTUP_TIMEOUT,
        what="status to show the router failed",
    )
    row = check(report, "zenoh router")
    assert f"port {held_port} (ZENOH_ROUTER_PORT) is already in use" in row["detail"]
    lines = [
        line
        for line in edge.log_text().splitlines()
        if "ZENOH_ROUTER_PORT" in line and "[ERROR]" in line
    ]
    assert len(lines) == 1, lines
    assert "set ZENOH_ROUTER_PORT to a free port" in lines[0]
    router = inspect(
        docker_client, f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    )
    assert router is None or router["RestartCount"] == 0
    assert edge.stop(timeout=10) == 0


def test_a_router_looping_on_a_taken_port_at_start_is_named(
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    binding_router: str,
    docker_client: docker.DockerClient,
) -> None:
    """After a reboot another program got the port first and Docker
    restarts our router over and over: the edge core that starts then
    says so, instead of waiting for it forever."""
    port = free_port()
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    env = {
        "ZENOH_ROUTER_ENABLED": "true",
        "ZENOH_ROUTER_IMAGE": binding_router,
        "ZENOH_ROUTER_PORT": str(port),
    }
    edge = _start(new_edge, environment, env=env)
    name = f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    edge.wait_for(
        lambda: check(edge.status_json(), "zenoh router")["ok"] is True,
        timeout=STARTUP_TIMEOUT,
        what="the router to run",
    )
    assert edge.stop(timeout=10) == 0
    docker_client.api.stop(name, timeout=1)

    with listened_on(port):
        docker_client.api.start(name)
        edge.wait_for(
            lambda: (inspect(docker_client, name) or {}).get("RestartCount", 0) > 0,
            timeout=STARTUP_TIMEOUT,
            what="Docker to restart the router that cannot listen",
            allow_exit=True,
        )
        edge.start()
        report: dict[str, Any] = edge.wait_for(
            lambda: _router_failed(edge.status_json()),
            timeout=STARTUP_TIMEOUT,
            what="status to show the router failed",
        )
        row = check(report, "zenoh router")
        assert f"port {port} (ZENOH_ROUTER_PORT) is already in use" in row["detail"]
        assert settled(edge) >= environment.driver_names
        assert edge.stop(timeout=10) == 0
