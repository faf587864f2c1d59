"""CloudClient against the backend emulator: every endpoint, retries, auth.

The emulator is a real HTTP server on loopback; faults are injected there,
so timeouts, dropped connections and 5xx answers travel the real network
stack.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    NotFoundError,
    PermanentError,
)
from tests.emulator.server import Emulator

pytestmark = pytest.mark.integration

ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
CAMERA_ASSET = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def fp() -> str:
    """A fingerprint unique to the test."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sleeps() -> list[float]:
    """Every backoff delay the client asked for, in order."""
    return []


@pytest.fixture
def make_client(
    emulator: Emulator, sleeps: list[float]
) -> Iterator[Callable[..., CloudClient]]:
    """Build clients for the emulator; closed at teardown."""
    made: list[CloudClient] = []

    def build(**options: object) -> CloudClient:
        settings: dict[str, object] = {
            "base_url": emulator.url + "/",
            "token": lambda: emulator.token,
            "version": "0.1.0",
            "timeout": 5.0,
            "retries": 2,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "sleep": sleeps.append,
        }
        settings.update(options)
        client = CloudClient(**settings)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., CloudClient]) -> CloudClient:
    """A client with the emulator's token and fast backoff."""
    return make_client()


def test_check_token_succeeds_with_bearer_header(
    client: CloudClient, emulator: Emulator
) -> None:
    """R1 sends Authorization: Bearer <token> and succeeds for a valid token."""
    client.check_token()
    (request,) = emulator.requests("GET", r"^/api/v1/users/workspaces$")
    assert request.auth == "valid"
    assert request.headers["User-Agent"] == "cyberwave-edge-core/0.1.0"


