"""Restart commands that name a restart card the edge core already took.

The backend creates one ``edge_core_restart`` card per restart request
and sends its uuid as ``alert_uuid`` (protocol.md 1.8, 2.6). A command
naming a card already acted upon is the same request delivered again,
even without a ``request_id``: acting on it would mark the running
restart's card as a refused concurrent restart, or restart twice.
"""

from __future__ import annotations

from edge_core.commands import CommandInbox, parse_command

TOPIC = "edges/e1/command"
CARD = "3c91d0f2-1111-4a2b-9c3d-5e6f7a8b9c0d"


def test_a_repeated_alert_uuid_without_request_id_is_ignored() -> None:
    inbox = CommandInbox()
    for _ in range(3):
        inbox.on_message(TOPIC, {"command": "restart_edge_core", "alert_uuid": CARD})
    assert [c.alert_uuid for c in inbox.drain()] == [CARD]


def test_a_repeated_alert_uuid_under_a_new_request_id_is_ignored() -> None:
    inbox = CommandInbox()
    inbox.on_message(
        TOPIC, {"command": "restart_edge_core", "request_id": "r1", "alert_uuid": CARD}
    )
    inbox.on_message(
        TOPIC, {"command": "restart_edge_core", "request_id": "r2", "alert_uuid": CARD}
    )
    assert [c.request_id for c in inbox.drain()] == ["r1"]


def test_distinct_cards_and_id_less_commands_still_restart() -> None:
    inbox = CommandInbox()
    inbox.on_message(TOPIC, {"command": "restart_edge_core", "alert_uuid": CARD})
    inbox.on_message(TOPIC, {"command": "restart_edge_core", "alert_uuid": "other"})
    inbox.on_message(TOPIC, {"command": "restart_edge_core"})
    inbox.on_message(TOPIC, {"command": "restart_edge_core"})
    assert [c.alert_uuid for c in inbox.drain()] == [CARD, "other", None, None]


def test_an_id_cannot_forge_log_lines() -> None:
    """A request_id with line breaks and control characters is one line."""
    forged = "r1\n2026-01-01 00:00:00.000 UTC [ERROR] [edge_core.daemon] x\r\x1b[2J"
    command = parse_command({"command": "restart_edge_core", "request_id": forged})
    assert command.request_id is not None
    assert command.request_id.isprintable()
    assert command.request_id.startswith("r1 2026-01-01")


def test_a_huge_id_is_kept_short_but_distinct() -> None:
    """A megabyte id is remembered and logged in a bounded size; two that
    differ only at the end stay two ids, the same one dedupes."""
    base = "x" * 1_000_000
    first = parse_command({"command": "restart_edge_core", "request_id": base + "a"})
    second = parse_command({"command": "restart_edge_core", "request_id": base + "b"})
    again = parse_command({"command": "restart_edge_core", "request_id": base + "a"})
    assert first.request_id is not None and len(first.request_id) <= 200
    assert first.request_id != second.request_id
    assert first.request_id == again.request_id
    inbox = CommandInbox()
    for text in (base + "a", base + "b", base + "a"):
        inbox.on_message(TOPIC, {"command": "restart_edge_core", "request_id": text})
    assert len(inbox.drain()) == 2


def test_an_ordinary_id_is_kept_as_sent() -> None:
    text = "7f3a9c1e-ünï-🚀"
    command = parse_command(
        {"command": "restart_edge_core", "request_id": text, "alert_uuid": CARD}
    )
    assert (command.request_id, command.alert_uuid) == (text, CARD)
