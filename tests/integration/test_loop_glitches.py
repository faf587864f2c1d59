"""Answers of the backend that look valid but are wrong for a moment.

A backend glitch can answer the environment listing with an empty list
(a replica not caught up, a cache flushed). The drivers are not removed
for it: their twins look unlinked, so they are left alone as orphans, and
once the listing is whole again they are adopted as they are, neither
recreated nor restarted. The whole edge core runs as a process against
the backend emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    alerts_of,
    driver_environment,
    is_running,
    listing_path,
    settled,
    start_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration


def test_an_empty_listing_for_a_few_cycles_leaves_every_driver_as_it_is(
    emulator: Emulator,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT] * 2)
    edge = start_loop_edge(new_edge, environment, docker_client)
    ids = container_ids(docker_client, new_edge.fingerprint)
    files = {
        twin: (edge.config_dir / f"{twin}.json").read_bytes()
        for twin in environment.twin_uuids
    }

    glitch = emulator.fault(
        listing_path(environment.environment_uuid), method="GET", status=200, body=[]
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 4)
    during = edge.state() or {}
    emulator.remove_fault(glitch)
    wait_cycles(edge, emulator, environment.environment_uuid, 4)

    assert set(during.get("orphans") or ()) == environment.driver_names
    assert container_ids(docker_client, new_edge.fingerprint) == ids
    assert all(is_running(docker_client, name) for name in environment.driver_names)
    edge.wait_for(
        lambda: settled(edge) >= environment.driver_names,
        timeout=10,
        what="the drivers adopted again",
    )
    assert not (edge.state() or {}).get("orphans")
    for twin, data in files.items():
        assert (edge.config_dir / f"{twin}.json").read_bytes() == data
        assert not alerts_of(emulator, twin, "driver_health")
        assert container_name(twin) in environment.driver_names
    assert "Traceback" not in edge.log_text()
