"""Twin sync through a real bind mount into a running driver container.

The twin file is mounted at ``/app/<uuid>.json`` the way the edge core
mounts it (protocol.md 4.6). The driver edits it from inside the
container; ``TwinSync`` pushes the edit to the emulated backend; then the
backend's metadata changes, ``TwinSync`` pulls it, and the container reads
the new metadata through the same mount, which only works when the file
was rewritten in place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.model.spec import LABEL_FINGERPRINT
from edge_core.model.twins import Twin
from edge_core.twins.files import twin_path
from edge_core.twins.sync import SyncReport, TwinSync
from tests.emulator.server import Emulator

pytestmark = pytest.mark.integration

ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
MOUNTED = f"/app/{ARM}.json"
EDITED_NAME = "renamed by the driver"
# Rewrites the file through the mount without replacing it (a redirect
# truncates and writes the same inode), then idles like a driver.
DRIVER_SCRIPT = (
    f'sed \'s/^  "name": "[^"]*"/  "name": "{EDITED_NAME}"/\' {MOUNTED} '
    f"> /tmp/edited && cat /tmp/edited > {MOUNTED} && echo INFO edited; "
    "while true; do sleep 3600; done"
)
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


@pytest.fixture
def client(emulator: Emulator, fingerprint: str) -> Iterator[CloudClient]:
    emulator.load_example_environment(fingerprint)
    made = CloudClient(
        base_url=emulator.url, token=lambda: emulator.token, retries=0, version="t"
    )
    yield made
    made.close()


def read_name(path: Path) -> str | None:
    """The file's top-level name, or None while it is not readable JSON."""
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    name = data.get("name")
    return name if isinstance(name, str) else None


def container_document(container: Any) -> dict[str, Any]:
    """The twin file as the container sees it."""
    result = container.exec_run(["cat", MOUNTED])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def test_driver_edit_is_pushed_and_backend_metadata_reaches_the_container(
    tmp_path: Path,
    emulator: Emulator,
    client: CloudClient,
    docker_client: docker.DockerClient,
    driver_image: str,
    fingerprint: str,
) -> None:
    """Push from inside the container, pull back into it, same inode throughout."""
    config = tmp_path / "config"
    config.mkdir()
    sync = TwinSync(config, client)
    raw = next(t for t in client.environment_twins(ENV) if t["uuid"] == ARM)
    twin = Twin.from_raw(raw)
    assert twin is not None and twin.asset_uuid is not None
    assets = {twin.asset_uuid: client.get_asset(twin.asset_uuid)}
    assert sync.ensure_files([twin], assets) == [ARM]
    assert sync.sync(client.environment_twins(ENV), [ARM]) == SyncReport()
    path = twin_path(config, ARM)
    inode = path.stat().st_ino

    container = docker_client.containers.run(
        driver_image,
        detach=True,
        name=f"cw-twinsync-{fingerprint}",
        environment={"DRIVER_SCRIPT": DRIVER_SCRIPT},
        volumes={str(path): {"bind": MOUNTED, "mode": "rw"}},
        labels={LABEL_FINGERPRINT: fingerprint},
        network_mode="none",
    )
    wait_for(
        lambda: read_name(path) == EDITED_NAME,
        timeout=60,
        what="the driver's edit of the mounted twin file",
    )

    pushed = sync.sync(client.environment_twins(ENV), [ARM])

    assert pushed.pushed == (ARM,)
    assert emulator.twins[ARM]["name"] == EDITED_NAME
    (body,) = [r.body for r in emulator.requests("PUT", rf"/twins/{ARM}$")]
    assert "asset_uuid" not in body and "environment_uuid" not in body

    metadata = dict(emulator.twins[ARM]["metadata"], privacy_filter={"on": True})
    emulator.edit_twin(ARM, {"metadata": metadata})

    pulled = sync.sync(client.environment_twins(ENV), [ARM])

    assert pulled.pulled == (ARM,)
    assert path.stat().st_ino == inode
    seen = container_document(container)
    assert seen["metadata"] == metadata
    assert seen["name"] == EDITED_NAME
    assert seen["asset"]["uuid"] == twin.asset_uuid
    assert sync.sync(client.environment_twins(ENV), [ARM]) == SyncReport()
