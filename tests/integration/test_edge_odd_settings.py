"""CYBERWAVE_* tuning values no one should set, on a whole edge core.

Negative, huge, non-numeric and empty values each give one warning (an
empty one means "not set": no warning) and the default; the edge core
boots, runs its drivers and ``status`` lists the warnings.
"""

from __future__ import annotations

import docker
import pytest

from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    check,
    example_environment,
)

pytestmark = pytest.mark.integration

HUGE = "1e300"
ODD = {
    "CYBERWAVE_MQTT_CONNECT_TIMEOUT": HUGE,
    "CYBERWAVE_REST_TIMEOUT_SECONDS": HUGE,
    "CYBERWAVE_EDGE_HEALTH_PUBLISH_INTERVAL_SECONDS": HUGE,
    "CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS": HUGE,
    "CYBERWAVE_DRIVER_CREATE_TIMEOUT_SECONDS": HUGE,
    "CYBERWAVE_DOCKER_PULL_TIMEOUT_SECONDS": HUGE,
    "CYBERWAVE_DRIVER_LOG_BUFFER_LINES": "9" * 30,
    "CYBERWAVE_DRIVER_LOG_COLD_START_TAIL": "9" * 30,
    "CYBERWAVE_MQTT_MAX_PAYLOAD_BYTES": "9" * 30,
    "CYBERWAVE_REST_RETRIES": "-1",
    "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM": "lots",
    "CYBERWAVE_BACKOFF_MAX_SECONDS": "",
}


def test_odd_tuning_values_warn_once_each_and_the_drivers_run(
    new_edge: EdgeFactory,
    fingerprint: str,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    example = example_environment(fingerprint)
    edge = new_edge(example, env=ODD).start()

    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    edge.wait_for_log("driver pass done", timeout=STARTUP_TIMEOUT)
    log = edge.log_text()
    assert "Traceback" not in log, log
    warned = [name for name, value in ODD.items() if value]
    for name in warned:
        assert sum(f'{name}="' in line for line in edge.log_lines()) == 1, name
    assert 'CYBERWAVE_BACKOFF_MAX_SECONDS="' not in log
    report = edge.status_json()
    assert sorted(w.split("=")[0] for w in report["warnings"]) == sorted(warned)
    assert check(report, "daemon")["ok"] is True
    assert edge.stop(timeout=15) == 0
