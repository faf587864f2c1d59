"""Twin uuids from the backend that are not ids are not used as ids.

A twin uuid becomes a file name in the config dir (``<uuid>.json``), a
container name and an MQTT topic level, so a value that could leave the
directory or that Docker and the broker refuse must never reach them.
"""

from __future__ import annotations

import pytest

from edge_core.model.linkage import linked_twins, resolve_topology
from edge_core.model.twins import Twin

FP = "lab-pc-0a1b2c3d4e5f"


def twin(uuid: object) -> dict[str, object]:
    return {"uuid": uuid, "asset_uuid": "a1", "metadata": {"edge_fingerprint": FP}}


@pytest.mark.parametrize(
    "uuid", ["../../etc/docker/daemon", "..", "a/b", "a#b", "+", " /x", "-rf"]
)
def test_unsafe_twin_uuid_makes_no_twin(uuid: str) -> None:
    """A uuid with a path separator, a topic wildcard or a leading dot or dash
    is treated like a missing one."""
    assert Twin.from_raw(twin(uuid)) is None
    assert linked_twins([twin(uuid)], FP) == ()
    assert resolve_topology([twin(uuid)], {}, FP).linked == ()


@pytest.mark.parametrize(
    "uuid", ["5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90", "parent", "cam_1", "A.b-c"]
)
def test_ordinary_twin_uuids_are_kept(uuid: str) -> None:
    """Canonical uuids and plain names stay usable ids."""
    view = Twin.from_raw(twin(uuid))

    assert view is not None
    assert view.uuid == uuid
