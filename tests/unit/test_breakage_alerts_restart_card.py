"""The ``edge_core_restart`` card when the backend refuses or garbles calls.

Runs ``AlertBook`` against the in-process backend emulator with injected
faults: whatever the backend answers to one PUT of the card's metadata,
a restart that ended leaves its card resolved (protocol.md 1.8, end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_core.alerts.book import AlertBook
from edge_core.alerts.outbox import AlertOutbox
from edge_core.cloud.rest import CloudClient
from tests.emulator.server import Emulator

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
WAIT = 10.0


@pytest.fixture
def cloud(emulator: Emulator) -> Iterator[CloudClient]:
    emulator.backend.set_twin({"uuid": TWIN, "environment_uuid": ENV})
    client = CloudClient(
        base_url=emulator.url, token=lambda: emulator.token, version="test", retries=0
    )
    yield client
    client.close()


@pytest.fixture
def make_book(cloud: CloudClient) -> Iterator[Callable[[], AlertBook]]:
    made: list[AlertBook] = []

    def factory() -> AlertBook:
        outbox = AlertOutbox(cloud, retry_initial=0.01, retry_max=0.05)
        book = AlertBook(
            cloud,
            outbox,
            workspace_id=None,
            troubleshooting_url="https://docs.example/t",
            update_interval=0.5,
        )
        made.append(book)
        return book

    yield factory
    for book in made:
        book.stop(timeout=1.0)


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


def stored(emulator: Emulator, uuid: str) -> dict[str, Any]:
    [alert] = [a for a in emulator.alerts() if a["uuid"] == uuid]
    return alert


@pytest.mark.parametrize("status", [400, 409, 422])
def test_a_refused_final_update_still_resolves_the_card(
    emulator: Emulator,
    cloud: CloudClient,
    make_book: Callable[[], AlertBook],
    status: int,
) -> None:
    """The backend refuses the PUT of the final phase with a 4xx: the card
    is resolved all the same, so it does not stay open for good."""
    uuid = restart_card(cloud)
    book = make_book()
    alert = book.restart_alert(uuid)
    alert.in_progress()
    assert book.flush(WAIT)
    emulator.fault(rf"^/api/v1/alerts/{uuid}$", method="PUT", status=status)

    alert.completed()
    assert book.flush(WAIT)

    assert stored(emulator, uuid)["status"] == "resolved"
    assert len(emulator.requests("POST", rf"^/api/v1/alerts/{uuid}/resolve$")) == 1


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_read_of_the_card_still_walks_it(
    emulator: Emulator,
    cloud: CloudClient,
    make_book: Callable[[], AlertBook],
    status: int,
) -> None:
    """The GET of the card is refused once: the later steps read it again and
    the card ends resolved as failed."""
    uuid = restart_card(cloud)
    book = make_book()
    emulator.fault(rf"^/api/v1/alerts/{uuid}$", method="GET", status=status, times=1)
    alert = book.restart_alert(uuid)
    alert.in_progress()
    alert.failed("the environment could not be downloaded")
    assert book.flush(WAIT)

    card = stored(emulator, uuid)
    assert card["status"] == "resolved"
    assert card["metadata"]["phase"] == "failed"
    assert card["metadata"]["request_id"] == "r1"
