"""The whole edge core when the backend or the broker is away (7b item 13).

Network errors and 5xx answers are temporary: the daemon keeps running,
retries with capped exponential backoff, starts the drivers it already
knows from ``desired-state.json``, and catches up once the backend is
back. A broker that is down at boot never holds the drivers back, and a
TLS broker is verified against the configured CA.
"""

from __future__ import annotations

import itertools
import json
import stat
from pathlib import Path

import docker
import pytest

from tests.emulator.broker import Broker, free_port
from tests.emulator.server import Emulator
from tests.support.docker_helpers import (
    container_ids,
    remove_all,
    running_names,
    wait_for_drivers,
)
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcesses,
    check,
    container_name,
    example_environment,
    prepare_edge,
    tree_snapshot,
)
from tests.support.mqtt import Recorder

pytestmark = pytest.mark.integration

TICKING_SCRIPT = "while true; do echo INFO tick; sleep 0.5; done"
CONFIG_FILES = ("credentials.json", "environment.json", "fingerprint.json")


def test_backend_errors_at_boot_are_waited_out_with_backoff(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A backend answering 500 keeps the daemon waiting (shown by status) and
    retrying with growing, capped delays; once it answers, the edge registers
    and the drivers start, with the config files untouched."""
    example = example_environment(fingerprint)
    edge = new_edge(
        example,
        env={
            # One request per attempt, so the gaps are the daemon's backoff.
            "CYBERWAVE_REST_RETRIES": "0",
            "CYBERWAVE_BACKOFF_INITIAL_SECONDS": "0.2",
            "CYBERWAVE_BACKOFF_MAX_SECONDS": "1.5",
        },
    )
    before = tree_snapshot(edge.config_dir)
    emulator.fault(r"^/api/v1/users/workspaces$", method="GET", status=500)
    edge.start()

    def token_checks() -> list[float]:
        found = emulator.requests("GET", r"^/api/v1/users/workspaces$")
        return [r.timestamp for r in found]

    edge.wait_for(
        lambda: len(token_checks()) >= 7,
        timeout=STARTUP_TIMEOUT,
        what="seven token checks",
    )
    daemon = check(edge.status_json(), "daemon")
    assert daemon["ok"] is False
    assert "waiting for the backend" in daemon["detail"]
    assert "HTTP 500" in daemon["detail"]
    assert not emulator.requests("POST", r"^/api/v1/edges")

    times = token_checks()[:7]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Nominal gaps 0.2, 0.4, 0.8, 1.5, 1.5, 1.5 (each ±20 % jitter).
    assert gaps[1] > gaps[0]
    assert gaps[3] > 2 * gaps[0]
    assert gaps[5] < 2 * gaps[4], f"the delay kept doubling past the cap: {gaps}"
    assert edge.running

    emulator.clear_faults()
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        example.driver_names,
        what="the drivers after the backend came back",
    )
    assert emulator.edge_by_fingerprint(fingerprint) is not None
    assert check(edge.status_json(), "daemon")["ok"] is True
    after = tree_snapshot(edge.config_dir)
    for name in CONFIG_FILES:
        assert after[name] == before[name], name
    for path in edge.config_dir.glob("*.json"):
        json.loads(path.read_text())


def test_boot_without_backend_starts_the_persisted_drivers(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With the backend unreachable at boot, the drivers of the desired state
    saved by the previous run start anyway, and are adopted once the backend
    answers again."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    assert edge.stop(timeout=10) == 0

    saved = edge.config_dir / "desired-state.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    state = json.loads(saved.read_text())
    assert state["environment_uuid"] == example.environment_uuid
    assert {t["uuid"] for t in state["twins"]} >= set(example.linked)
    assert emulator.token not in saved.read_text()

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
        what="the persisted drivers",
    )
    daemon = check(edge.status_json(), "daemon")
    assert daemon["ok"] is False
    assert "waiting for the backend" in daemon["detail"]
    ids = container_ids(docker_client, fingerprint)

    # The backend comes back on the same address: the edge registers and
    # adopts what the persisted state started.
    back = Emulator(tokens=[emulator.token], port=emulator.port)
    back.start()
    try:
        back.load_environment(example.fixture, fingerprint)
        edge.wait_for(
            lambda: edge.log_text().count("driver pass done") >= 2,
            timeout=STARTUP_TIMEOUT,
            what="a pass with the backend back",
        )
        assert back.edge_by_fingerprint(fingerprint) is not None
        # Adopted, not recreated: the same containers, and a pass that says so.
        assert container_ids(docker_client, fingerprint) == ids
        assert f"driver pass done: {len(ids)} adopted" in edge.log_text()
        assert check(edge.status_json(), "daemon")["ok"] is True
    finally:
        back.stop()


def test_unreachable_broker_does_not_hold_drivers_back(
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """With no broker on the configured port the drivers still start; a
    broker started there later gets the session and the driver logs."""
    port = free_port()
    example = example_environment(fingerprint, robot_script=TICKING_SCRIPT)
    edge = new_edge(example, broker_port=port).start()
    warning = edge.wait_for_log(f"127.0.0.1:{port}", timeout=STARTUP_TIMEOUT)
    assert "[WARNING]" in warning
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        example.driver_names,
        what="the drivers without a broker",
    )
    assert edge.running

    late = Broker(log_connects=True, workdir=tmp_path / "late-broker")
    late.port = port
    late.start()
    try:
        assert late.port == port
        edge.wait_for(
            lambda: late.connect_count() >= 1,
            timeout=STARTUP_TIMEOUT,
            what="the edge core's CONNECT",
        )
        topic = f"cyberwave/twin/{example.robot}/driverlog"
        with Recorder(late) as recorder:
            recorder.wait_for(
                lambda seen: any(
                    m.topic == topic
                    and isinstance(m.payload, dict)
                    and m.payload.get("message") == "INFO tick"
                    for m in seen
                ),
                timeout=STARTUP_TIMEOUT,
                what="driver log lines on the late broker",
            )
        edge.wait_for(
            lambda: (edge.state() or {}).get("mqtt_connected") is True,
            timeout=STARTUP_TIMEOUT,
            what="the daemon to report the session",
        )
    finally:
        late.close()


def test_tls_broker_is_verified_and_used(
    emulator: Emulator,
    mqtt_broker_tls: Broker,
    fingerprint: str,
    edges: EdgeProcesses,
    driver_image: str,
    tmp_path: Path,
) -> None:
    """With CYBERWAVE_MQTT_USE_TLS and the broker's CA, the session connects
    over TLS and health and driver logs are published through it."""
    assert mqtt_broker_tls.ca_cert is not None
    # An unpullable camera image keeps the bootstrap health publishing, so
    # edge_health is seen however quickly the robot's driver starts.
    example = example_environment(
        fingerprint, camera_image=f"127.0.0.1:{free_port()}/cw-test/nope:1"
    )
    with Recorder(mqtt_broker_tls) as recorder:
        edge = prepare_edge(
            edges,
            tmp_path,
            emulator=emulator,
            broker=mqtt_broker_tls,
            fingerprint=fingerprint,
            example=example,
            env={
                "CYBERWAVE_MQTT_USE_TLS": "true",
                "CYBERWAVE_MQTT_TLS_CA_CERT": mqtt_broker_tls.ca_cert,
            },
        )
        edge.start()
        robot = example.robot
        recorder.wait_for(
            lambda seen: (
                {
                    f"cyberwave/twin/{robot}/edge_health",
                    f"cyberwave/twin/{robot}/driverlog",
                }
                <= {m.topic for m in seen}
            ),
            timeout=STARTUP_TIMEOUT,
            what="edge_health and driverlog over TLS",
        )
    assert "[WARNING]" not in edge.log_text()
    assert mqtt_broker_tls.connect_count() >= 2


def test_one_asset_answering_500_holds_back_only_its_drivers(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """An asset the backend cannot serve fails only the twins that need it;
    the robot's driver starts, and the camera's follows once the asset is
    served again."""
    example = example_environment(fingerprint)
    camera_asset = next(
        t["asset_uuid"]
        for t in example.fixture["twins"]
        if t["uuid"] == example.overhead
    )
    emulator.fault(rf"^/api/v1/assets/{camera_asset}$", method="GET", status=500)
    edge = new_edge(example, env={"CYBERWAVE_REST_RETRIES": "0"}).start()
    robot, overhead = container_name(example.robot), container_name(example.overhead)
    edge.wait_for(
        lambda: robot in running_names(docker_client, fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="the robot driver while the camera asset fails",
    )
    assert overhead not in running_names(docker_client, fingerprint)
    emulator.clear_faults()
    # With the camera asset known, the wrist camera is seen as the robot's
    # child, so the robot's driver is recreated with it: wait for both.
    edge.wait_for(
        lambda: {robot, overhead} <= running_names(docker_client, fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="both drivers once the camera asset is served",
    )
