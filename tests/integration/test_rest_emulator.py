"""The backend emulator itself: the contract other tests rely on.

These talk plain HTTP to the emulator (and MQTT to a real broker for the
commands it publishes), so a regression in the stand-in is caught here
rather than as a puzzling failure in a daemon test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_core.cloud.mqtt import MqttConfig, MqttSession
from tests.emulator.broker import Broker
from tests.emulator.pytest_plugin import load_example_environment
from tests.emulator.server import Emulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
CAMERA = "0d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"


@pytest.fixture
def fp() -> str:
    """A fingerprint unique to the test."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    """An HTTP client for the emulator carrying its token."""
    with httpx.Client(
        base_url=emulator.url, headers={"Authorization": f"Bearer {emulator.token}"}
    ) as client:
        yield client


@pytest.fixture
def listener(mqtt_broker: Broker) -> Iterator[MqttSession]:
    """An MQTT session on the test broker, standing in for the edge."""
    session = MqttSession(
        MqttConfig(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            use_tls=False,
            ca_cert=None,
            username="",
            password=None,
            protocol=5,
            reconnect_min_delay=0.1,
            reconnect_max_delay=0.5,
        )
    )
    session.start()
    assert session.wait_connected(10)
    yield session
    session.stop()


def subscribe_and_wait(session: MqttSession, topic: str) -> queue.Queue[object]:
    """Subscribe and return once the broker confirms it (via a self-publish)."""
    inbox: queue.Queue[object] = queue.Queue()
    ready = threading.Event()

    def handler(name: str, payload: object) -> None:
        if payload == "probe":
            ready.set()
            return
        inbox.put(payload)

    session.subscribe(topic, handler)
    for _ in range(50):
        session.publish(topic, "probe")
        if ready.wait(0.2):
            return inbox
    raise AssertionError(f"subscription to {topic} never became active")


def test_missing_and_wrong_tokens_are_401_and_recorded(emulator: Emulator) -> None:
    """No token and a wrong token both get 401; the record keeps only the verdict."""
    with httpx.Client(base_url=emulator.url) as client:
        missing = client.get("/api/v1/edges")
        wrong = client.get("/api/v1/edges", headers={"Authorization": "Bearer cw_no"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert [r.auth for r in emulator.requests()] == ["missing", "invalid"]
    assert emulator.requests()[1].headers["Authorization"] == "<redacted>"


def test_twin_put_refuses_fields_outside_the_allowed_set(
    http: httpx.Client, emulator: Emulator, fp: str
) -> None:
    """PUT /twins with asset_uuid is a 400 whose detail names the field."""
    emulator.load_example_environment(fp)
    answer = http.put(f"/api/v1/twins/{ARM}", json={"asset_uuid": "x", "name": "n"})
    assert answer.status_code == 400
    assert "asset_uuid: field not allowed" in answer.json()["detail"]
    assert emulator.twins[ARM]["name"] == "SO-101 left arm"


def test_twin_put_checks_types_and_accepts_nullable_links(
    http: httpx.Client, emulator: Emulator, fp: str
) -> None:
    """Numbers must be numbers; attach_to_twin_uuid may be null; metadata merges."""
    emulator.load_example_environment(fp)
    bad = http.put(f"/api/v1/twins/{ARM}", json={"position_x": "1"})
    assert bad.status_code == 400
    assert "position_x: expected number" in bad.json()["detail"]
    good = http.put(
        f"/api/v1/twins/{ARM}",
        json={"attach_to_twin_uuid": None, "position_x": 2, "metadata": {"k": 1}},
    )
    assert good.status_code == 200
    assert good.json()["position_x"] == 2
    assert good.json()["metadata"]["k"] == 1
    assert good.json()["metadata"]["edge_fingerprint"] == fp


def test_alert_dedupe_follows_the_backend_rules(
    http: httpx.Client, emulator: Emulator, fp: str
) -> None:
    """Without force an ACTIVE alert is reused (metadata, updated_at untouched)."""
    emulator.load_example_environment(fp)
    body = {"name": "n", "alert_type": "worker_starting", "twin_uuid": ARM}
    first = http.post("/api/v1/alerts", json={**body, "metadata": {"v": 1}})
    again = http.post("/api/v1/alerts", json={**body, "metadata": {"v": 2}})
    forced = http.post("/api/v1/alerts", json={**body, "force": True})
    assert (first.status_code, again.status_code, forced.status_code) == (201, 200, 201)
    assert again.json()["uuid"] == first.json()["uuid"]
    assert again.json()["dedupe_count"] == 2
    assert again.json()["metadata"] == {"v": 1}
    assert again.json()["updated_at"] == first.json()["updated_at"]
    assert forced.json()["uuid"] != first.json()["uuid"]

    for alert in emulator.alerts(twin_uuid=ARM):
        http.post(f"/api/v1/alerts/{alert['uuid']}/resolve")
    fresh = http.post("/api/v1/alerts", json=body)
    assert fresh.status_code == 201
    assert len(emulator.alerts(status="active")) == 1


def test_discover_needs_a_registered_edge_and_follows_linkage(
    http: httpx.Client, emulator: Emulator, fp: str
) -> None:
    """Discover is 404 before registration; after it lists twins by every link form."""
    emulator.load_example_environment(fp)
    legacy = str(uuid.uuid4())
    emulator.backend.set_twin(
        {"uuid": legacy, "name": "legacy", "metadata": {"edge_configs": {fp: {}}}}
    )
    assert (
        http.post("/api/v1/edges/discover", json={"fingerprint": fp}).status_code == 404
    )
    http.post("/api/v1/edges", json={"fingerprint": fp})
    rows = http.post("/api/v1/edges/discover", json={"fingerprint": fp}).json()["twins"]
    linked = {row["twin_uuid"] for row in rows}
    assert {ARM, CAMERA, legacy} <= linked
    assert "8c7b6a59-4d3e-4f2a-9b1c-0d9e8f7a6b5c" not in linked
    camera_row = next(row for row in rows if row["twin_uuid"] == CAMERA)
    assert camera_row["camera_config"]["camera_id"] == "overhead"


def test_restart_core_creates_alert_and_publishes_command(
    http: httpx.Client,
    emulator: Emulator,
    mqtt_broker: Broker,
    listener: MqttSession,
    fp: str,
) -> None:
    """restart-core creates an edge_core_restart alert and publishes the command."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port, topic_prefix="dev")
    edge = http.post("/api/v1/edges", json={"fingerprint": fp}).json()
    inbox = subscribe_and_wait(listener, f"devedges/{edge['uuid']}/command")

    answer = http.post(f"/api/v1/edges/{edge['uuid']}/restart-core").json()

    command = inbox.get(timeout=10)
    assert command == {
        "command": "restart_edge_core",
        "request_id": answer["request_id"],
        "alert_uuid": answer["alert_uuid"],
    }
    assert answer["topic"] == f"devedges/{edge['uuid']}/command"
    assert answer["success"] is True
    (alert,) = emulator.alerts(alert_type="edge_core_restart")
    assert alert["uuid"] == answer["alert_uuid"]
    assert alert["status"] == "active"

    second = http.post(f"/api/v1/edges/{edge['uuid']}/restart-core").json()
    assert second["pre_resolved_alert_uuids"] == [answer["alert_uuid"]]


