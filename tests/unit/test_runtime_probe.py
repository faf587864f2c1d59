"""The startup probe ladder of protocol.md 4.5 step 5, with fake time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_core.errors import ContainerError
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.probe import (
    PHASE_EXITED,
    PHASE_TIMEOUT,
    ProbeResult,
    Verdict,
    judge,
    probe,
)


def view(state: str, exit_code: int = 0, restarts: int = 0) -> ContainerView:
    return ContainerView.from_inspect(
        {
            "Id": "id",
            "Name": "/cw",
            "RestartCount": restarts,
            "State": {"Status": state, "ExitCode": exit_code},
        }
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(
    states: list[ContainerView | None],
    *,
    timeout: float = 10,
    start_error: ContainerError | None = None,
) -> tuple[ProbeResult, list[float], FakeTime]:
    """Probe a container that goes through ``states`` (the last one repeats)."""
    time = FakeTime()
    starts: list[float] = []
    sequence: Iterator[ContainerView | None] = iter(states)
    last: list[ContainerView | None] = [None]

    def inspect() -> ContainerView | None:
        last[0] = next(sequence, last[0])
        return last[0]

    def start() -> None:
        starts.append(time.now)
        if start_error is not None:
            raise start_error

    result = probe(
        "cw",
        inspect=inspect,
        start=start,
        tail=lambda: ["line 1", "Traceback: boom"],
        timeout=timeout,
        interval=1,
        created_retry_timeout=30,
        clock=time.clock,
        sleep=time.sleep,
    )
    return result, starts, time


@pytest.mark.parametrize(
    ("observed", "verdict"),
    [
        (view("running"), Verdict.UP),
        (view("exited", 0), Verdict.UP),
        (view("restarting", 0), Verdict.UP),
        (view("exited", 1, restarts=2), Verdict.WAIT),
        (view("exited", 3), Verdict.FAILED),
        (view("dead", 137), Verdict.FAILED),
        (view("created"), Verdict.WAIT),
        (view("restarting", 2), Verdict.WAIT),
        (view("paused"), Verdict.WAIT),
    ],
)
def test_judge_ladder(observed: ContainerView, verdict: Verdict) -> None:
    """Each state and exit code gets the verdict protocol 4.5 step 5 gives it."""
    assert judge(observed) is verdict


def test_running_after_created_is_success() -> None:
    """A container that becomes running is a success with its state."""
    result, starts, _ = run([view("created"), view("created"), view("running")])
    assert result.ok
    assert result.state is ContainerState.RUNNING
    assert starts == []


def test_clean_exit_is_success() -> None:
    """A one-shot container that exits 0 counts as started."""
    result, _, _ = run([view("exited", 0)])
    assert result.ok
    assert result.phase is None


def test_exit_with_code_is_failure_with_logs() -> None:
    """Exited with code 3 fails with the code and the last log lines."""
    result, _, _ = run([view("exited", 3)])
    assert not result.ok
    assert result.exit_code == 3
    assert result.phase == PHASE_EXITED
    assert result.log_tail == ("line 1", "Traceback: boom")
    assert "code 3" in result.detail
    assert "Traceback: boom" in result.detail


def test_restart_loop_keeps_waiting_until_it_runs() -> None:
    """Exited with restarts is waited on; a later running state succeeds."""
    result, _, _ = run(
        [view("exited", 1, restarts=1), view("restarting", 1, 2), view("running")]
    )
    assert result.ok


def test_restart_loop_that_never_settles_times_out() -> None:
    """A container still restarting at the deadline fails as a startup timeout."""
    result, _, time = run([view("exited", 1, restarts=4)], timeout=5)
    assert not result.ok
    assert result.phase == PHASE_TIMEOUT
    assert time.now == pytest.approx(5)


def test_stuck_in_created_gets_one_more_start_and_window() -> None:
    """Created at the deadline: one start retry, then 30 s more of probing."""
    result, starts, time = run([view("created")], timeout=10)
    assert starts == [pytest.approx(10)]
    assert not result.ok
    assert result.phase == PHASE_TIMEOUT
    assert time.now == pytest.approx(40)


def test_retry_start_that_succeeds_is_success() -> None:
    """A created container that runs after the retried start is a success."""
    states: list[ContainerView | None] = [view("created") for _ in range(11)]
    states.append(view("running"))
    result, starts, _ = run(states, timeout=10)
    assert result.ok
    assert len(starts) == 1


def test_retry_start_error_is_reported_with_its_phase() -> None:
    """A failing retried start fails the probe with the start's phase."""
    error = ContainerError("start failed: caps", phase="docker_start_failed")
    result, _, _ = run([view("created")], timeout=2, start_error=error)
    assert not result.ok
    assert result.phase == "docker_start_failed"
    assert "caps" in result.detail


def test_vanished_container_is_failure() -> None:
    """A container removed while probing is a failure, not a crash."""
    result, _, _ = run([view("created"), None])
    assert not result.ok
    assert "disappeared" in result.detail
