"""Booting offline from a desired-state.json of an odd shape.

The file may come from another version of the edge core or have been
touched by hand: a ``fetched_at`` that is not a plain epoch number, no
``assets``. It only says when the download was made and what to start, so
the drivers it names still start without the backend, ``status`` still
answers, and no file under the config dir ever holds the token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.docker_helpers import remove_all, wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    example_environment,
)

pytestmark = pytest.mark.integration


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document[key] = value

    return change


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "fetched-at-huge": _set("fetched_at", 1e300),
    "fetched-at-null": _set("fetched_at", None),
    "fetched-at-iso": _set("fetched_at", "2026-01-02T03:04:05+00:00"),
}


def _token_files(config_dir: Path, token: str) -> list[str]:
    """Files under ``config_dir`` holding ``token``, but credentials.json."""
    found = []
    for path in sorted(config_dir.rglob("*")):
        mine = path.is_file() and path.name != "credentials.json"
        if mine and token.encode() in path.read_bytes():
            found.append(str(path.relative_to(config_dir)))
    return found


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_odd_desired_state_still_boots_its_drivers_offline(
    change: str,
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    assert edge.stop(timeout=10) == 0
    assert _token_files(edge.config_dir, emulator.token) == []

    saved = edge.config_dir / "desired-state.json"
    document = json.loads(saved.read_text())
    CHANGES[change](document)
    saved.write_text(json.dumps(document))

    remove_all(docker_client, fingerprint)
    emulator.stop()
    edge.start()
    edge.wait_for_log(
        "starting drivers from the desired state", timeout=STARTUP_TIMEOUT
    )
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        example.driver_names,
        what="the drivers of the saved desired state",
    )
    edge.status_json()
    assert edge.stop(timeout=10) == 0
    assert _token_files(edge.config_dir, emulator.token) == []