def test_restart_core_without_broker_is_503(
    http: httpx.Client, emulator: Emulator, fp: str
) -> None:
    """Without a broker the backend cannot reach the edge and says so."""
    edge = http.post("/api/v1/edges", json={"fingerprint": fp}).json()
    answer = http.post(f"/api/v1/edges/{edge['uuid']}/restart-core")
    assert answer.status_code == 503
    assert emulator.alerts() == []


def test_published_twin_command_reaches_the_edge(
    emulator: Emulator, mqtt_broker: Broker, listener: MqttSession
) -> None:
    """publish_command on a twin goes out on {P}cyberwave/twin/{uuid}/command."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    inbox = subscribe_and_wait(listener, f"cyberwave/twin/{ARM}/command")
    sent = emulator.publish_command("sync_workflows", twin_uuid=ARM, request_id="r1")
    assert (
        inbox.get(timeout=10)
        == sent
        == {"command": "sync_workflows", "request_id": "r1"}
    )
    assert emulator.published() == [(f"cyberwave/twin/{ARM}/command", sent)]


def test_hung_request_is_answered_after_faults_are_cleared(
    http: httpx.Client, emulator: Emulator
) -> None:
    """A hang holds the answer until clear_faults, then the request completes."""
    emulator.fault(r"/edges$", hang=True)
    results: list[int] = []
    waiter = threading.Thread(
        target=lambda: results.append(http.get("/api/v1/edges", timeout=30).status_code)
    )
    waiter.start()
    waiter.join(0.5)
    assert results == []
    emulator.clear_faults()
    waiter.join(10)
    assert results == [200]


def test_control_api_drives_faults_tokens_and_state(
    emulator: Emulator, fp: str
) -> None:
    """Over /_emulator/ another process loads state, sets faults, rotates tokens."""
    token = emulator.token
    with httpx.Client(base_url=emulator.url) as client:
        auth = {"Authorization": f"Bearer {token}"}
        loaded = client.post("/_emulator/environment", json={"fingerprint": fp})
        assert loaded.status_code == 200
        assert (
            client.get("/_emulator/twins").json()[ARM]["metadata"]["edge_fingerprint"]
            == fp
        )

        fault = {"path_regex": "/edges$", "method": "GET", "status": 500, "times": 1}
        assert client.post("/_emulator/faults", json=fault).status_code == 200
        assert client.get("/api/v1/edges", headers=auth).status_code == 500
        assert client.get("/api/v1/edges", headers=auth).status_code == 200

        recorded = client.get(
            "/_emulator/requests", params={"path_regex": "/edges$"}
        ).json()
        assert [item["status"] for item in recorded] == [500, 200]
        assert client.delete("/_emulator/requests").status_code == 200
        assert client.get("/_emulator/requests").json() == []

        client.put("/_emulator/tokens", json={"tokens": ["cw_new"]})
        assert client.get("/api/v1/edges", headers=auth).status_code == 401
        new = {"Authorization": "Bearer cw_new"}
        assert client.get("/api/v1/edges", headers=new).status_code == 200

        edited = client.put(f"/_emulator/twins/{ARM}", json={"metadata": {"x": 1}})
        assert edited.json()["metadata"] == {"x": 1}
        assert client.get("/_emulator/nothing").status_code == 404
        assert client.post("/_emulator/faults", json={"status": 500}).status_code == 400


def test_example_environment_helper_substitutes_the_fingerprint(fp: str) -> None:
    """load_example_environment puts the fingerprint where <FP> was."""
    data = load_example_environment(fp)
    assert "<FP>" not in json.dumps(data)
    assert data["twins"][0]["metadata"]["edge_fingerprint"] == fp


def run_emulator_process(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m tests.emulator`` and return it with its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    prefix = "emulator listening on "
    if not line.startswith(prefix):
        process.kill()
        raise AssertionError(f"unexpected first line: {line!r}")
    return process, line[len(prefix) :]


def test_runs_as_a_process_and_stops_on_sigterm(fp: str, tmp_path: Path) -> None:
    """The module entry point prints its URL, serves the fixture, exits on SIGTERM."""
    fixture = tmp_path / "env.json"
    data: dict[str, Any] = json.loads(
        (ROOT / "tests/emulator/data/example-environment.json").read_text()
    )
    fixture.write_text(json.dumps(data))
    process, url = run_emulator_process(
        [
            "--port",
            "0",
            "--fixture",
            str(fixture),
            "--fingerprint",
            fp,
            "--token",
            "cw_p",
        ]
    )
    try:
        assert url.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer cw_p"}
        env = data["environment"]["uuid"]
        twins = httpx.get(f"{url}/api/v1/environments/{env}/twins", headers=headers)
        assert twins.status_code == 200
        assert twins.json()[0]["metadata"]["edge_fingerprint"] == fp
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
