"""The alert lifecycle of AlertBook against the in-process backend emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_core.alerts.book import AlertBook
from edge_core.alerts.launches import LaunchAlerts
from edge_core.alerts.outbox import AlertOutbox
from edge_core.cloud.rest import CloudClient
from edge_core.model.failures import DriverFailure
from tests.emulator.server import Emulator
from tests.support.specs import make_spec

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
OTHER = "0d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
NAME = "cyberwave-driver-7f3c2a10"
URL = "https://docs.example/troubleshooting"
WAIT = 10.0


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend(emulator: Emulator) -> Emulator:
    for uuid in (TWIN, OTHER):
        emulator.backend.set_twin({"uuid": uuid, "environment_uuid": ENV})
    return emulator


@pytest.fixture
def cloud(backend: Emulator) -> Iterator[CloudClient]:
    client = CloudClient(
        base_url=backend.url, token=lambda: backend.token, version="test", retries=0
    )
    yield client
    client.close()


@pytest.fixture
def make_book(cloud: CloudClient) -> Iterator[Callable[..., AlertBook]]:
    """Books on the test's emulator; their outboxes stop at teardown."""
    made: list[AlertBook] = []

    def factory(
        *, client: CloudClient | None = None, retry_initial: float = 0.01, **kw: Any
    ) -> AlertBook:
        api = client or cloud
        outbox = AlertOutbox(
            api, retry_initial=retry_initial, retry_max=max(retry_initial, 0.05)
        )
        kw.setdefault("workspace_id", None)
        kw.setdefault("troubleshooting_url", URL)
        kw.setdefault("update_interval", 0.5)
        book = AlertBook(api, outbox, **kw)
        made.append(book)
        return book

    yield factory
    for book in made:
        book.stop(timeout=1.0)


def bodies(backend: Emulator, method: str, path: str) -> list[Any]:
    return [r.body for r in backend.requests(method, path)]


def open_card(book: AlertBook, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "twin_uuid": TWIN,
        "environment_uuid": ENV,
        "image": "reg/driver:1",
        "container_name": NAME,
        "service_name": None,
    }
    options.update(kw)
    return book.starting(**options)


# -- driver_starting ----------------------------------------------------------


