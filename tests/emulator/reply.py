"""The answer type shared by the emulator's resource modules."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What the emulator answers: an HTTP status and a JSON body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def now_iso() -> str:
    """The current UTC time as ISO-8601 with a ``+00:00`` offset."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def not_found(kind: str) -> Reply:
    """The 404 answer for a missing object of ``kind``."""
    return Reply(404, {"detail": f"{kind} not found."})


def invalid(errors: dict[str, str]) -> Reply:
    """The 400 answer listing field errors, joined into ``detail`` too."""
    return Reply(400, {"detail": "; ".join(errors.values()), "errors": errors})
