"""The backend fails under a running edge core, or is away when it boots (7b 13).

A backend answering 500, then one that accepts connections and never
answers, must never reach the drivers: they keep their containers, the
loop keeps supervising and reporting, SIGTERM is answered at once, and
the edge core catches up when the backend is healthy again. At boot, a
backend that is away leaves the drivers of the saved desired state
running, and its return causes a registration, not a recreation.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import running_names, wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    ExampleEnvironment,
    check,
    container_name,
    example_environment,
    keepalives,
    link_new_twin,
)
from tests.support.faults import RunningWatch, container_facts

pytestmark = pytest.mark.integration

SHUTDOWN_SECONDS = 10.0
"""protocol.md 7b item 15: SIGTERM stops the edge core within 10 s."""

EVERYTHING = r"^/api/"


def test_backend_500_then_hanging_then_healthy_never_touches_the_drivers(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Every API call answered 500, then every call hung: the drivers keep
    their containers, status shows the backend unreachable, the loop still
    notices and reports a broker cut meanwhile, and after recovery a twin
    linked during the outage gets its driver."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    _wait_settled(edge, docker_client, fingerprint, example)
    before = container_facts(docker_client, fingerprint)

    with RunningWatch(docker_client, fingerprint, example.driver_names) as watch:
        # Phase 1: the backend answers 500 to everything.
        errors = emulator.fault(EVERYTHING, status=500)
        edge.wait_for(
            lambda: (edge.state() or {}).get("offline_since") is not None,
            timeout=STARTUP_TIMEOUT,
            what="the daemon to notice the backend is away",
        )
        added = link_new_twin(
            emulator, example, fingerprint, name="Gripper linked later"
        )
        offline = check(edge.status_json(), "backend")

        # Phase 2: it accepts connections and never answers.
        hang_from = len(emulator.requests())
        emulator.fault(EVERYTHING, hang=True)
        emulator.remove_fault(errors)
        edge.wait_for(
            lambda: _hung(emulator, hang_from) >= 2,
            timeout=STARTUP_TIMEOUT,
            what="two calls hanging",
        )
        # The loop is not held by the hanging calls: it sees the broker go
        # and come back, and writes both into its state file.
        mqtt_broker.stop()
        _wait_session(edge, connected=False)
        mqtt_broker.start()
        _wait_session(edge, connected=True)
        hanging = check(edge.status_json(), "backend")
        assert running_names(docker_client, fingerprint) == example.driver_names

        # Phase 3: healthy again; the hung calls are answered.
        emulator.clear_faults()
        wait_for_drivers(
            edge,
            docker_client,
            fingerprint,
            {*example.driver_names, container_name(added)},
            what="the driver of the twin linked during the outage",
        )
        edge.wait_for(
            lambda: (edge.state() or {}).get("offline_since") is None,
            timeout=STARTUP_TIMEOUT,
            what="the daemon to see the backend again",
        )
        report = edge.status_json()

    assert watch.samples > 0
    assert watch.problems == []
    after = container_facts(docker_client, fingerprint)
    for name in example.driver_names:
        assert after[name] == before[name], name

    assert offline["ok"] is False
    assert "unreachable since" in offline["detail"]
    assert "HTTP 500" in offline["detail"]
    assert hanging["ok"] is False
    assert "unreachable since" in hanging["detail"]
    assert "backend" not in {item["name"] for item in report["checks"]}
    assert check(report, "daemon")["ok"] is True
    assert report["healthy"] is True, report

    saved = json.loads((edge.config_dir / "desired-state.json").read_text())
    assert added in {twin["uuid"] for twin in saved["twins"]}
    assert "Traceback" not in edge.log_text()
    assert edge.stop(timeout=SHUTDOWN_SECONDS) == 0


def test_sigterm_while_every_backend_call_hangs_exits_and_leaves_drivers(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With downloads, keepalives and alerts all hanging after boot (default
    REST timeout), SIGTERM ends the edge core with exit code 0 within the
    shutdown time, and the driver containers keep running."""
    example = example_environment(fingerprint)
    edge = new_edge(example, env={"CYBERWAVE_REST_TIMEOUT_SECONDS": None}).start()
    _wait_settled(edge, docker_client, fingerprint, example)
    before = container_facts(docker_client, fingerprint)

    hang_from = len(emulator.requests())
    emulator.fault(EVERYTHING, hang=True)
    edge.wait_for(
        lambda: (
            {r.path for r in emulator.requests()[hang_from:]}
            >= {
                f"/api/v1/environments/{example.environment_uuid}/twins",
                "/api/v1/edges/discover",
            }
        ),
        timeout=STARTUP_TIMEOUT,
        what="a download and a keepalive hanging",
    )

    assert edge.stop(signal.SIGTERM, timeout=SHUTDOWN_SECONDS) == 0
    assert "Traceback" not in edge.log_text()
    assert container_facts(docker_client, fingerprint) == before
    assert (edge.state() or {}).get("phase") == "stopped"