def test_register_edge_is_an_upsert(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """R2 creates the edge (201) and returns the same one again (200)."""
    first = client.register_edge(fp)
    again = client.register_edge(fp)
    assert first["uuid"] == again["uuid"]
    assert first["fingerprint"] == fp
    assert [r.status for r in emulator.requests("POST", r"/edges$")] == [201, 200]
    assert emulator.requests("POST", r"/edges$")[0].body == {"fingerprint": fp}


def test_list_and_get_edges(client: CloudClient, fp: str) -> None:
    """R3 lists the registered edge and R4 returns it by uuid."""
    edge = client.register_edge(fp)
    assert [e["fingerprint"] for e in client.list_edges()] == [fp]
    assert client.get_edge(edge["uuid"])["fingerprint"] == fp


def test_unknown_edge_is_not_found(client: CloudClient) -> None:
    """R4 for a uuid the backend does not know raises NotFoundError."""
    with pytest.raises(NotFoundError, match="GET /api/v1/edges/nope: HTTP 404"):
        client.get_edge("nope")


def test_discover_leaves_out_empty_strings_and_lists_linked_twins(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """R5 omits empty hostname, sends host_facts and gets the linked twins."""
    emulator.load_example_environment(fp)
    edge = client.register_edge(fp)
    answer = client.discover(
        fingerprint=fp, hostname="", platform="Linux-x86_64", host_facts={"cpus": 4}
    )
    (request,) = emulator.requests("POST", r"/edges/discover$")
    assert request.body == {
        "fingerprint": fp,
        "platform": "Linux-x86_64",
        "host_facts": {"cpus": 4},
    }
    assert answer["edge_uuid"] == edge["uuid"]
    linked = {row["twin_uuid"] for row in answer["twins"]}
    assert ARM in linked
    assert "8c7b6a59-4d3e-4f2a-9b1c-0d9e8f7a6b5c" not in linked
    assert emulator.edges[edge["uuid"]]["last_seen_at"] is not None


def test_environment_twins_and_assets(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """R6 lists an environment's twins, R7 gets one and R9 gets an asset."""
    emulator.load_example_environment(fp)
    twins = client.environment_twins(ENV)
    assert len(twins) == 5
    assert client.get_twin(ARM)["metadata"]["edge_fingerprint"] == fp
    assert client.get_asset(CAMERA_ASSET)["registry_id"] == "cyberwave/standard-cam"


def test_unknown_environment_is_not_found(client: CloudClient) -> None:
    """R6 for an environment the backend does not know raises NotFoundError."""
    with pytest.raises(NotFoundError):
        client.environment_twins(str(uuid.uuid4()))


def test_update_twin_sends_only_allowed_fields(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """R8 drops asset_uuid and other fields outside 1.7; metadata is merged."""
    emulator.load_example_environment(fp)
    client.update_twin(
        ARM,
        {"metadata": {"note": "hi"}, "asset_uuid": "x", "position_x": 1.0, "uuid": ARM},
    )
    (request,) = emulator.requests("PUT", rf"/twins/{ARM}$")
    assert request.body == {"metadata": {"note": "hi"}, "position_x": 1.0}
    stored = emulator.twins[ARM]
    assert stored["metadata"]["note"] == "hi"
    assert stored["metadata"]["edge_fingerprint"] == fp
    assert stored["asset_uuid"] == "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"


def test_alert_lifecycle(client: CloudClient, emulator: Emulator, fp: str) -> None:
    """R10–R14: create, dedupe, list, get, update and resolve an alert."""
    emulator.load_example_environment(fp)
    payload = {
        "name": "Driver starting",
        "description": "starting",
        "alert_type": "driver_starting",
        "severity": "info",
        "source_type": "edge",
        "category": "technical",
        "twin_uuid": ARM,
        "environment_uuid": ENV,
        "metadata": {"phase": "pull_started"},
    }
    created = client.create_alert(payload)
    deduped = client.create_alert({**payload, "metadata": {"phase": "other"}})
    assert deduped["uuid"] == created["uuid"]
    assert deduped["dedupe_count"] == 2
    assert deduped["metadata"] == {"phase": "pull_started"}

    active = client.list_active_alerts(ARM)
    assert [alert["uuid"] for alert in active] == [created["uuid"]]
    (listing,) = emulator.requests("GET", r"/alerts$")
    assert listing.query == {"twin_uuid": [ARM], "limit": ["100"], "status": ["active"]}

    client.update_alert(created["uuid"], {"metadata": {"phase": "downloading"}})
    assert client.get_alert(created["uuid"])["metadata"] == {"phase": "downloading"}
    assert client.resolve_alert(created["uuid"])["status"] == "resolved"
    assert client.list_active_alerts(ARM) == []


@pytest.mark.parametrize("shape", ["bare", "results", "items"])
def test_alert_list_shapes_are_all_accepted(
    client: CloudClient, emulator: Emulator, fp: str, shape: str
) -> None:
    """R11 works whether the backend answers a bare list or a page."""
    emulator.load_example_environment(fp)
    emulator.configure(alert_list_shape=shape)
    created = client.create_alert({"name": "x", "alert_type": "t", "twin_uuid": ARM})
    assert [a["uuid"] for a in client.list_active_alerts(ARM)] == [created["uuid"]]


def test_rejected_update_names_call_status_and_detail(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """A 400 from the backend is a PermanentError carrying its detail."""
    emulator.load_example_environment(fp)
    created = client.create_alert({"name": "x", "alert_type": "t", "twin_uuid": ARM})
    with pytest.raises(PermanentError) as caught:
        client.update_alert(created["uuid"], {"severity": "loud"})
    message = str(caught.value)
    assert f"PUT /api/v1/alerts/{created['uuid']}" in message
    assert "HTTP 400" in message
    assert "severity: must be one of" in message


def test_get_retries_on_500_with_backoff_then_succeeds(
    client: CloudClient, emulator: Emulator, sleeps: list[float]
) -> None:
    """Two 500 answers are retried with growing delays; the third attempt wins."""
    emulator.fault(r"^/api/v1/edges$", method="GET", status=500, times=2)
    assert client.list_edges() == []
    assert [r.status for r in emulator.requests("GET", r"/edges$")] == [500, 500, 200]
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01
    assert 0.01 <= sleeps[1] <= 0.02


def test_retries_give_up_with_backend_unavailable(
    client: CloudClient, emulator: Emulator, sleeps: list[float]
) -> None:
    """After the allowed retries a 503 surfaces as BackendUnavailable."""
    emulator.fault(r"/users/workspaces", status=503)
    with pytest.raises(BackendUnavailable, match=r"HTTP 503 .*will retry"):
        client.check_token()
    assert len(emulator.requests("GET", r"/users/workspaces")) == 3
    assert len(sleeps) == 2


def test_edge_upsert_and_discover_are_retried(
    client: CloudClient, emulator: Emulator, fp: str
) -> None:
    """POST /edges and POST /edges/discover count as idempotent and are retried."""
    emulator.fault(r"^/api/v1/edges$", method="POST", status=502, times=1)
    emulator.fault(r"/edges/discover$", status=502, times=1)
    client.register_edge(fp)
    client.discover(fingerprint=fp, hostname="h", platform="p", host_facts={})
    assert [r.status for r in emulator.requests("POST", r"/edges")] == [
        502,
        201,
        502,
        200,
    ]


def test_alert_creation_is_never_retried(
    client: CloudClient, emulator: Emulator, sleeps: list[float], fp: str
) -> None:
    """POST /alerts fails at once on a 500: a repeat could raise it twice."""
    emulator.load_example_environment(fp)
    emulator.fault(r"^/api/v1/alerts$", method="POST", status=500)
    with pytest.raises(BackendUnavailable):
        client.create_alert({"name": "x", "alert_type": "t", "twin_uuid": ARM})
    assert len(emulator.requests("POST", r"/alerts$")) == 1
    assert sleeps == []


def test_wrong_token_is_auth_error_and_not_retried(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """A 401 raises AuthError after one request, without retries."""
    client = make_client(token=lambda: "cw_wrong")
    with pytest.raises(AuthError, match="HTTP 401"):
        client.check_token()
    (request,) = emulator.requests()
    assert request.auth == "invalid"


def test_rotated_token_is_reread_once_after_401(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """After a 401 the client re-reads the token and repeats with the new one."""
    old, new = emulator.token, "cw_rotated_" + uuid.uuid4().hex
    emulator.set_tokens([new])
    reads: list[str] = []

    def reload() -> str:
        reads.append(new)
        return new

    client = make_client(token=lambda: old, reload_token=reload)
    client.check_token()
    assert [r.auth for r in emulator.requests()] == ["invalid", "valid"]
    assert reads == [new]


def test_unchanged_token_after_401_is_auth_error(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """If the re-read token is the same, the 401 stands and nothing is repeated."""
    client = make_client(token=lambda: "cw_old", reload_token=lambda: "cw_old")
    with pytest.raises(AuthError):
        client.list_edges()
    assert len(emulator.requests()) == 1


def test_hang_times_out_as_backend_unavailable(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """A backend that never answers makes each attempt time out; then it raises."""
    emulator.fault(r"/edges$", hang=True)
    client = make_client(timeout=0.3, retries=1)
    with pytest.raises(BackendUnavailable, match="timed out"):
        client.list_edges()
    assert len(emulator.requests("GET", r"/edges$")) == 2


def test_dropped_connection_is_backend_unavailable(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """A connection closed without an answer is temporary and retried."""
    emulator.fault(r"/edges$", drop=True, times=1)
    assert make_client().list_edges() == []
    assert len(emulator.requests("GET", r"/edges$")) == 2


def test_stopped_backend_is_backend_unavailable(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """With nothing listening, calls fail as BackendUnavailable, not a crash."""
    client = make_client(retries=0)
    client.check_token()
    emulator.stop()
    with pytest.raises(BackendUnavailable, match="could not reach the backend"):
        client.check_token()


def test_set_timeout_applies_to_later_calls(
    make_client: Callable[..., CloudClient], emulator: Emulator
) -> None:
    """set_timeout changes the per-attempt timeout of the next calls."""
    client = make_client(timeout=None, retries=0)
    emulator.fault(r"/edges$", delay=1.0)
    client.set_timeout(0.2)
    with pytest.raises(BackendUnavailable, match="timed out"):
        client.list_edges()


def test_workspace_id_is_sent_on_every_resource_call(
    make_client: Callable[..., CloudClient], emulator: Emulator, fp: str
) -> None:
    """With a workspace id, every call carries ?workspace_uuid and alerts carry it."""
    emulator.load_example_environment(fp)
    emulator.configure(require_workspace=True)
    client = make_client(workspace_id="ws-1")
    client.check_token()
    client.register_edge(fp)
    client.environment_twins(ENV)
    alert = client.create_alert({"name": "x", "alert_type": "t", "twin_uuid": ARM})
    client.list_active_alerts(ARM)
    recorded = emulator.requests()
    assert all(r.param("workspace_uuid") == "ws-1" for r in recorded)
    assert all(r.status in (200, 201) for r in recorded)
    assert alert["workspace_uuid"] == "ws-1"


def test_missing_workspace_is_permanent_when_required(
    client: CloudClient, emulator: Emulator
) -> None:
    """Without a workspace id a scoped backend answers 400 workspace_required."""
    emulator.configure(require_workspace=True)
    with pytest.raises(PermanentError, match="workspace_required"):
        client.list_edges()


def test_one_debug_line_per_request_and_no_token(
    client: CloudClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs one DEBUG line (method, path, status); never the token."""
    caplog.set_level(logging.DEBUG, logger="edge_core.cloud.rest")
    client.list_edges()
    with pytest.raises(NotFoundError):
        client.get_edge("missing")
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_core.cloud.rest"]
    assert len(lines) == 2
    assert lines[0].startswith("GET /api/v1/edges -> 200 in ")
    assert lines[1].startswith("GET /api/v1/edges/missing -> 404 in ")
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    assert emulator.token not in caplog.text


def test_each_attempt_logs_its_own_outcome(
    client: CloudClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Retried attempts each log one line; a dropped connection names the failure."""
    caplog.set_level(logging.DEBUG, logger="edge_core.cloud.rest")
    emulator.fault(r"/edges$", status=500, times=1)
    emulator.fault(r"/edges$", drop=True, times=1)
    client.list_edges()
    outcomes = [
        r.getMessage().split(" -> ")[1].split(" in ")[0]
        for r in caplog.records
        if r.name == "edge_core.cloud.rest"
    ]
    assert outcomes == ["500", "RemoteProtocolError", "200"]
