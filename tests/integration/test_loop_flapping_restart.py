"""A parked driver across a restart of the edge core (7b item 23).

Parking lives in the state file between two runs: a driver parked in its
cool-off stays parked, one being retried after it goes on being watched
as such (its next loop doubles the cool-off, and running steadily
releases it and resolves its alert), and a fix of its driver profile made
while the edge core was stopped releases it at the next start. The whole
edge core runs as a process against the backend emulator, Mosquitto and
the Docker engine, with cool-offs of seconds.
"""

from __future__ import annotations

import copy
import signal
import time
from typing import Any

import docker
import pytest

from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, EdgeProcess, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    alert_posts,
    alerts_of,
    driver_environment,
    driver_profile,
    driver_state,
    is_running,
    prepare_loop_edge,
)

pytestmark = pytest.mark.integration

COOLOFF = 5.0
CLEAR = 8.0
FLAPPING = {
    "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "2",
    "CYBERWAVE_DRIVER_RESTART_LOOP_WINDOW_SECONDS": "60",
    "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": str(COOLOFF),
    "CYBERWAVE_DRIVER_FLAP_COOLOFF_MAX_SECONDS": "600",
    "CYBERWAVE_DRIVER_FLAP_CLEAR_SECONDS": str(CLEAR),
}
# Crashes while the "broken" marker is in the config dir, which every
# driver sees read-only at /app/.cyberwave: a device that comes and goes.
DEVICE_SCRIPT = (
    "while true; do if [ -f /app/.cyberwave/broken ]; then "
    "echo ERROR device gone; exit 1; fi; sleep 0.2; done"
)


def _loop_posts(emulator: Emulator, twin_uuid: str) -> list[dict[str, Any]]:
    return alert_posts(emulator, "driver_restart_loop", twin_uuid)


def _restarted(edge: EdgeProcess, name: str) -> None:
    """Stop the edge core, start it again and wait for its first pass."""
    assert edge.stop(signal.SIGTERM) == 0
    edge.start()
    edge.wait_for(
        lambda: (
            (edge.state() or {}).get("pid") == edge.pid
            and driver_state(edge, name).get("outcome") == "flapping"
        ),
        timeout=STARTUP_TIMEOUT,
        what="the new process to take over the parked driver",
    )


def _retrying(
    emulator: Emulator,
    new_edge: EdgeFactory,
    fingerprint: str,
    docker_client: docker.DockerClient,
) -> tuple[EdgeProcess, str, str]:
    """A driver parked once whose device came back: it is being retried."""
    environment = driver_environment(fingerprint, [DEVICE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = prepare_loop_edge(new_edge, environment, env=FLAPPING)
    (edge.config_dir / "broken").write_text("x")
    edge.start()
    edge.wait_for(
        lambda: _loop_posts(emulator, twin_uuid),
        timeout=STARTUP_TIMEOUT,
        what="the first restart loop",
    )
    assert _loop_posts(emulator, twin_uuid)[0]["metadata"]["loop"] == 1
    (edge.config_dir / "broken").unlink()
    edge.wait_for(
        lambda: (
            is_running(docker_client, name)
            and driver_state(edge, name).get("outcome") == "flapping"
            and (driver_state(edge, name).get("parked_until") or 1e18) < time.time()
        ),
        timeout=STARTUP_TIMEOUT,
        what="the retry after the cool-off running, the driver still parked",
    )
    return edge, twin_uuid, name


def test_the_loop_count_survives_a_restart_during_the_retry(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Restarted while its retry runs, a driver that loops again is in its
    second loop: the cool-off doubles as it would have without the restart."""
    edge, twin_uuid, name = _retrying(emulator, new_edge, fingerprint, docker_client)
    _restarted(edge, name)
    assert "is being retried after restart loop 1" in edge.log_text()

    (edge.config_dir / "broken").write_text("x")
    edge.wait_for(
        lambda: len(_loop_posts(emulator, twin_uuid)) >= 2,
        timeout=STARTUP_TIMEOUT,
        what="the second restart loop",
    )

    second = _loop_posts(emulator, twin_uuid)[1]["metadata"]
    assert second["loop"] == 2
    assert second["cooloff_seconds"] == 2 * COOLOFF


def test_a_retry_taken_over_by_a_restart_is_released_once_steady(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The retried driver runs on after the restart: once it ran for the
    clear time it is released and its restart-loop alert is resolved."""
    edge, twin_uuid, name = _retrying(emulator, new_edge, fingerprint, docker_client)
    _restarted(edge, name)

    edge.wait_for(
        lambda: driver_state(edge, name).get("outcome") in ("running", "adopted"),
        timeout=STARTUP_TIMEOUT + CLEAR,
        what="the driver released",
    )
    edge.wait_for(
        lambda: all(
            alert["status"] == "resolved"
            for alert in alerts_of(emulator, twin_uuid, "driver_restart_loop")
        ),
        timeout=STARTUP_TIMEOUT,
        what="the restart-loop alert resolved",
    )
    assert is_running(docker_client, name)
    assert len(_loop_posts(emulator, twin_uuid)) == 1


def test_a_restart_during_the_cooloff_keeps_the_driver_parked(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Restarted inside the cool-off, the driver is not started early and
    the same spec stays parked; its next loop is the second."""
    environment = driver_environment(fingerprint, [DEVICE_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={**FLAPPING, "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "15"},
    )
    (edge.config_dir / "broken").write_text("x")
    edge.start()
    edge.wait_for(
        lambda: driver_state(edge, name).get("outcome") == "flapping",
        timeout=STARTUP_TIMEOUT,
        what="the driver parked",
    )
    parked_until = driver_state(edge, name)["parked_until"]
    _restarted(edge, name)
    assert "stays parked until" in edge.log_text()
    if time.time() < parked_until - 1:
        assert not is_running(docker_client, name)

    edge.wait_for(
        lambda: len(_loop_posts(emulator, twin_uuid)) >= 2,
        timeout=STARTUP_TIMEOUT + 15,
        what="the second restart loop",
    )
    second = _loop_posts(emulator, twin_uuid)[1]["metadata"]
    assert second["loop"] == 2
    assert second["cooloff_seconds"] == 30


def test_a_fix_made_while_the_edge_core_was_stopped_releases_the_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The operator fixes the driver profile while the edge core is down:
    the next start sees another spec than the one parked, so the driver
    starts at once and its alert is resolved, 10 min cool-off or not."""
    environment = driver_environment(fingerprint, ["echo ERROR no device; exit 1"])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={**FLAPPING, "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "600"},
    )
    edge.start()
    edge.wait_for(
        lambda: driver_state(edge, name).get("outcome") == "flapping",
        timeout=STARTUP_TIMEOUT,
        what="the driver parked",
    )
    assert edge.stop(signal.SIGTERM) == 0
    metadata = copy.deepcopy(environment.twin(twin_uuid)["metadata"])
    metadata["drivers"] = driver_profile(IDLE_SCRIPT)
    emulator.edit_twin(twin_uuid, {"metadata": metadata})

    edge.start()

    edge.wait_for(
        lambda: is_running(docker_client, name),
        timeout=STARTUP_TIMEOUT,
        what="the fixed driver running",
    )
    edge.wait_for(
        lambda: all(
            alert["status"] == "resolved"
            for alert in alerts_of(emulator, twin_uuid, "driver_restart_loop")
        ),
        timeout=STARTUP_TIMEOUT,
        what="the restart-loop alert resolved",
    )
    assert "its spec changed" in edge.log_text()