def test_a_starting_card_walks_its_phases_and_resolves(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """Created with force=true, updated with full metadata, resolved on running."""
    book = make_book(clock=FakeClock(1700000000.0), workspace_id="ws-1")
    card = open_card(book)
    card.progress({"phase": "downloading", "progress_percent": 10, "image": "x"})
    card.phase("pull_complete")
    card.phase("starting_container")
    card.phase("container_created")
    card.running()
    card.phase("late")
    assert book.flush(WAIT)

    [create] = bodies(backend, "POST", r"^/api/v1/alerts$")
    assert create["force"] is True
    assert create["name"] == "Driver starting"
    assert create["alert_type"] == "driver_starting"
    assert create["environment_uuid"] == ENV
    assert create["workspace_uuid"] == "ws-1"
    assert create["metadata"]["phase"] == "pull_started"
    assert create["metadata"]["started_at"] == 1700000000.0
    phases = [b["metadata"]["phase"] for b in bodies(backend, "PUT", "^/api/v1/")]
    assert phases == [
        "downloading",
        "pull_complete",
        "starting_container",
        "container_created",
        "container_running",
    ]
    last = bodies(backend, "PUT", "^/api/v1/")[-1]["metadata"]
    assert last["image"] == "x"
    assert last["container_name"] == NAME
    assert (last["overall_progress_percent"], last["stage_progress_percent"]) == (
        80,
        100,
    )
    [alert] = backend.alerts()
    assert alert["status"] == "resolved"
    assert card.closed


def test_a_failed_card_becomes_critical_and_is_resolved(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """failed() PUTs the failure patch with its plain description, then resolves."""
    book = make_book(clock=FakeClock(1700000000.0))
    card = open_card(book, service_name="slam")
    card.failed("image_missing", f"no image; token {backend.token}")
    assert book.flush(WAIT)

    [alert] = backend.alerts()
    assert alert["name"] == "Driver starting (slam)"
    assert alert["status"] == "resolved"
    assert alert["severity"] == "critical"
    assert "could not be downloaded" in alert["description"]
    metadata = alert["metadata"]
    assert metadata["phase"] == "image_missing"
    assert metadata["failed"] is True
    assert metadata["failed_at"] == 1700000000.0
    assert metadata["service_name"] == "slam"
    assert backend.token not in metadata["technical_detail"]


def test_progress_is_throttled_but_never_lost(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """Many progress calls make few PUTs; the last one carries the latest keys."""
    book = make_book(update_interval=60.0)
    card = open_card(book)
    for percent in range(1, 51):
        card.progress({"phase": "downloading", "progress_percent": percent})
    assert book.flush(WAIT)
    sent = bodies(backend, "PUT", "^/api/v1/")
    assert 1 <= len(sent) <= 2
    assert sent[-1]["metadata"]["progress_percent"] == 50
    assert sent[0]["metadata"]["phase"] == "downloading"


def test_progress_after_the_pull_is_ignored(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """A late pull event never moves a card back from starting_container."""
    book = make_book()
    card = open_card(book, phase="starting_container")
    card.progress({"phase": "downloading", "progress_percent": 5})
    card.running()
    assert book.flush(WAIT)
    sent = bodies(backend, "PUT", "^/api/v1/")
    assert [body["metadata"]["phase"] for body in sent] == ["container_running"]
    assert "progress_percent" not in sent[0]["metadata"]
    [create] = bodies(backend, "POST", r"^/api/v1/alerts$")
    assert create["metadata"]["phase"] == "starting_container"
    assert create["metadata"]["overall_progress_percent"] == 73


def test_a_create_that_timed_out_is_found_instead_of_made_twice(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """A POST answered too late is recovered by its started_at, not repeated."""
    backend.fault(r"^/api/v1/alerts$", method="POST", delay=0.5, times=1)
    impatient = CloudClient(
        base_url=backend.url,
        token=lambda: backend.token,
        version="test",
        timeout=0.2,
        retries=0,
    )
    try:
        book = make_book(client=impatient, retry_initial=2.0)
        card = open_card(book)
        card.running()
        assert book.flush(WAIT)
    finally:
        impatient.close()
    [alert] = backend.alerts(alert_type="driver_starting")
    assert alert["uuid"] == card.handle.uuid
    assert alert["status"] == "resolved"


# -- one-shot alerts ----------------------------------------------------------


def test_raise_alert_uses_the_table_and_is_deduped(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """No force: raising the same failure twice leaves one active alert."""
    book = make_book()
    for _ in range(2):
        book.raise_alert(
            alert_type="driver_start_failure",
            twin_uuid=TWIN,
            environment_uuid=None,
            title="Driver image not available",
            description=f"image reg/x:1 missing ({backend.token})",
        )
    assert book.flush(WAIT)
    creates = bodies(backend, "POST", r"^/api/v1/alerts$")
    assert all("force" not in body for body in creates)
    assert all("environment_uuid" not in body for body in creates)
    [alert] = backend.alerts()
    assert (alert["name"], alert["severity"]) == ("Driver image not available", "error")
    assert alert["dedupe_count"] == 2
    assert backend.token not in alert["description"]


def test_restart_loop_alert_says_how_often_and_where_to_look(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """The default restart-loop text has the count, window and troubleshooting URL."""
    book = make_book()
    book.raise_alert(
        alert_type="driver_restart_loop",
        twin_uuid=TWIN,
        environment_uuid=ENV,
        metadata={"container_name": NAME, "window_seconds": 60.0},
        restarts=5,
    )
    assert book.flush(WAIT)
    [alert] = backend.alerts()
    assert alert["name"] == "Driver restart loop detected"
    assert alert["severity"] == "error"
    assert "restarted 5 times within 60 s" in alert["description"]
    assert URL in alert["description"]
    assert alert["metadata"]["container_name"] == NAME


def test_driver_health_defaults(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """driver_health is a warning titled "Driver container stopped"."""
    book = make_book()
    book.raise_alert(
        alert_type="driver_health",
        twin_uuid=TWIN,
        environment_uuid=ENV,
        metadata={"container_name": NAME, "state": "exited"},
    )
    assert book.flush(WAIT)
    [alert] = backend.alerts()
    assert (alert["name"], alert["severity"]) == ("Driver container stopped", "warning")
    assert NAME in alert["description"]


# -- resolving by type --------------------------------------------------------


def test_resolve_active_resolves_only_that_twins_alerts_of_those_types(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """R11 then R14 for the listed types; other types, twins and open cards stay."""
    book = make_book()
    for twin in (TWIN, OTHER):
        for alert_type in ("driver_starting", "driver_health"):
            book.raise_alert(
                alert_type=alert_type, twin_uuid=twin, environment_uuid=ENV
            )
    open_now = open_card(book)
    assert book.flush(WAIT)
    book.resolve_active(TWIN, ["driver_starting"])
    assert book.flush(WAIT)

    status = {
        (a["twin_uuid"], a["alert_type"], a["uuid"] == open_now.handle.uuid): a[
            "status"
        ]
        for a in backend.alerts()
    }
    assert status == {
        (TWIN, "driver_starting", False): "resolved",
        (TWIN, "driver_starting", True): "active",
        (TWIN, "driver_health", False): "active",
        (OTHER, "driver_starting", False): "active",
        (OTHER, "driver_health", False): "active",
    }
    [listing] = backend.requests("GET", r"^/api/v1/alerts$")
    assert listing.param("twin_uuid") == TWIN
    assert (listing.param("status"), listing.param("limit")) == ("active", "100")


def test_resolve_active_is_queued_behind_earlier_calls(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """A cleanup never resolves a card raised after it."""
    book = make_book()
    book.raise_alert(alert_type="driver_starting", twin_uuid=TWIN, environment_uuid=ENV)
    book.resolve_active(TWIN, ["driver_starting"])
    card = open_card(book)
    assert book.flush(WAIT)
    states = {a["uuid"]: a["status"] for a in backend.alerts()}
    assert states[card.handle.uuid] == "active"
    assert sorted(states.values()) == ["active", "resolved"]


# -- edge_core_restart --------------------------------------------------------


def restart_card(cloud: CloudClient) -> str:
    created = cloud.create_alert(
        {
            "name": "Edge core restart",
            "alert_type": "edge_core_restart",
            "severity": "info",
            "twin_uuid": TWIN,
            "metadata": {"phase": "requested", "request_id": "r1"},
        }
    )
    return str(created["uuid"])


def test_restart_alert_goes_in_progress_then_completed(
    backend: Emulator, cloud: CloudClient, make_book: Callable[..., AlertBook]
) -> None:
    """GET first, then PUTs that keep the backend's metadata, then resolve."""
    uuid = restart_card(cloud)
    book = make_book()
    alert = book.restart_alert(uuid)
    alert.in_progress()
    alert.completed()
    alert.failed("ignored after completion")
    assert book.flush(WAIT)

    [stored] = backend.alerts()
    assert stored["status"] == "resolved"
    metadata = stored["metadata"]
    assert metadata["request_id"] == "r1"
    assert metadata["phase"] == "completed"
    assert metadata["in_progress_at"].endswith("+00:00")
    assert metadata["completed_at"].endswith("+00:00")
    assert len(backend.requests("GET", f"^/api/v1/alerts/{uuid}$")) == 1
    assert len(backend.requests("PUT", f"^/api/v1/alerts/{uuid}$")) == 2


def test_restart_alert_failure_and_concurrency(
    backend: Emulator, cloud: CloudClient, make_book: Callable[..., AlertBook]
) -> None:
    """A failed restart keeps a short error; a concurrent one says so."""
    book = make_book()
    failing, refused = restart_card(cloud), restart_card(cloud)
    book.restart_alert(failing).failed("boom " * 200)
    book.restart_alert(refused).concurrent()
    assert book.flush(WAIT)

    by_uuid = {a["uuid"]: a for a in backend.alerts()}
    failed = by_uuid[failing]["metadata"]
    assert failed["phase"] == "failed"
    assert len(failed["error"]) <= 500
    concurrent = by_uuid[refused]["metadata"]
    assert concurrent["reason"] == "concurrent_restart"
    assert concurrent["error"] == "another edge-core restart was already in progress"
    assert {a["status"] for a in by_uuid.values()} == {"resolved"}


def stored_alert(backend: Emulator, uuid: str) -> dict[str, Any]:
    [alert] = [a for a in backend.alerts() if a["uuid"] == uuid]
    return alert


@pytest.mark.parametrize("status", [400, 409, 422])
def test_a_refused_final_update_still_resolves_the_card(
    backend: Emulator,
    cloud: CloudClient,
    make_book: Callable[..., AlertBook],
    status: int,
) -> None:
    """The backend refuses the PUT of the final phase with a 4xx: the card
    is resolved all the same, so it does not stay open for good."""
    uuid = restart_card(cloud)
    book = make_book()
    alert = book.restart_alert(uuid)
    alert.in_progress()
    assert book.flush(WAIT)
    backend.fault(rf"^/api/v1/alerts/{uuid}$", method="PUT", status=status)

    alert.completed()
    assert book.flush(WAIT)

    assert stored_alert(backend, uuid)["status"] == "resolved"
    assert len(backend.requests("POST", rf"^/api/v1/alerts/{uuid}/resolve$")) == 1


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_read_of_the_card_still_walks_it(
    backend: Emulator,
    cloud: CloudClient,
    make_book: Callable[..., AlertBook],
    status: int,
) -> None:
    """The GET of the card is refused once: the later steps read it again and
    the card ends resolved as failed."""
    uuid = restart_card(cloud)
    book = make_book()
    backend.fault(rf"^/api/v1/alerts/{uuid}$", method="GET", status=status, times=1)
    alert = book.restart_alert(uuid)
    alert.in_progress()
    alert.failed("the environment could not be downloaded")
    assert book.flush(WAIT)

    card = stored_alert(backend, uuid)
    assert card["status"] == "resolved"
    assert card["metadata"]["phase"] == "failed"
    assert card["metadata"]["request_id"] == "r1"


def test_a_missing_restart_alert_is_ignored_quietly(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """A 404 on the GET skips every later step without an error."""
    book = make_book()
    alert = book.restart_alert("3f0e0000-0000-4000-8000-00000000dead")
    alert.in_progress()
    alert.completed()
    assert book.flush(WAIT)
    assert len(backend.requests("GET", "^/api/v1/alerts/")) == 1
    assert backend.requests("PUT") == []
    assert backend.requests("POST") == []


# -- the bookkeeping of a driver pass -----------------------------------------


def test_launch_alerts_of_a_pass(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """Stale cards cleared first, one failure per twin, recovered twins resolved."""
    book = make_book()
    book.raise_alert(alert_type="driver_starting", twin_uuid=TWIN, environment_uuid=ENV)
    book.raise_alert(
        alert_type="driver_start_failure", twin_uuid=TWIN, environment_uuid=ENV
    )
    assert book.flush(WAIT)
    backend.clear_requests()

    alerts = LaunchAlerts(book, {TWIN: ENV, OTHER: None})
    good = make_spec(NAME, image="reg/driver:1", twin_uuid=TWIN)
    bad = make_spec("cyberwave-driver-0d6e5f4a", image="reg/x:1", twin_uuid=OTHER)
    alerts.open(good)
    alerts.open(bad)
    alerts.pulled([good.name, bad.name], pulled=False, keys={})
    alerts.launching(good)
    alerts.created(good.name)
    alerts.running(good)
    alerts.failed(bad, phase="weird", detail="boom", title="Driver failed to start")
    alerts.spec_failure(DriverFailure(OTHER, "No drivers specified", "again"))
    alerts.finish()
    assert book.flush(WAIT)

    by_key = {
        (a["twin_uuid"], a["alert_type"], a["metadata"].get("phase")): a
        for a in backend.alerts()
    }
    assert by_key[(TWIN, "driver_starting", None)]["status"] == "resolved"
    assert by_key[(TWIN, "driver_start_failure", None)]["status"] == "resolved"
    card = by_key[(TWIN, "driver_starting", "container_running")]
    assert card["status"] == "resolved"
    failed = by_key[(OTHER, "driver_starting", "docker_error")]
    assert (failed["status"], failed["severity"]) == ("resolved", "critical")
    [failure] = backend.alerts(twin_uuid=OTHER, alert_type="driver_start_failure")
    assert (failure["name"], failure["status"]) == ("Driver failed to start", "active")
    assert failure["dedupe_count"] == 1
    assert "environment_uuid" not in next(
        body
        for body in bodies(backend, "POST", r"^/api/v1/alerts$")
        if body["twin_uuid"] == OTHER
    )
    phases = [
        b["metadata"]["phase"]
        for r, b in zip(
            backend.requests("PUT"),
            bodies(backend, "PUT", "^/api/v1/"),
            strict=True,
        )
        if r.path.endswith(str(card["uuid"]))
    ]
    assert phases == [
        "pull_skipped",
        "starting_container",
        "container_created",
        "container_running",
    ]


def test_launch_alerts_without_a_book_do_nothing() -> None:
    """A pass without alerts calls the same methods harmlessly."""
    alerts = LaunchAlerts(None, {})
    spec = make_spec(NAME, image="reg/driver:1", twin_uuid=TWIN)
    alerts.open(spec)
    alerts.launching(spec)
    alerts.failed(spec, phase=None, detail="x", title="t")
    alerts.finish(RuntimeError("gone"))
    assert not alerts.has_cards([NAME])


def test_finish_fails_cards_left_open_by_an_aborted_pass(
    backend: Emulator, make_book: Callable[..., AlertBook]
) -> None:
    """A pass that raised leaves no card spinning: it is failed and resolved."""
    book = make_book()
    alerts = LaunchAlerts(book, {TWIN: ENV})
    alerts.open(make_spec(NAME, image="reg/driver:1", twin_uuid=TWIN))
    alerts.finish(RuntimeError("the Docker engine went away"))
    assert book.flush(WAIT)
    [card] = backend.alerts(alert_type="driver_starting")
    assert card["status"] == "resolved"
    assert card["metadata"]["phase"] == "docker_error"
    assert "Docker engine went away" in card["metadata"]["technical_detail"]
