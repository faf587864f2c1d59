"""Fixtures shared by every test: Docker, test images, brokers, a registry.

Tests that need the Docker engine, Mosquitto or docker-registry FAIL when
those are missing (``scripts/setup-host`` installs them); nothing is
skipped silently. Every fixture isolates its test so the suite runs under
``pytest -n 2``: free ports, temporary directories, and a unique
fingerprint whose containers are force-removed at teardown.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from edge_core.model.spec import LABEL_FINGERPRINT
from edge_core.runtime import DockerRuntime
from tests.emulator.broker import Broker
from tests.support.images import TEST_IMAGE, ensure_test_image
from tests.support.registry import LocalRegistry, StalledRegistry, TokenAuthProxy

pytest_plugins = ["tests.emulator.pytest_plugin"]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker SDK client for the local engine; fails the test when absent."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (DockerException, RequestException, OSError) as exc:
        pytest.fail(
            f"the Docker engine is not reachable ({exc}); start it "
            f"(scripts/setup-host does) and run the tests again",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_runtime(docker_client: docker.DockerClient) -> DockerRuntime:
    """The edge core's Docker adapter over the session's client."""
    return DockerRuntime(docker_client)


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient) -> str:
    """The busybox test image reference, built locally when needed."""
    ensure_test_image(docker_client, TEST_IMAGE)
    return TEST_IMAGE


def remove_labelled(client: docker.DockerClient, fingerprint: str) -> int:
    """Force-remove every container carrying ``fingerprint`` as its owner
    label; returns how many there were."""
    label = f"{LABEL_FINGERPRINT}={fingerprint}"
    found = client.api.containers(all=True, filters={"label": label})
    for summary in found:
        with contextlib.suppress(NotFound):
            client.api.remove_container(summary["Id"], v=True, force=True)
    return len(found)


@pytest.fixture
def fingerprint(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique edge fingerprint; its containers are removed at teardown."""
    value = f"test-{uuid.uuid4().hex[:12]}"
    yield value
    # A create the engine was still carrying out for an edge core that has
    # already exited lands a moment later: sweep again until one finds none.
    remove_labelled(docker_client, value)
    for _ in range(10):
        time.sleep(0.2)
        if not remove_labelled(docker_client, value):
            break


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain Mosquitto broker on its own free port, counting CONNECTs."""
    broker = Broker(log_connects=True, workdir=tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def mqtt_broker_tls(tmp_path: Path) -> Iterator[Broker]:
    """A TLS Mosquitto broker on its own free port; ``ca_cert`` verifies it."""
    broker = Broker(tls=True, log_connects=True, workdir=tmp_path / "mosquitto-tls")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A real docker-registry on a free 127.0.0.1 port with its own storage."""
    local = LocalRegistry(tmp_path / "registry")
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def stalled_registry() -> Iterator[StalledRegistry]:
    """A loopback "registry" that accepts connections and never answers."""
    stalled = StalledRegistry()
    try:
        yield stalled
    finally:
        stalled.close()


@pytest.fixture
def auth_registry(registry: LocalRegistry) -> Iterator[TokenAuthProxy]:
    """A token-auth front of ``registry`` that refuses every credential."""
    proxy = TokenAuthProxy(registry)
    try:
        yield proxy
    finally:
        proxy.close()
