"""The alert outbox against the in-process backend emulator.

The emulator is the real stand-in for the backend (a loopback HTTP
server): its recorded requests show what was sent and in which order,
and its fault injection produces 5xx answers and hanging requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_core.alerts.outbox import AlertOutbox
from edge_core.cloud.rest import CloudClient
from tests.emulator.server import Emulator

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
WAIT = 10.0


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def backend(emulator: Emulator) -> Emulator:
    """The emulator with the one twin the alerts point at."""
    emulator.backend.set_twin({"uuid": TWIN, "name": "arm"})
    return emulator


@pytest.fixture
def cloud(backend: Emulator) -> Iterator[CloudClient]:
    """A client without retries of its own and a long timeout, so hung
    requests stay hung until the test releases them."""
    client = CloudClient(
        base_url=backend.url,
        token=lambda: backend.token,
        version="test",
        timeout=30.0,
        retries=0,
    )
    yield client
    client.close()


@pytest.fixture
def outboxes(cloud: CloudClient) -> Iterator[list[AlertOutbox]]:
    """Outboxes a test makes; stopped at teardown."""
    made: list[AlertOutbox] = []
    yield made
    for outbox in made:
        outbox.stop(timeout=1.0)


@pytest.fixture
def make(cloud: CloudClient, outboxes: list[AlertOutbox]) -> Callable[..., AlertOutbox]:
    def factory(**options: Any) -> AlertOutbox:
        options.setdefault("retry_initial", 0.01)
        options.setdefault("retry_max", 0.05)
        outbox = AlertOutbox(cloud, **options)
        outboxes.append(outbox)
        return outbox

    return factory


def payload(name: str = "Driver health", twin: str = TWIN) -> dict[str, Any]:
    """A create body; forced, so each one is a new alert on the backend."""
    return {
        "force": True,
        "name": name,
        "description": "text",
        "alert_type": "driver_health",
        "severity": "warning",
        "source_type": "edge",
        "category": "technical",
        "twin_uuid": twin,
    }


def calls(backend: Emulator) -> list[tuple[str, str]]:
    """(method, path) of every alert request, oldest first."""
    return [(r.method, r.path) for r in backend.requests(path_regex=r"^/api/v1/alerts")]


def puts(backend: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in backend.requests("PUT", r"^/api/v1/alerts/")]


def test_calls_go_out_in_order_and_the_handle_gets_its_uuid(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Create, forced updates and resolve reach the backend in call order."""
    outbox = make()
    handle = outbox.create(payload(), label="health of arm")
    for step in range(3):
        outbox.update(handle, {"metadata": {"step": step}}, force=True)
    outbox.resolve(handle)
    assert outbox.flush(WAIT)

    uuid = handle.uuid
    assert uuid is not None
    assert calls(backend) == [
        ("POST", "/api/v1/alerts"),
        ("PUT", f"/api/v1/alerts/{uuid}"),
        ("PUT", f"/api/v1/alerts/{uuid}"),
        ("PUT", f"/api/v1/alerts/{uuid}"),
        ("POST", f"/api/v1/alerts/{uuid}/resolve"),
    ]
    [alert] = backend.alerts()
    assert (alert["status"], alert["metadata"]) == ("resolved", {"step": 2})


