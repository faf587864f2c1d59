"""A Zenoh router whose container cannot start holds back no driver.

The router image is the test busybox image, which has no entrypoint: the
engine cannot run the router's arguments and its start fails. The drivers
start all the same, within the pass's short wait for the router, and
``status`` shows the router row failed with the engine's reason.
"""

from __future__ import annotations

import docker
import pytest

from tests.emulator.server import Emulator
from tests.integration.test_loop_zenoh import _router_env, _router_failed, _start
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, check
from tests.support.loop import IDLE_SCRIPT, driver_environment

pytestmark = pytest.mark.integration


def test_a_router_that_cannot_start_holds_back_no_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    test_image: str,
    docker_client: docker.DockerClient,
) -> None:
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    # Returns once the daemon saw the driver running.
    edge = _start(new_edge, environment, env=_router_env(test_image))

    report = edge.wait_for(
        lambda: _router_failed(edge.status_json()),
        timeout=STARTUP_TIMEOUT,
        what="status to show the router failed",
    )
    row = check(report, "zenoh router")
    assert "does not run" in row["detail"], row
    assert "executable file not found" in row["detail"], row
    assert edge.running
    assert edge.stop(timeout=10) == 0
