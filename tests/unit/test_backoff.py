"""Capped exponential backoff: the cap holds however many attempts failed."""

from __future__ import annotations

from edge_core.backoff import Backoff


def test_the_delay_grows_then_stays_capped() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0)
    delays = [backoff.failed(0.0) for _ in range(10)]
    assert 0.8 <= delays[0] <= 1.2
    assert all(48.0 <= delay <= 72.0 for delay in delays[7:])


def test_thousands_of_failures_keep_the_capped_delay() -> None:
    """An outage of a long weekend at one try a minute is over 4000 failed
    attempts; each still gets the capped delay (2.0 ** 1024 overflows)."""
    backoff = Backoff(initial=1.0, maximum=60.0)
    for _ in range(5000):
        delay = backoff.failed(100.0)
    assert 48.0 <= delay <= 72.0
    assert backoff.due == 100.0 + delay
    backoff.reset()
    assert backoff.failed(0.0) <= 1.2
