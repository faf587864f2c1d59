"""A driver in a crash loop is parked, retried once per cool-off, and released.

protocol.md 4.11 and 7b item 23: more restarts than the threshold within
the window stop the driver (restart policy ``no``) with a
``driver_restart_loop`` alert; after the cool-off it gets one more start,
and each further loop doubles the cool-off; a change of its spec releases
it and resolves the alert. The whole edge core runs as a process against
the backend emulator, Mosquitto and the Docker engine, with a cool-off of
seconds instead of minutes.
"""

from __future__ import annotations

import copy
from typing import Any

import docker
import pytest

from edge_core.model.spec import LABEL_SPEC_HASH
from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    container_name,
    status_row,
)
from tests.support.loop import (
    IDLE_SCRIPT,
    alert_posts,
    alerts_of,
    driver_environment,
    driver_profile,
    driver_state,
    inspect,
    is_running,
    prepare_loop_edge,
    settled,
    wait_edge_uuid,
)

pytestmark = pytest.mark.integration

CRASH_SCRIPT = "echo ERROR no device at /dev/ttyACM0; exit 1"
TROUBLESHOOTING_URL = "https://docs.example.com/drivers/troubleshooting"
COOLOFF = 5.0
FLAPPING = {
    "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "2",
    "CYBERWAVE_DRIVER_RESTART_LOOP_WINDOW_SECONDS": "60",
    "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": str(COOLOFF),
    "CYBERWAVE_DRIVER_FLAP_COOLOFF_MAX_SECONDS": "600",
    "CYBERWAVE_DRIVER_TROUBLESHOOTING_URL": TROUBLESHOOTING_URL,
}


