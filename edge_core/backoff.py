"""Capped exponential backoff with jitter, on a monotonic clock.

Every wait for something that is away (the backend, the broker, the
Docker engine) grows this way, so a fleet of edges that lost the cloud
together does not come back in lockstep. A small utility any layer uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """The next attempt's due time after ``failed``; nothing due after ``reset``."""

    initial: float
    maximum: float
    attempts: int = 0
    due: float = 0.0

    def failed(self, now: float) -> float:
        """Note a failed attempt at ``now``; the delay until the next one."""
        delay = min(self.maximum, self.initial * 2.0**self.attempts)
        delay *= random.uniform(0.8, 1.2)
        self.attempts += 1
        self.due = now + delay
        return delay

    def reset(self) -> None:
        self.attempts = 0
        self.due = 0.0