def test_progress_updates_are_throttled_and_coalesced(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Within the interval only the latest waiting update goes, once due."""
    clock = FakeClock()
    outbox = make(clock=clock)
    handle = outbox.create(payload(), label="card")
    outbox.update(handle, {"metadata": {"n": 1}}, interval=2.0)
    # Answered, not only received: an update in flight counts as pending.
    wait_until(
        lambda: len(puts(backend)) == 1 and outbox.pending == 0, "the first update"
    )

    for n in (2, 3, 4):
        outbox.update(handle, {"metadata": {"n": n}}, interval=2.0)
    assert outbox.pending == 1
    outbox.wake()
    assert len(puts(backend)) == 1

    clock.now += 2.0
    outbox.wake()
    wait_until(lambda: len(puts(backend)) == 2, "the throttled update")
    assert puts(backend)[-1] == {"metadata": {"n": 4}}
    assert outbox.flush(WAIT)
    assert len(puts(backend)) == 2


def test_a_forced_update_goes_at_once_and_replaces_a_waiting_one(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """A phase change is not throttled; the waiting progress is folded in."""
    clock = FakeClock()
    outbox = make(clock=clock)
    handle = outbox.create(payload(), label="card")
    outbox.update(handle, {"metadata": {"n": 1}}, interval=2.0)
    wait_until(lambda: len(puts(backend)) == 1, "the first update")
    outbox.update(handle, {"metadata": {"n": 2}}, interval=2.0)
    outbox.update(handle, {"metadata": {"n": 3}, "severity": "error"}, force=True)
    wait_until(
        lambda: len(puts(backend)) == 2 and outbox.pending == 0, "the forced update"
    )
    assert puts(backend)[-1] == {"metadata": {"n": 3}, "severity": "error"}


def test_a_failing_backend_keeps_the_calls_until_it_recovers(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """5xx answers hold the queue back; nothing is lost or reordered."""
    backend.fault(r"^/api/v1/alerts$", method="POST", status=503, times=2)
    backend.fault(r"^/api/v1/alerts/[^/]+$", method="PUT", status=500, times=1)
    outbox = make()
    handle = outbox.create(payload(), label="card")
    outbox.update(handle, {"metadata": {"phase": "a"}}, force=True)
    outbox.update(handle, {"metadata": {"phase": "b"}}, force=True)
    outbox.resolve(handle)
    assert outbox.flush(WAIT)

    statuses = [
        (r.method, r.status) for r in backend.requests(path_regex=r"^/api/v1/alerts")
    ]
    assert statuses == [
        ("POST", 503),
        ("POST", 503),
        ("POST", 201),
        ("PUT", 500),
        ("PUT", 200),
        ("PUT", 200),
        ("POST", 200),
    ]
    assert [body["metadata"]["phase"] for body in puts(backend)] == ["a", "a", "b"]
    [alert] = backend.alerts()
    assert alert["status"] == "resolved"


def test_a_hanging_backend_never_blocks_callers(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Calls return while the backend hangs; stop returns with calls left."""
    backend.fault(r"^/api/v1/alerts$", method="POST", hang=True)
    outbox = make()
    first = outbox.create(payload(), label="first")
    wait_until(lambda: len(calls(backend)) == 1, "the hanging create")

    handles = [outbox.create(payload(f"n{i}"), label=f"n{i}") for i in range(20)]
    for handle in handles:
        for n in range(50):
            outbox.update(handle, {"metadata": {"n": n}}, interval=60.0)
        outbox.resolve(handle)
    assert first.uuid is None
    assert outbox.pending == 1 + 20 * 3

    left = outbox.stop(timeout=0.2)
    assert left == 1 + 20 * 3
    assert len(calls(backend)) == 1
    backend.clear_faults()


def test_a_refused_call_is_dropped_once_and_the_rest_go_on(
    backend: Emulator,
    make: Callable[..., AlertOutbox],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 4xx create drops that alert's calls; other alerts are not held up."""
    outbox = make()
    with caplog.at_level(logging.WARNING, logger="edge_core.alerts.outbox"):
        bad = outbox.create(payload(twin="no-such-twin"), label="bad")
        outbox.update(bad, {"metadata": {}}, force=True)
        outbox.resolve(bad)
        good = outbox.create(payload(), label="good")
        outbox.resolve(good)
        assert outbox.flush(WAIT)

    assert bad.dropped and bad.uuid is None
    assert good.uuid is not None
    assert calls(backend) == [
        ("POST", "/api/v1/alerts"),
        ("POST", "/api/v1/alerts"),
        ("POST", f"/api/v1/alerts/{good.uuid}/resolve"),
    ]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "create bad" in refusals[0].getMessage()


def test_a_full_queue_gives_up_progress_before_lifecycle_calls(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Progress updates are dropped first; creates and resolves are kept."""
    backend.fault(r"^/api/v1/alerts$", method="POST", hang=True, times=1)
    outbox = make(max_items=6)
    outbox.create(payload("blocker"), label="blocker")
    wait_until(lambda: len(calls(backend)) == 1, "the hanging create")
    handles = [outbox.create(payload(f"n{i}"), label=f"n{i}") for i in range(3)]
    for handle in handles:
        outbox.update(handle, {"metadata": {"progress": 1}})
    for handle in handles:
        outbox.resolve(handle)

    backend.clear_faults()
    assert outbox.flush(WAIT)
    assert puts(backend) == []
    assert all(handle.uuid for handle in handles)
    assert {a["name"]: a["status"] for a in backend.alerts()} == {
        "blocker": "active",
        "n0": "resolved",
        "n1": "resolved",
        "n2": "resolved",
    }


def test_a_discarded_alert_that_was_never_sent_is_never_sent(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Discarding before the create went out sends nothing for that alert."""
    backend.fault(r"^/api/v1/alerts$", method="POST", hang=True, times=1)
    outbox = make()
    outbox.create(payload("blocker"), label="blocker")
    wait_until(lambda: len(calls(backend)) == 1, "the hanging create")
    handle = outbox.create(payload("short-lived"), label="short-lived")
    outbox.update(handle, {"metadata": {"n": 1}}, force=True)
    outbox.resolve(handle, discard=True)

    backend.clear_faults()
    assert outbox.flush(WAIT)
    assert handle.dropped
    assert [a["name"] for a in backend.alerts()] == ["blocker"]
    assert calls(backend) == [("POST", "/api/v1/alerts")]


def test_updates_after_resolve_are_ignored(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """Nothing is sent for an alert once its resolve was queued."""
    outbox = make()
    handle = outbox.create(payload(), label="card")
    outbox.resolve(handle)
    outbox.update(handle, {"metadata": {"late": True}}, force=True)
    assert outbox.flush(WAIT)
    assert puts(backend) == []


def test_a_stopped_outbox_accepts_nothing(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """After stop, new calls are dropped instead of queued forever."""
    outbox = make()
    handle = outbox.create(payload(), label="card")
    assert outbox.stop(timeout=WAIT) == 0
    late = outbox.create(payload("late"), label="late")
    assert late.dropped
    assert handle.uuid is not None
    assert [a["name"] for a in backend.alerts()] == ["Driver health"]


def test_a_card_the_backend_keeps_failing_holds_up_no_other_card(
    backend: Emulator,
    make: Callable[..., AlertOutbox],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Updates of one card answered 500 for good let every other card's
    calls through, keep their own card's order (its resolve waits), and are
    given up once they failed five times while other calls were answered."""
    outbox = make()
    stuck = outbox.create(payload("stuck"), label="stuck")
    assert outbox.flush(WAIT)
    uuid = stuck.uuid
    assert uuid is not None
    backend.fault(rf"^/api/v1/alerts/{uuid}$", method="PUT", status=500)

    with caplog.at_level(logging.INFO, logger="edge_core.alerts.outbox"):
        outbox.update(stuck, {"metadata": {"phase": "x"}}, force=True)
        outbox.resolve(stuck)
        others = []
        for n in range(6):
            other = outbox.create(payload(f"other {n}"), label=f"other {n}")
            outbox.resolve(other)
            others.append(other)
            wait_until(
                lambda other=other: _resolved(backend, other.uuid),
                f"card {n} resolved while the stuck card fails",
            )
        assert outbox.flush(WAIT)

    assert all(_resolved(backend, other.uuid) for other in others)
    assert _resolved(backend, uuid)
    stuck_calls = [
        (r.method, r.status)
        for r in backend.requests(path_regex=rf"^/api/v1/alerts/{uuid}")
    ]
    refused = [call for call in stuck_calls if call == ("PUT", 500)]
    assert len(refused) >= 5
    assert stuck_calls[-1] == ("POST", 200)
    assert stuck_calls[:-1] == refused
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 1
    assert given_up[0].levelno == logging.WARNING
    assert "update stuck" in given_up[0].getMessage()


def test_calls_are_kept_however_long_the_whole_backend_is_away(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """With every alert call failing, nothing is given up, however many
    attempts: once the backend answers again every card arrives whole."""
    backend.fault(r"^/api/v1/alerts", status=503)
    outbox = make()
    cards = []
    for n in range(3):
        card = outbox.create(payload(f"card {n}"), label=f"card {n}")
        outbox.update(card, {"metadata": {"n": n}}, force=True)
        outbox.resolve(card)
        cards.append(card)
    wait_until(lambda: len(calls(backend)) >= 40, "many failed attempts")
    assert outbox.pending == 9

    backend.clear_faults()
    assert outbox.flush(WAIT)
    assert all(_resolved(backend, card.uuid) for card in cards)
    for alert in backend.alerts():
        assert alert["metadata"]["n"] in (0, 1, 2)


def _resolved(backend: Emulator, uuid: str | None) -> bool:
    return any(
        alert["uuid"] == uuid and alert["status"] == "resolved"
        for alert in backend.alerts()
    )


def test_more_failed_attempts_than_a_float_can_double_keep_the_worker(
    backend: Emulator, make: Callable[..., AlertOutbox]
) -> None:
    """A backend away for a long weekend means thousands of failed attempts
    (2.0 ** 1024 overflows): the worker goes on retrying, and the card
    arrives once the backend answers."""
    backend.fault(r"^/api/v1/alerts", status=503)
    outbox = make(retry_initial=1e-6, retry_max=1e-6)
    card = outbox.create(payload("long outage"), label="long outage")
    deadline = time.monotonic() + 60
    while len(calls(backend)) < 1100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(calls(backend)) >= 1100

    backend.clear_faults()
    assert outbox.flush(WAIT)
    assert card.uuid is not None
