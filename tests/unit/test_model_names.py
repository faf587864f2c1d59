"""Container names and twin JSON file names of the wire contract."""

from __future__ import annotations

import pytest

from edge_core.model.names import (
    PROTECTED_FILES,
    driver_container_name,
    is_twin_json_name,
    is_valid_service_name,
    worker_container_name,
    zenoh_router_name,
)

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"


def test_driver_names() -> None:
    """Drivers are cyberwave-driver-<twin8>, services add -<service>."""
    assert driver_container_name(TWIN) == "cyberwave-driver-7f3c2a10"
    assert driver_container_name(TWIN, "slam") == "cyberwave-driver-7f3c2a10-slam"


def test_worker_and_router_names() -> None:
    """The worker and the Zenoh router are named after the environment."""
    assert worker_container_name(ENV) == "cyberwave-worker-5b0e6a52"
    assert zenoh_router_name(ENV) == "cyberwave-zenoh-router-5b0e6a52"
    assert zenoh_router_name(None) == "cyberwave-zenoh-router-default"
    assert zenoh_router_name("") == "cyberwave-zenoh-router-default"


@pytest.mark.parametrize("name", ["driver", "slam", "nav2", "a.b_c-d", "X"])
def test_valid_service_names(name: str) -> None:
    """Names Docker accepts in a container name are valid services."""
    assert is_valid_service_name(name)


@pytest.mark.parametrize("name", ["", "-x", "has space", "a/b", "é"])
def test_invalid_service_names(name: str) -> None:
    """Names Docker would refuse are invalid services."""
    assert not is_valid_service_name(name)


def test_twin_json_name_gives_uuid() -> None:
    """A UUID-named JSON file is a twin file and yields its uuid."""
    assert is_twin_json_name(f"{TWIN}.json") == TWIN


@pytest.mark.parametrize(
    "filename",
    [
        *sorted(PROTECTED_FILES),
        "desired-state.json",
        f"{TWIN}.json.tmp",
        f"{TWIN}.yaml",
        TWIN,
        ".json",
        f"workers/{TWIN}.json",
        f"sub\\{TWIN}.json",
        "not-a-uuid.json",
    ],
)
def test_not_twin_json_names(filename: str) -> None:
    """Protected, non-JSON, nested and non-UUID names are not twin files."""
    assert is_twin_json_name(filename) is None


def test_protected_files() -> None:
    """The four protected config files are listed."""
    assert {
        "credentials.json",
        "fingerprint.json",
        "environment.json",
        "edge.json",
    } == PROTECTED_FILES
