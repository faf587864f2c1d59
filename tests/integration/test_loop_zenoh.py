"""The Zenoh router started by the running edge core (spec "Zenoh data bus").

With ``ZENOH_ROUTER_ENABLED=true`` the edge core starts its router
container before any driver and points every driver at it through
``ZENOH_CONNECT``, unless the driver's own ``-e`` sets it (7b item 24);
``ZENOH_SHARED_MEMORY`` reaches every driver. A router that cannot run
holds back no driver and is a failed row in ``status``. A router a person
renamed gets its name back instead of a second one being started; one a
person paused is left alone and ``status`` says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import docker
import pytest

from tests.emulator.broker import free_port
from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    check,
    container_name,
)
from tests.support.loop import (
    IDLE_SCRIPT,
    DriverEnvironment,
    container_env,
    driver_environment,
    inspect,
    prepare_loop_edge,
    settled,
    wait_cycles,
)

pytestmark = pytest.mark.integration

OWN_ENDPOINT = "tcp/10.0.0.9:7447"


def test_router_starts_before_the_drivers_and_they_are_pointed_at_it(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    router_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The router container of the environment runs, was created before
    every driver, each driver gets ZENOH_CONNECT to its port (one with its
    own -e keeps that) and ZENOH_SHARED_MEMORY, and status names the
    router."""
    port = free_port()
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    plain, own = environment.twin_uuids
    own_twin = environment.twin(own)
    own_twin["metadata"]["drivers"]["default"]["params"] += [
        "-e",
        f"ZENOH_CONNECT={OWN_ENDPOINT}",
    ]
    edge = _start(
        new_edge,
        environment,
        env={
            "ZENOH_ROUTER_ENABLED": "true",
            "ZENOH_ROUTER_IMAGE": router_image,
            "ZENOH_ROUTER_PORT": str(port),
            "ZENOH_SHARED_MEMORY": "true",
        },
    )

    router_name = f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    router = inspect(docker_client, router_name)
    assert router is not None and router["State"]["Status"] == "running"
    assert router["Config"]["Image"] == router_image
    router_created = _created(router)
    for twin_uuid in (plain, own):
        attrs = inspect(docker_client, container_name(twin_uuid))
        assert attrs is not None
        assert _created(attrs) > router_created, twin_uuid
        assert container_env(attrs)["ZENOH_SHARED_MEMORY"] == "true"
    plain_env = container_env(inspect(docker_client, container_name(plain)) or {})
    own_env = container_env(inspect(docker_client, container_name(own)) or {})
    assert plain_env["ZENOH_CONNECT"] == f"tcp/127.0.0.1:{port}"
    assert own_env["ZENOH_CONNECT"] == OWN_ENDPOINT

    row = check(edge.status_json(), "zenoh router")
    assert row["ok"] is True
    assert router_name in row["detail"]
    assert edge.stop(timeout=10) == 0


def test_a_router_that_cannot_run_holds_back_no_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With a router image that exists nowhere, the drivers start anyway and
    status shows the router row failed with the reason and what to check."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    edge = _start(
        new_edge,
        environment,
        env={
            "ZENOH_ROUTER_ENABLED": "true",
            "ZENOH_ROUTER_IMAGE": "cw-test/no-such-zenoh:0",
            "ZENOH_ROUTER_PORT": str(free_port()),
        },
    )

    report = edge.wait_for(
        lambda: _router_failed(edge.status_json()),
        timeout=STARTUP_TIMEOUT,
        what="status to show the router failed",
    )
    row = check(report, "zenoh router")
    assert "cw-test/no-such-zenoh:0" in row["detail"]
    assert "ZENOH_ROUTER_IMAGE" in row["fix"]
    assert report["healthy"] is False
    assert edge.stop(timeout=10) == 0


