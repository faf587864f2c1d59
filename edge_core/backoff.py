"""Capped exponential backoff with jitter, on a monotonic clock.

Every wait for something that is away (the backend, the broker, the
Docker engine) grows this way, so a fleet of edges that lost the cloud
together does not come back in lockstep. A small utility any layer uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_EXPONENT = 32
"""Doublings of a delay past which it only stays at its cap."""


@dataclass
class Backoff:
    """The next attempt's due time after ``failed``; nothing due after ``reset``."""

    initial: float
    maximum: float
    attempts: int = 0
    due: float = 0.0

    def failed(self, now: float) -> float:
        """Note a failed attempt at ``now``; the delay until the next one."""
        # The exponent stops growing long before the float would overflow
        # (2.0 ** 1024): an outage of a day is over a thousand attempts.
        exponent = min(self.attempts, MAX_EXPONENT)
        delay = min(self.maximum, self.initial * 2.0**exponent)
        delay *= random.uniform(0.8, 1.2)
        self.attempts += 1
        self.due = now + delay
        return delay

    def reset(self) -> None:
        self.attempts = 0
        self.due = 0.0