@pytest.mark.parametrize(
    "away",
    [pytest.param({"status": 503}, id="503"), pytest.param({"drop": True}, id="drop")],
)
def test_boot_with_the_backend_away_keeps_the_saved_drivers_and_recreates_nothing(
    away: dict[str, Any],
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A restart of the edge core while the backend answers 503 (or drops
    every connection): the running drivers of desired-state.json are
    adopted, status says the daemon waits for the backend and runs from the
    saved state, and once the backend is back the edge registers and no
    container is recreated."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    _wait_settled(edge, docker_client, fingerprint, example)
    assert edge.stop(timeout=SHUTDOWN_SECONDS) == 0
    before = container_facts(docker_client, fingerprint)
    saved_at = _saved_at(edge)

    emulator.fault(EVERYTHING, **away)
    emulator.clear_requests()
    with RunningWatch(docker_client, fingerprint, example.driver_names) as watch:
        edge.start()
        edge.wait_for_log(
            "starting drivers from the desired state", timeout=STARTUP_TIMEOUT
        )
        report = edge.wait_for(
            lambda: _adopted_all(edge, example),
            timeout=STARTUP_TIMEOUT,
            what="the saved drivers to be adopted",
        )
        registered = len(emulator.requests("POST", r"^/api/v1/edges$"))

        emulator.clear_faults()
        edge.wait_for(
            lambda: (
                emulator.requests("POST", r"^/api/v1/edges$")
                and (edge.state() or {}).get("phase") == "running"
                and (edge.state() or {}).get("offline_since") is None
            ),
            timeout=STARTUP_TIMEOUT,
            what="the registration once the backend is back",
        )
        edge.wait_for(
            lambda: _saved_at(edge) > saved_at,
            timeout=STARTUP_TIMEOUT,
            what="the first download after the outage saved",
        )
        # A few more cycles, in which a needless recreation would happen.
        seen = keepalives(emulator)
        edge.wait_for(
            lambda: keepalives(emulator) >= seen + 3,
            timeout=STARTUP_TIMEOUT,
            what="three more keepalives",
        )
        back = edge.status_json()

    daemon = check(report, "daemon")
    assert daemon["ok"] is False
    assert "waiting for the backend" in daemon["detail"]
    backend = check(report, "backend")
    assert "running from desired-state.json" in backend["detail"]
    assert registered == 0, "the edge registered while the backend was away"

    assert watch.samples > 0
    assert watch.problems == []
    assert container_facts(docker_client, fingerprint) == before
    log = edge.log_text()
    assert "created container" not in log
    assert "removed container" not in log
    assert check(back, "daemon")["ok"] is True
    assert back["healthy"] is True, back
    assert edge.stop(timeout=SHUTDOWN_SECONDS) == 0


# -- helpers -------------------------------------------------------------------


def _wait_settled(
    edge: EdgeProcess,
    client: docker.DockerClient,
    fingerprint: str,
    example: ExampleEnvironment,
) -> None:
    """Wait until the daemon itself saw every driver running."""
    edge.wait_for_log("bootstrap health publisher stopped", timeout=STARTUP_TIMEOUT)
    wait_for_drivers(
        edge, client, fingerprint, example.driver_names, what="the drivers"
    )


def _wait_session(edge: EdgeProcess, *, connected: bool) -> None:
    edge.wait_for(
        lambda: (edge.state() or {}).get("mqtt_connected") is connected,
        timeout=STARTUP_TIMEOUT,
        what=f"the daemon to report mqtt_connected={connected}",
    )


def _hung(emulator: Emulator, since: int) -> int:
    """How many API calls after the first ``since`` are still unanswered."""
    return sum(1 for r in emulator.requests()[since:] if r.status is None)


def _saved_at(edge: EdgeProcess) -> float:
    """When the environment in desired-state.json was downloaded."""
    saved = json.loads((edge.config_dir / "desired-state.json").read_text())
    return float(saved["fetched_at"])


def _adopted_all(edge: EdgeProcess, example: ExampleEnvironment) -> dict[str, Any]:
    """The status report once the daemon adopted every saved driver."""
    state = edge.state() or {}
    outcomes = {d["container_name"]: d["outcome"] for d in state.get("drivers", ())}
    if {outcomes.get(name) for name in example.driver_names} != {"adopted"}:
        return {}
    return edge.status_json()


def test_boot_with_a_hanging_backend_starts_the_saved_drivers_without_waiting_for_it(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The backend accepts every connection and never answers when the edge
    core boots, and one saved driver's container is gone: that driver is
    started again from desired-state.json after one runtime timeout, not
    after the boot calls (30 s an attempt, retried) give up."""
    example = example_environment(fingerprint)
    edge = new_edge(example, env={"CYBERWAVE_REST_TIMEOUT_SECONDS": "2"}).start()
    _wait_settled(edge, docker_client, fingerprint, example)
    assert edge.stop(timeout=SHUTDOWN_SECONDS) == 0
    gone, kept = sorted(example.driver_names)
    docker_client.containers.get(gone).remove(force=True)

    emulator.fault(EVERYTHING, hang=True)
    emulator.clear_requests()
    edge.start()
    edge.wait_for(
        lambda: gone in running_names(docker_client, fingerprint),
        timeout=25.0,
        what="the removed driver started from the saved state",
    )

    answered = [r for r in emulator.requests() if r.status is not None]
    assert answered == [], "the backend answered while it was meant to hang"
    assert "has not answered for 2 s" in edge.log_text()
    assert kept in running_names(docker_client, fingerprint)

    emulator.clear_faults()
    edge.wait_for(
        lambda: (edge.state() or {}).get("phase") == "running",
        timeout=STARTUP_TIMEOUT,
        what="the registration once the backend answers",
    )
    assert edge.stop(timeout=SHUTDOWN_SECONDS) == 0
