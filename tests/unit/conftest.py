"""Fixtures shared by the unit tests of twin file sync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.cloud.rest import CloudClient
from tests.emulator.server import Emulator
from tests.support.twin_site import FINGERPRINT, Site


@pytest.fixture
def client(emulator: Emulator) -> Iterator[CloudClient]:
    """A REST client on the emulator that does not retry, so faults show at once."""
    emulator.load_example_environment(FINGERPRINT)
    made = CloudClient(
        base_url=emulator.url,
        token=lambda: emulator.token,
        retries=0,
        timeout=5.0,
        version="test",
    )
    yield made
    made.close()


@pytest.fixture
def site(tmp_path: Path, emulator: Emulator, client: CloudClient) -> Site:
    return Site(tmp_path / "config", emulator, client)
