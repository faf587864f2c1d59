"""Where lines held for an absent broker are read again by the next process."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_core.drivers.logs import LogOutbox, LogPosition

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(seconds: int, container: str = "c1") -> LogPosition:
    return LogPosition(container, T0 + timedelta(seconds=seconds))


class Broker:
    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    def publish(self, topic: str, payload: Mapping[str, Any]) -> bool:
        if self.up:
            self.sent.append(str(payload["message"]))
        return self.up


def send(outbox: LogOutbox, n: int) -> None:
    """One message of line ``n`` (a whole line, or one of its parts)."""
    outbox.send("t", {"message": f"line {n}"}, source="driver", before=at(n - 1))


def test_held_lines_keep_the_position_before_the_oldest_of_them() -> None:
    broker = Broker()
    outbox = LogOutbox(broker.publish, connected=lambda: broker.up)
    for n in (1, 2, 3):
        send(outbox, n)
    assert outbox.unsent() == {"driver": at(0)}

    broker.up = True
    assert outbox.flush() == 3
    assert outbox.unsent() == {}


def test_lines_dropped_for_room_move_the_position_past_them() -> None:
    broker = Broker()
    outbox = LogOutbox(broker.publish, capacity=2, connected=lambda: broker.up)
    for n in (1, 2, 3, 4):
        send(outbox, n)
    assert outbox.dropped == 2
    assert outbox.unsent() == {"driver": at(2)}


def test_a_part_sent_before_the_rest_of_its_line_keeps_the_line() -> None:
    broker = Broker()
    outbox = LogOutbox(broker.publish, capacity=1, connected=lambda: broker.up)
    send(outbox, 1)  # the part before a lone CR
    send(outbox, 1)  # the line's last part
    # The first part was dropped; the line's last part still waits.
    assert outbox.unsent() == {"driver": at(0)}