def test_a_crash_looping_driver_is_parked_retried_and_released(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The looping driver is stopped with restart policy ``no`` and an error
    alert naming the troubleshooting URL, status calls it flapping until a
    given time; after the cool-off it is started exactly once more, loops
    and is parked for twice as long; fixing its metadata releases it and
    resolves the alert. The healthy driver is never touched."""
    environment = driver_environment(fingerprint, [CRASH_SCRIPT, IDLE_SCRIPT])
    looping_twin, healthy_twin = environment.twin_uuids
    looping, healthy = container_name(looping_twin), container_name(healthy_twin)
    edge = prepare_loop_edge(new_edge, environment, env=FLAPPING).start()
    edge.wait_for(
        lambda: healthy in settled(edge),
        timeout=STARTUP_TIMEOUT,
        what="the healthy driver running",
    )
    healthy_before = inspect(docker_client, healthy)
    assert healthy_before is not None

    def loop_posts() -> list[Any]:
        return [
            request
            for request in emulator.requests("POST", r"^/api/v1/alerts$")
            if request.body.get("alert_type") == "driver_restart_loop"
            and request.body.get("twin_uuid") == looping_twin
        ]

    def starts() -> int:
        return len(alert_posts(emulator, "driver_starting", looping_twin))

    def parked_until(after: float = 0.0) -> float | None:
        row = driver_state(edge, looping)
        until = row.get("parked_until")
        flapping = row.get("outcome") == "flapping"
        return until if flapping and until and until > after else None

    # The first loop: parked for the cool-off, after a single start.
    edge.wait_for(loop_posts, timeout=STARTUP_TIMEOUT, what="a restart-loop alert")
    assert starts() == 1
    parked = inspect(docker_client, looping)
    assert parked is not None
    assert parked["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert parked["State"]["Status"] == "exited"
    [alert] = alerts_of(emulator, looping_twin, "driver_restart_loop")
    assert alert["status"] == "active"
    assert alert["severity"] == "error"
    assert TROUBLESHOOTING_URL in alert["description"]
    assert alert["environment_uuid"] == environment.environment_uuid
    first = loop_posts()[0]
    assert first.body["metadata"]["cooloff_seconds"] == COOLOFF
    assert first.body["metadata"]["loop"] == 1
    assert first.body["metadata"]["restarts"] > 2
    assert first.body["metadata"]["container_name"] == looping
    # Parked at the alert's moment (or just before) for one cool-off.
    until = edge.wait_for(
        parked_until, timeout=STARTUP_TIMEOUT, what="the daemon's parking"
    )
    assert 0 < until - first.timestamp <= COOLOFF

    # After the cool-off: one more start, another loop, twice the cool-off.
    edge.wait_for(
        lambda: len(loop_posts()) >= 2,
        timeout=STARTUP_TIMEOUT,
        what="the driver parked a second time",
    )
    assert starts() == 2
    second = loop_posts()[1]
    assert second.body["metadata"]["cooloff_seconds"] == 2 * COOLOFF
    assert second.body["metadata"]["loop"] == 2
    until = edge.wait_for(
        lambda: parked_until(after=until),
        timeout=STARTUP_TIMEOUT,
        what="the daemon's second parking",
    )
    assert COOLOFF < until - second.timestamp <= 2 * COOLOFF
    # The backend dedupes onto the alert that is still active.
    assert len(alerts_of(emulator, looping_twin, "driver_restart_loop")) == 1
    again = inspect(docker_client, looping)
    assert again is not None
    assert again["HostConfig"]["RestartPolicy"]["Name"] == "no"
    row = status_row(edge.status_json(), looping)
    assert row["outcome"] == "flapping", row
    assert row["restarts"] > 2
    assert row["ok"] is False
    assert f"docker logs {looping}" in row["note"]

    # A fixed driver profile is a new spec: released, alert resolved.
    metadata = copy.deepcopy(environment.twin(looping_twin)["metadata"])
    metadata["drivers"] = driver_profile(IDLE_SCRIPT)
    emulator.edit_twin(looping_twin, {"metadata": metadata})
    edge.wait_for(
        lambda: (
            is_running(docker_client, looping)
            and alerts_of(
                emulator, looping_twin, "driver_restart_loop", status="resolved"
            )
            and looping in settled(edge)
        ),
        timeout=STARTUP_TIMEOUT,
        what="the fixed driver running and its alert resolved",
    )
    fixed = inspect(docker_client, looping)
    assert fixed is not None
    assert fixed["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert (
        fixed["Config"]["Labels"][LABEL_SPEC_HASH]
        != again["Config"]["Labels"][LABEL_SPEC_HASH]
    )
    assert status_row(edge.status_json(), looping)["ok"] is True

    untouched = inspect(docker_client, healthy)
    assert untouched is not None
    assert untouched["Id"] == healthy_before["Id"]
    assert untouched["State"]["StartedAt"] == healthy_before["State"]["StartedAt"]
    assert not alerts_of(emulator, healthy_twin, "driver_restart_loop")


def test_a_remote_restart_releases_a_parked_driver_and_resolves_its_alert(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver parked for a long cool-off whose device came back runs again
    at once after restart_edge_core (7b item 23), with restart policy
    unless-stopped; its driver_restart_loop alert is resolved and status no
    longer calls it flapping."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    # The "device" is a file the test puts in the config dir, which every
    # driver sees read-only at /app/.cyberwave.
    needs_device = (
        "if [ ! -f /app/.cyberwave/device-present ]; then "
        f"echo ERROR no device; exit 1; fi; {IDLE_SCRIPT}"
    )
    environment = driver_environment(fingerprint, [needs_device])
    [twin_uuid] = environment.twin_uuids
    name = container_name(twin_uuid)
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={**FLAPPING, "CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS": "600"},
    ).start()
    edge_uuid = wait_edge_uuid(edge, emulator, fingerprint)
    edge.wait_for(
        lambda: driver_state(edge, name).get("outcome") == "flapping",
        timeout=STARTUP_TIMEOUT,
        what="the driver parked as flapping",
    )
    edge.wait_for(
        lambda: alerts_of(emulator, twin_uuid, "driver_restart_loop"),
        timeout=STARTUP_TIMEOUT,
        what="its driver_restart_loop alert",
    )
    (edge.config_dir / "device-present").write_text("yes\n")

    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for(
        lambda: _restart_completed(emulator, answer["alert_uuid"]),
        timeout=STARTUP_TIMEOUT,
        what="the restart completed",
    )
    edge.wait_for(
        lambda: is_running(docker_client, name) and name in settled(edge),
        timeout=STARTUP_TIMEOUT,
        what="the released driver running",
    )
    edge.wait_for(
        lambda: all(
            alert["status"] == "resolved"
            for alert in alerts_of(emulator, twin_uuid, "driver_restart_loop")
        ),
        timeout=STARTUP_TIMEOUT,
        what="its driver_restart_loop alert resolved",
    )

    attrs = inspect(docker_client, name)
    assert attrs is not None
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    row = status_row(edge.status_json(), name)
    assert (row["state"], row["outcome"]) == ("running", "running")
    assert "no longer parked: the edge core was restarted" in edge.log_text()


def _restart_completed(emulator: Emulator, alert_uuid: str) -> bool:
    return any(
        alert["uuid"] == alert_uuid
        and alert["status"] == "resolved"
        and alert["metadata"].get("phase") == "completed"
        for alert in emulator.alerts()
    )
