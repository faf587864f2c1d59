"""Every alert call on the wire, held against protocol.md 1.4 and 1.8.

The whole edge core runs as a process against the backend emulator,
Mosquitto and the Docker engine, with ``CYBERWAVE_WORKSPACE_ID`` set. A
driver that runs, one whose image does not exist, one that keeps exiting,
one removed by hand, and a remote restart make it raise, update and
resolve every alert type the driver lifecycle knows; each request the
emulator recorded is then checked for its method, path, query, headers
and JSON fields.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import (
    IDLE_SCRIPT,
    driver_environment,
    driver_twin,
    is_running,
    prepare_loop_edge,
    wait_edge_uuid,
)

pytestmark = pytest.mark.integration

CREATE_KEYS = {
    "name",
    "description",
    "alert_type",
    "severity",
    "source_type",
    "category",
    "twin_uuid",
    "environment_uuid",
    "workspace_uuid",
    "metadata",
    "force",
}
UPDATE_KEYS = {
    "name",
    "description",
    "media",
    "alert_type",
    "severity",
    "status",
    "category",
    "metadata",
}
STARTING_KEYS = {
    "phase",
    "image",
    "container_name",
    "service_name",
    "started_at",
    "overall_progress_percent",
    "stage_progress_percent",
}
ALERT = re.compile(r"^/api/v1/alerts/([^/]+)$")
RESOLVE = re.compile(r"^/api/v1/alerts/([^/]+)/resolve$")


def check_create(body: dict[str, Any], workspace: str, env_uuid: str) -> None:
    assert set(body) <= CREATE_KEYS, sorted(set(body) - CREATE_KEYS)
    assert body["source_type"] == "edge" and body["category"] == "technical"
    assert body["severity"] in ("info", "warning", "error", "critical")
    assert body["workspace_uuid"] == workspace
    assert body["environment_uuid"] == env_uuid
    assert isinstance(body["name"], str) and isinstance(body["description"], str)
    kind = body["alert_type"]
    if kind == "driver_starting":
        assert body["force"] is True
        assert (body["name"], body["severity"]) == ("Driver starting", "info")
        metadata = body["metadata"]
        assert set(metadata) == STARTING_KEYS
        assert metadata["phase"] == "pull_started"
        assert metadata["overall_progress_percent"] == 0
        assert metadata["stage_progress_percent"] == 0
        assert isinstance(metadata["started_at"], float)
    else:
        assert "force" not in body
    expected = {
        "driver_restart_loop": ("Driver restart loop detected", "error"),
        "driver_health": ("Driver container stopped", "warning"),
    }
    if kind in expected:
        assert (body["name"], body["severity"]) == expected[kind]
    if kind == "driver_start_failure":
        assert body["severity"] == "error"


def test_every_alert_call_keeps_to_the_contract(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Creates, updates, lists, reads and resolves of every alert type the
    driver lifecycle raises, and the edge_core_restart card, each with the
    method, path, query, headers and fields protocol.md gives them."""
    workspace = next(iter(emulator.backend.workspaces))
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    environment = driver_environment(new_edge.fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    env_uuid = environment.environment_uuid
    crashing = driver_twin(
        env_uuid, environment.asset_uuid, new_edge.fingerprint, "exit 3"
    )
    missing_asset = str(uuid.uuid4())
    unpullable = "127.0.0.1:9/nope/none:0.0.1"
    bad = driver_twin(env_uuid, missing_asset, new_edge.fingerprint, IDLE_SCRIPT)
    bad["metadata"] = {"edge_fingerprint": new_edge.fingerprint}
    environment.fixture["twins"] += [crashing, bad]
    environment.fixture["assets"].append(
        {
            "uuid": missing_asset,
            "name": "Missing image",
            "metadata": {"drivers": {"default": {"docker_image": unpullable}}},
        }
    )
    edge = prepare_loop_edge(
        new_edge,
        environment,
        env={
            "CYBERWAVE_WORKSPACE_ID": workspace,
            "CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD": "2",
        },
    ).start()
    edge_uuid = wait_edge_uuid(edge, emulator, new_edge.fingerprint)
    edge.wait_for_log(
        f"listening for commands on edges/{edge_uuid}", timeout=STARTUP_TIMEOUT
    )

    def raised(*kinds: str) -> bool:
        found = {a["alert_type"] for a in emulator.alerts()}
        return found >= set(kinds)

    edge.wait_for(
        lambda: raised("driver_start_failure", "driver_restart_loop"),
        timeout=STARTUP_TIMEOUT,
        what="a start failure and a restart loop",
    )
    good = container_name(environment.twin_uuids[0])
    edge.wait_for(
        lambda: is_running(docker_client, good), timeout=STARTUP_TIMEOUT, what=good
    )
    docker_client.containers.get(good).remove(force=True)
    edge.wait_for(
        lambda: raised("driver_health"), timeout=STARTUP_TIMEOUT, what="health"
    )
    answer = emulator.restart_core(edge_uuid).body
    card = answer["alert_uuid"]
    edge.wait_for(
        lambda: any(
            a["uuid"] == card and a["status"] == "resolved" for a in emulator.alerts()
        ),
        timeout=STARTUP_TIMEOUT,
        what="the restart card resolved",
    )

    seen: set[str] = set()
    for request in emulator.requests():
        path = request.path
        if not path.startswith("/api/v1/alerts"):
            continue
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert request.auth == "valid", (request.method, path)
        assert request.query.get("workspace_uuid") == [workspace], path
        if request.body is not None:
            assert headers.get("content-type") == "application/json", path
        if request.method == "POST" and path == "/api/v1/alerts":
            check_create(request.body, workspace, env_uuid)
            seen.add(f"create {request.body['alert_type']}")
        elif request.method == "GET" and path == "/api/v1/alerts":
            assert set(request.query) == {
                "twin_uuid",
                "limit",
                "status",
                "workspace_uuid",
            }
            assert request.query["limit"] == ["100"]
            assert request.query["status"] == ["active"]
            seen.add("list")
        elif request.method == "GET" and ALERT.match(path):
            assert ALERT.match(path)[1] == card  # type: ignore[index]
            seen.add("read")
        elif request.method == "PUT" and ALERT.match(path):
            assert request.body and set(request.body) <= UPDATE_KEYS, request.body
            seen.add("update")
        elif request.method == "POST" and RESOLVE.match(path):
            assert request.body is None and "content-type" not in headers
            seen.add("resolve")
        else:
            raise AssertionError(f"unexpected alert call {request.method} {path}")
    assert seen >= {
        "create driver_starting",
        "create driver_start_failure",
        "create driver_restart_loop",
        "create driver_health",
        "list",
        "read",
        "update",
        "resolve",
    }, seen

    restart_puts = [
        r.body["metadata"]
        for r in emulator.requests("PUT", rf"^/api/v1/alerts/{card}$")
    ]
    assert [m["phase"] for m in restart_puts] == ["in_progress", "completed"]
    for metadata in restart_puts:
        assert metadata["request_id"] == answer["request_id"]
        for key in ("in_progress_at", "completed_at"):
            if key in metadata:
                assert metadata[key].endswith("+00:00"), metadata
