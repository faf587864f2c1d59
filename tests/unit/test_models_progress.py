"""Progress events and the daemon's progress log lines."""

from __future__ import annotations

import logging

import pytest

from edge_core.models.progress import (
    Phase,
    Progress,
    ProgressLog,
    Throttle,
    describe,
    human_bytes,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_emits_at_most_once_per_interval_plus_the_final_event() -> None:
    """Updates inside the interval are dropped; ``finish`` always emits."""
    clock = FakeClock()
    events: list[Progress] = []
    throttle = Throttle(
        events.append,
        model_id="m",
        phase=Phase.DOWNLOAD,
        total=1000,
        interval=1.0,
        clock=clock,
    )

    for done in (100, 200, 300):
        clock.now += 0.6
        throttle.update(done)
    clock.now += 0.6
    throttle.finish(1000)

    assert [(e.done, e.finished) for e in events] == [
        (100, False),
        (300, False),
        (1000, True),
    ]
    assert events[-1].total == 1000
    assert events[-1].rate == pytest.approx(1000 / 2.4)


def test_rate_of_a_resumed_download_counts_only_new_bytes() -> None:
    """A resume that started at 600 bytes reports the rate of the bytes fetched now."""
    clock = FakeClock()
    events: list[Progress] = []
    throttle = Throttle(
        events.append,
        model_id="m",
        phase=Phase.DOWNLOAD,
        total=1000,
        start=600,
        interval=0.0,
        clock=clock,
    )
    clock.now += 2.0
    throttle.finish(1000)

    assert events[0].rate == pytest.approx(200.0)


def test_progress_log_writes_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One line per model per interval; none for the first or the final event."""
    clock = FakeClock()
    logger = logging.getLogger("test.models.progress")
    log = ProgressLog(interval=10.0, logger=logger, clock=clock)
    caplog.set_level(logging.INFO, logger="test.models.progress")

    for _ in range(25):
        log(Progress("yolov8n", Phase.DOWNLOAD, 1 << 20, 4 << 20, 1024.0))
        clock.now += 1.0
    log(Progress("yolov8n", Phase.DOWNLOAD, 4 << 20, 4 << 20, 1024.0, finished=True))

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[0] == (
        "model yolov8n: downloaded 1.0 MiB of 4.0 MiB (25%) at 1.0 KiB/s"
    )


def test_describe_without_a_total() -> None:
    """Without a known total the line gives bytes and rate only."""
    event = Progress("m", Phase.VERIFY, 512, None, 0.0)
    assert describe(event) == "model m: verified 512 B at 0 B/s"


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 30, "3.0 GiB")],
)
def test_human_bytes(count: int, text: str) -> None:
    """Binary units with one decimal."""
    assert human_bytes(count) == text
