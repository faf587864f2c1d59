"""A driver image removed from the host while its driver runs.

An operator freeing space (``docker rmi -f``) can untag the image a
running driver was made from. The container keeps its image by id, so
nothing needs the tag while it exists: the edge core adopts the driver as
it is, with no start failure. The whole edge core runs as a process
against the backend emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.errors import ImageNotFound

from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory
from tests.support.loop import (
    IDLE_SCRIPT,
    alert_posts,
    driver_environment,
    driver_state,
    is_running,
    start_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def own_tag(docker_client: docker.DockerClient, driver_image: str) -> Iterator[str]:
    """A tag of the test driver image that only this test uses (and removes)."""
    tag = f"cw-test/untagged-driver:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(driver_image).tag(tag)
    yield tag
    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(tag)


def test_a_running_driver_whose_image_was_removed_is_adopted(
    emulator: Emulator,
    new_edge: EdgeFactory,
    docker_client: docker.DockerClient,
    own_tag: str,
) -> None:
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT], image=own_tag)
    for twin in environment.fixture["twins"]:
        twin["metadata"]["drivers"]["default"]["docker_image"] = own_tag
    edge = start_loop_edge(new_edge, environment, docker_client)
    [name] = environment.driver_names
    ids = container_ids(docker_client, new_edge.fingerprint)
    assert edge.stop() == 0

    docker_client.images.remove(own_tag)
    edge.start()
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    assert container_ids(docker_client, new_edge.fingerprint) == ids
    assert is_running(docker_client, name)
    assert driver_state(edge, name).get("outcome") == "adopted"
    assert not alert_posts(emulator, "driver_start_failure")
    assert "keeps running from it" in edge.log_text()
