"""Pulling images from a real local registry, and when the registry fails."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.errors import NotFound

from edge_core.errors import ContainerError
from edge_core.runtime import RETRY_ANONYMOUSLY, DockerRuntime, PullEvent
from tests.support.docker_helpers import pushed_unique_image
from tests.support.registry import LocalRegistry, StalledRegistry, TokenAuthProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def pushed(
    docker_client: docker.DockerClient, registry: LocalRegistry
) -> Iterator[str]:
    """A unique image that exists only in the registry, not on the engine."""
    tag = uuid.uuid4().hex[:8]
    with pushed_unique_image(docker_client, registry, "cw-test/driver", tag) as ref:
        yield ref


def test_pull_reports_typed_progress(
    docker_runtime: DockerRuntime, pushed: str
) -> None:
    """A real pull calls back with layer events and returns the local image id."""
    assert docker_runtime.image_id(pushed) is None
    events: list[PullEvent] = []

    image_id = docker_runtime.pull(pushed, on_progress=events.append, stall_timeout=60)

    assert image_id == docker_runtime.image_id(pushed)
    assert image_id.startswith("sha256:")
    assert all(event.image == pushed for event in events)
    layer_events = [e for e in events if e.layer and e.status == "Pull complete"]
    assert len(layer_events) == 1
    with_bytes = [e for e in events if e.total]
    assert with_bytes, "the engine reported no byte counts"
    assert all(0 <= (e.current or 0) <= (e.total or 0) for e in with_bytes)
    assert any(e.status.startswith("Status: Downloaded newer image") for e in events)
    assert all(e.raw_line.startswith("{") for e in events)


def test_ensure_image_pulls_then_uses_local_when_registry_is_down(
    docker_runtime: DockerRuntime, registry: LocalRegistry, pushed: str
) -> None:
    """With the registry stopped, the local copy is used and a warning names both."""
    first = docker_runtime.ensure_image(
        pushed, on_progress=lambda _: None, stall_timeout=60, always_pull=True
    )
    assert first.pulled and not first.used_local

    registry.stop()
    second = docker_runtime.ensure_image(
        pushed, on_progress=lambda _: None, stall_timeout=60, always_pull=True
    )
    assert second.image_id == first.image_id
    assert second.used_local and not second.pulled
    assert second.pull_error_phase == "pull_failed"
    assert second.warning is not None
    assert pushed in second.warning
    assert "connection refused" in second.warning


def test_ensure_image_without_always_pull_keeps_the_local_copy(
    docker_runtime: DockerRuntime, pushed: str
) -> None:
    """A present image is not pulled again when the policy does not ask for it."""
    docker_runtime.pull(pushed, on_progress=lambda _: None, stall_timeout=60)
    events: list[PullEvent] = []
    result = docker_runtime.ensure_image(
        pushed, on_progress=events.append, stall_timeout=60, always_pull=False
    )
    assert result.used_local and not result.pulled
    assert events == []


def test_local_tag_is_never_pulled(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    stalled_registry: StalledRegistry,
    test_image: str,
) -> None:
    """A *-local tag present on the host is used without contacting the registry."""
    ref = f"{stalled_registry.address}/cw-test/driver:{uuid.uuid4().hex[:6]}-local"
    docker_client.api.tag(test_image, ref.rpartition(":")[0], ref.rpartition(":")[2])
    try:
        result = docker_runtime.ensure_image(
            ref, on_progress=lambda _: None, stall_timeout=1, always_pull=True
        )
    finally:
        docker_client.api.remove_image(ref)
    assert result.used_local and result.warning is None
    assert stalled_registry.connections == 0


def test_missing_image_is_image_missing(
    docker_runtime: DockerRuntime, registry: LocalRegistry
) -> None:
    """An image that is neither local nor in the registry is image_missing."""
    ref = registry.ref("cw-test/never-pushed", "1")
    with pytest.raises(ContainerError) as caught:
        docker_runtime.ensure_image(
            ref, on_progress=lambda _: None, stall_timeout=60, always_pull=True
        )
    assert caught.value.phase == "image_missing"
    message = str(caught.value)
    assert ref in message
    assert "manifest unknown" in message


def test_pull_of_unknown_tag_is_pull_failed_in_one_line(
    docker_runtime: DockerRuntime, registry: LocalRegistry
) -> None:
    """The registry's refusal is reported as pull_failed on a single line."""
    with pytest.raises(ContainerError) as caught:
        docker_runtime.pull(
            registry.ref("cw-test/never-pushed", "2"),
            on_progress=lambda _: None,
            stall_timeout=60,
        )
    assert caught.value.phase == "pull_failed"
    assert "\n" not in str(caught.value)


def test_stalled_registry_times_out(
    docker_runtime: DockerRuntime, stalled_registry: StalledRegistry
) -> None:
    """A registry that never answers aborts the pull with pull_timeout."""
    ref = f"{stalled_registry.address}/cw-test/driver:1"
    with pytest.raises(ContainerError) as caught:
        docker_runtime.pull(ref, on_progress=lambda _: None, stall_timeout=1.5)
    assert caught.value.phase == "pull_timeout"
    assert ref in str(caught.value)
    assert stalled_registry.connections >= 1


def test_stalled_registry_without_local_copy_is_image_missing(
    docker_runtime: DockerRuntime, stalled_registry: StalledRegistry
) -> None:
    """ensure_image turns a stalled pull of an absent image into image_missing."""
    ref = f"{stalled_registry.address}/cw-test/driver:2"
    with pytest.raises(ContainerError) as caught:
        docker_runtime.ensure_image(
            ref, on_progress=lambda _: None, stall_timeout=1.5, always_pull=True
        )
    assert caught.value.phase == "image_missing"
    assert "stalled" in str(caught.value)


def test_refused_credentials_are_retried_anonymously(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    auth_registry: TokenAuthProxy,
    pushed: str,
) -> None:
    """A registry that calls the credentials unauthorized is pulled from anonymously."""
    ref = f"{auth_registry.address}/{pushed.split('/', 1)[1]}"
    events: list[PullEvent] = []
    try:
        image_id = docker_runtime.pull(
            ref,
            on_progress=events.append,
            stall_timeout=60,
            auth_config={"username": "robot", "password": "wrong"},
        )
        assert image_id == docker_runtime.image_id(ref)
    finally:
        with contextlib.suppress(NotFound):
            docker_client.api.remove_image(ref, force=True)
    assert auth_registry.token_requests == [True, False]
    statuses = [event.status for event in events]
    assert statuses[0] == RETRY_ANONYMOUSLY
    assert "Pull complete" in statuses


def test_anonymous_refusal_is_not_retried(
    docker_runtime: DockerRuntime,
    auth_registry: TokenAuthProxy,
) -> None:
    """An explicitly anonymous pull that fails is reported once, not retried."""
    ref = f"{auth_registry.address}/cw-test/never-pushed:1"
    events: list[PullEvent] = []
    with pytest.raises(ContainerError) as caught:
        docker_runtime.pull(
            ref, on_progress=events.append, stall_timeout=60, auth_config={}
        )
    assert caught.value.phase == "pull_failed"
    assert RETRY_ANONYMOUSLY not in [event.status for event in events]
    assert auth_registry.token_requests == [False]
