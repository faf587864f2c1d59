"""Containers without our fingerprint label are never touched (protocol 7b.16)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from docker.errors import NotFound

from edge_core.model.spec import LABEL_FINGERPRINT
from edge_core.runtime import DockerRuntime, ForeignContainerError
from tests.support.specs import make_spec

pytestmark = pytest.mark.integration


@pytest.fixture(params=["unlabelled", "other-edge"])
def foreign(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    test_image: str,
) -> Iterator[str]:
    """A running container made by someone else: no label, or another edge's."""
    name = f"cw-foreign-{uuid.uuid4().hex[:12]}"
    labels = {} if request.param == "unlabelled" else {LABEL_FINGERPRINT: "other-edge"}
    docker_client.api.create_container(
        test_image, ["sleep", "3600"], name=name, labels=labels
    )
    docker_client.api.start(name)
    yield name
    with contextlib.suppress(NotFound):
        docker_client.api.remove_container(name, force=True, v=True)


def state_of(client: docker.DockerClient, name: str) -> str:
    return str(client.api.inspect_container(name)["State"]["Status"])


def test_foreign_container_is_never_stopped_or_removed(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    foreign: str,
) -> None:
    """Every acting call on a foreign container of the same name is refused."""
    actions: dict[str, Callable[[], object]] = {
        "inspect": lambda: docker_runtime.inspect(foreign, fingerprint=fingerprint),
        "stop": lambda: docker_runtime.stop(
            foreign, fingerprint=fingerprint, timeout=1
        ),
        "remove": lambda: docker_runtime.remove(foreign, fingerprint=fingerprint),
        "start": lambda: docker_runtime.start(foreign, fingerprint=fingerprint),
        "restart policy": lambda: docker_runtime.update_restart_policy(
            foreign, "no", fingerprint=fingerprint
        ),
        "probe": lambda: docker_runtime.probe(
            foreign, fingerprint=fingerprint, timeout=1
        ),
        "logs": lambda: docker_runtime.logs(
            foreign, follow=False, fingerprint=fingerprint
        ),
    }
    for action, call in actions.items():
        with pytest.raises(ForeignContainerError, match=foreign):
            call()
        assert state_of(docker_client, foreign) == "running", action

    policy = docker_client.api.inspect_container(foreign)["HostConfig"]["RestartPolicy"]
    assert policy["Name"] in ("", "no")


def test_create_over_a_foreign_name_is_refused(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
    foreign: str,
) -> None:
    """Creating our container under a foreign container's name leaves it running."""
    spec = make_spec(foreign, image=test_image, command=("sleep", "60"))
    with pytest.raises(ForeignContainerError):
        docker_runtime.create(spec, fingerprint=fingerprint)
    assert state_of(docker_client, foreign) == "running"


def test_foreign_containers_are_not_listed_or_pruned(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    foreign: str,
) -> None:
    """Listing and pruning ignore containers of other owners, even stopped ones."""
    docker_client.api.stop(foreign, timeout=1)
    assert docker_runtime.list_managed(fingerprint) == []
    assert docker_runtime.prune_stopped(fingerprint) == []
    assert state_of(docker_client, foreign) == "exited"
