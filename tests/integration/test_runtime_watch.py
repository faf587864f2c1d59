"""The container watch re-reads our containers only after an engine event."""

from __future__ import annotations

import threading
import time

import docker
import pytest

from edge_core.runtime import ContainerState, DockerRuntime
from edge_core.runtime.container import ContainerView
from edge_core.runtime.watch import ContainerWatch
from tests.support.specs import make_spec

pytestmark = pytest.mark.integration

SLEEP = ("sh", "-c", "sleep 3600")


class CountingRuntime(DockerRuntime):
    """The real adapter, counting how often the containers are listed."""

    listings = 0

    def list_managed(self, fingerprint: str) -> list[ContainerView]:
        self.listings += 1
        return super().list_managed(fingerprint)


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_listing_is_cached_until_an_event_arrives(
    docker_client: docker.DockerClient, fingerprint: str, test_image: str
) -> None:
    runtime = CountingRuntime(docker_client)
    actions: list[str] = []
    changed = threading.Event()

    def on_change(action: str) -> None:
        actions.append(action)
        changed.set()

    watch = ContainerWatch(runtime, fingerprint, max_age=3600, on_change=on_change)
    watch.start()
    try:
        name = f"cw-{fingerprint}-watched"
        runtime.create(
            make_spec(name, image=test_image, command=SLEEP), fingerprint=fingerprint
        )
        runtime.start(name, fingerprint=fingerprint)
        _wait(lambda: "start" in actions)

        first = watch.views()
        assert [v.name for v in first] == [name]
        listed = runtime.listings
        # Nothing happened to our containers: the cache answers.
        assert [v.state for v in watch.views()] == [ContainerState.RUNNING]
        assert runtime.listings == listed

        changed.clear()
        docker_client.containers.get(name).kill()
        _wait(lambda: "die" in actions)
        after = watch.views()
        assert runtime.listings == listed + 1
        assert [v.state for v in after] == [ContainerState.EXITED]
    finally:
        watch.stop()


def test_a_stale_cache_is_read_again(
    docker_client: docker.DockerClient, fingerprint: str
) -> None:
    runtime = CountingRuntime(docker_client)
    watch = ContainerWatch(runtime, fingerprint, max_age=0.0)
    watch.start()
    try:
        watch.views()
        watch.views()
        assert runtime.listings == 2
    finally:
        watch.stop()