def test_a_killed_router_is_started_again_within_a_cycle_or_two(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    router_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """docker kill on the router: the edge core sees it stop and starts it
    again within a few cycles, not at the next full pass minutes later,
    and the drivers are not touched."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    edge = _start(
        new_edge,
        environment,
        env={
            "ZENOH_ROUTER_ENABLED": "true",
            "ZENOH_ROUTER_IMAGE": router_image,
            "ZENOH_ROUTER_PORT": str(free_port()),
        },
    )
    router_name = f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    [driver] = environment.driver_names
    driver_id = (inspect(docker_client, driver) or {})["Id"]
    docker_client.api.kill(router_name)

    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    router = inspect(docker_client, router_name)
    assert router is not None and router["State"]["Status"] == "running"
    assert (inspect(docker_client, driver) or {})["Id"] == driver_id
    assert check(edge.status_json(), "zenoh router")["ok"] is True


def test_a_renamed_router_gets_its_name_back_instead_of_a_second_one(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    router_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """docker rename on the router: the edge core finds it by its labels and
    renames it back; it is the same container, no second router runs next
    to it on the host network, and status names it."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    edge = _start(new_edge, environment, env=_router_env(router_image))
    router_name = f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    router_id = (inspect(docker_client, router_name) or {})["Id"]
    docker_client.api.rename(router_id, f"my-router-{fingerprint}")

    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    ids = container_ids(docker_client, fingerprint)
    routers = {n: i for n, i in ids.items() if n not in environment.driver_names}
    assert routers == {router_name: router_id}
    router = inspect(docker_client, router_name)
    assert router is not None and router["State"]["Status"] == "running"
    row = check(edge.status_json(), "zenoh router")
    assert (row["ok"], row["detail"]) == (True, f"enabled: container {router_name}")


def test_a_paused_router_is_left_alone_and_status_says_so(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    router_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """docker pause on the router: like a paused driver it is neither removed
    nor recreated over the following cycles, and the status row says it is
    paused and how to undo it."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    edge = _start(new_edge, environment, env=_router_env(router_image))
    router_name = f"cyberwave-zenoh-router-{environment.environment_uuid[:8]}"
    router_id = (inspect(docker_client, router_name) or {})["Id"]
    docker_client.api.pause(router_id)
    try:
        wait_cycles(edge, emulator, environment.environment_uuid, 4)
        router = inspect(docker_client, router_name)
        assert router is not None and router["Id"] == router_id
        assert router["State"]["Status"] == "paused"
        row = check(edge.status_json(), "zenoh router")
        assert row["ok"] is False
        assert row["detail"] == (
            f"container {router_name} is paused by hand; "
            f"left alone until: docker unpause {router_name}"
        )
    finally:
        docker_client.api.unpause(router_id)


def _start(
    new_edge: EdgeFactory, environment: DriverEnvironment, *, env: dict[str, str]
) -> EdgeProcess:
    """Start an edge core; return once the daemon saw every driver running.

    (The router carries the fingerprint label too, so the usual wait for
    exactly the drivers among the running containers would not do.)
    """
    edge = prepare_loop_edge(new_edge, environment, env=env).start()
    edge.wait_for(
        lambda: settled(edge) >= environment.driver_names,
        timeout=STARTUP_TIMEOUT,
        what="the daemon to see every driver running",
    )
    return edge


def _created(attrs: dict[str, Any]) -> datetime:
    text = str(attrs["Created"])
    # The engine gives nanoseconds; fromisoformat takes microseconds.
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6]
    return datetime.fromisoformat(f"{head}.{fraction}+00:00")


def _router_failed(report: dict[str, Any]) -> dict[str, Any] | None:
    for item in report.get("checks", []):
        if item.get("name") == "zenoh router" and item.get("ok") is False:
            return report
    return None


def _router_env(router_image: str) -> dict[str, str]:
    return {
        "ZENOH_ROUTER_ENABLED": "true",
        "ZENOH_ROUTER_IMAGE": router_image,
        "ZENOH_ROUTER_PORT": str(free_port()),
    }
