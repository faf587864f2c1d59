"""Fixtures shared by the integration tests that run the whole edge core.

They build the test driver image once per session and give each test its
edge core processes, ended at teardown before the ``fingerprint`` fixture
removes the containers those processes created. Nothing here starts an
edge core by itself. The model cache tests get their ``site`` here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import EdgeFactory, EdgeProcesses
from tests.support.images import (
    DRIVER_IMAGE,
    ROUTER_IMAGE,
    ensure_driver_image,
    ensure_router_image,
)
from tests.support.model_site import Site, open_site


@pytest.fixture(scope="session")
def driver_image(docker_client: docker.DockerClient) -> str:
    """The busybox test driver image, built locally when needed."""
    ensure_driver_image(docker_client)
    return DRIVER_IMAGE


@pytest.fixture(scope="session")
def router_image(docker_client: docker.DockerClient) -> str:
    """The Zenoh router stand-in image, built locally when needed."""
    ensure_router_image(docker_client)
    return ROUTER_IMAGE


@pytest.fixture
def edges(fingerprint: str) -> Iterator[EdgeProcesses]:
    """Edge core processes of one test, ended before its containers are removed."""
    processes = EdgeProcesses()
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
def new_edge(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    edges: EdgeProcesses,
    tmp_path: Path,
) -> EdgeFactory:
    """Prepares edge cores wired to the test's emulator and plain broker."""
    return EdgeFactory(edges, tmp_path, emulator, mqtt_broker, fingerprint)


@pytest.fixture
def site(emulator: Emulator, tmp_path: Path) -> Iterator[Site]:
    """A fresh model cache, the emulator as catalog and a weights file server."""
    with open_site(emulator, tmp_path) as opened:
        yield opened
