"""Edge commands: decoding, de-duplication and the hand-over to the loop."""

from __future__ import annotations

import logging
import threading

import pytest

from edge_core.commands import (
    REMEMBERED_REQUESTS,
    CommandInbox,
    EdgeCommand,
    MalformedCommand,
    RecentIds,
    parse_command,
)

TOPIC = "devedges/e1/command"


def test_parse_normalises_the_command_and_ignores_unknown_keys() -> None:
    command = parse_command(
        {
            "command": "  Restart_Edge_Core ",
            "request_id": "r1",
            "alert_uuid": "a1",
            "session_id": "whatever",
        }
    )
    assert command == EdgeCommand("restart_edge_core", "r1", "a1")


@pytest.mark.parametrize(
    "payload",
    [
        "restart_edge_core",
        ["restart_edge_core"],
        {},
        {"command": ""},
        {"command": 7},
        {"command": "restart_edge_core", "request_id": True},
        {"command": "restart_edge_core", "alert_uuid": {"x": 1}},
    ],
)
def test_parse_rejects_malformed_payloads(payload: object) -> None:
    with pytest.raises(MalformedCommand):
        parse_command(payload)


def test_a_numeric_request_id_is_taken_as_its_text() -> None:
    """Be liberal in what is accepted: a number where a string id belongs
    still restarts, and dedupes on its text."""
    command = parse_command({"command": "restart_edge_core", "request_id": 12345})
    assert command == EdgeCommand("restart_edge_core", "12345", None)


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(size=2)
    assert not recent.seen("a")
    assert not recent.seen("b")
    assert recent.seen("a")
    assert not recent.seen("c")  # evicts b, the least recently seen
    assert not recent.seen("b")
    assert recent.seen("c")


def test_inbox_queues_restart_and_wakes_the_loop() -> None:
    wake = threading.Event()
    inbox = CommandInbox(wake)
    inbox.on_message(TOPIC, {"command": "restart_edge_core", "request_id": "r1"})
    assert wake.is_set()
    assert inbox.drain() == [EdgeCommand("restart_edge_core", "r1", None)]
    assert inbox.drain() == []


def test_inbox_drops_repeated_request_ids_but_not_id_less_commands() -> None:
    inbox = CommandInbox()
    for _ in range(3):
        inbox.on_message(TOPIC, {"command": "restart_edge_core", "request_id": "r1"})
    inbox.on_message(TOPIC, {"command": "restart_edge_core"})
    inbox.on_message(TOPIC, {"command": "restart_edge_core"})
    assert [c.request_id for c in inbox.drain()] == ["r1", None, None]


def test_inbox_remembers_a_bounded_number_of_request_ids() -> None:
    inbox = CommandInbox()
    for n in range(REMEMBERED_REQUESTS + 1):
        inbox.on_message(TOPIC, {"command": "restart_edge_core", "request_id": f"{n}"})
        inbox.drain()
    # The very first id has been forgotten, the last one is still known.
    inbox.on_message(TOPIC, {"command": "restart_edge_core", "request_id": "0"})
    inbox.on_message(
        TOPIC,
        {"command": "restart_edge_core", "request_id": f"{REMEMBERED_REQUESTS}"},
    )
    assert [c.request_id for c in inbox.drain()] == ["0"]


def test_other_commands_are_ignored_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    inbox = CommandInbox()
    with caplog.at_level(logging.DEBUG, logger="edge_core.commands"):
        inbox.on_message(TOPIC, {"command": "sync_workflows"})
    assert inbox.drain() == []
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_a_malformed_payload_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = CommandInbox()
    with caplog.at_level(logging.DEBUG, logger="edge_core.commands"):
        for _ in range(5):
            inbox.on_message(TOPIC, "not json at all")
        inbox.on_message(TOPIC, {"command": 3})
    assert inbox.drain() == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(TOPIC in r.getMessage() for r in warnings)
