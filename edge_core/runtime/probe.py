"""Decide whether a just-started container came up (protocol.md 4.5 step 5).

The rule is a ladder over the container's state, polled every interval
(the first look one interval after the start) until a deadline:
running is success; exited or restarting with exit code 0 is success;
exited after Docker already restarted it means Docker is still trying, so
keep waiting; exited or dead otherwise is failure; a container still in
``created`` at the deadline gets one more start and another probe window.

This module only decides. It reaches the engine through the callables it
is given, takes time from an injected clock, and never removes anything.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_core.errors import ContainerError
from edge_core.runtime.container import ContainerState, ContainerView

log = logging.getLogger(__name__)

PHASE_EXITED = "docker_start_failed"
PHASE_TIMEOUT = "container_startup_timeout"


class Verdict(enum.Enum):
    """What one observation of the container says."""

    UP = "up"
    FAILED = "failed"
    WAIT = "wait"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of a startup probe.

    ``phase`` is the failure phase for alerts (None on success); ``detail``
    is one line for people; ``log_tail`` holds the container's last lines
    when it failed.
    """

    ok: bool
    name: str
    state: ContainerState | None
    exit_code: int | None
    restart_count: int
    detail: str
    phase: str | None = None
    log_tail: tuple[str, ...] = ()


def judge(view: ContainerView) -> Verdict:
    """The verdict for one inspected state, cheapest rule first."""
    if view.state is ContainerState.RUNNING:
        return Verdict.UP

    settled = view.state in (ContainerState.EXITED, ContainerState.RESTARTING)
    if settled and view.exit_code == 0:
        return Verdict.UP

    if view.state is ContainerState.EXITED and view.restart_count > 0:
        return Verdict.WAIT

    if view.state in (ContainerState.EXITED, ContainerState.DEAD):
        return Verdict.FAILED

    return Verdict.WAIT


def _summary(view: ContainerView) -> str:
    if view.state is ContainerState.RUNNING:
        return "running"
    if view.exit_code is not None and view.state in (
        ContainerState.EXITED,
        ContainerState.DEAD,
        ContainerState.RESTARTING,
    ):
        restarts = f" after {view.restart_count} restarts" if view.restart_count else ""
        return f"{view.state.value} with code {view.exit_code}{restarts}"
    return str(view.state.value)


def probe(
    name: str,
    *,
    inspect: Callable[[], ContainerView | None],
    start: Callable[[], None],
    tail: Callable[[], Sequence[str]],
    timeout: float,
    interval: float,
    created_retry_timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ProbeResult:
    """Poll ``inspect`` until the container is up, failed, or time is out."""
    deadline = clock() + timeout
    retried = False
    # A driver that crashes at once is still "running" right after start;
    # the first look comes one interval later so such a crash is seen.
    sleep(max(0.0, min(interval, timeout)))
    while True:
        view = inspect()
        if view is None:
            return ProbeResult(
                False,
                name,
                None,
                None,
                0,
                f"container {name} disappeared while starting",
                phase=PHASE_EXITED,
            )

        verdict = judge(view)
        if verdict is Verdict.UP:
            return ProbeResult(
                True,
                name,
                view.state,
                view.exit_code,
                view.restart_count,
                f"container {name} is {_summary(view)}",
            )
        if verdict is Verdict.FAILED:
            return _failed(name, view, tail, phase=PHASE_EXITED, why=_summary(view))

        now = clock()
        if now < deadline:
            sleep(max(0.0, min(interval, deadline - now)))
            continue

        if view.state is ContainerState.CREATED and not retried:
            # The first start may have been lost; one more, then a new window.
            retried = True
            log.info("container %s is still created; starting it again", name)
            try:
                start()
            except ContainerError as exc:
                return _failed(name, view, tail, phase=exc.phase, why=str(exc))
            deadline = clock() + created_retry_timeout
            continue

        return _failed(
            name,
            view,
            tail,
            phase=PHASE_TIMEOUT,
            why=f"still {_summary(view)} after the startup probe of {timeout:g} s",
        )


def _failed(
    name: str,
    view: ContainerView,
    tail: Callable[[], Sequence[str]],
    *,
    phase: str,
    why: str,
) -> ProbeResult:
    try:
        lines = tuple(tail())
    except ContainerError as exc:
        lines = (f"(logs unavailable: {exc})",)
    last = f"; last output: {lines[-1]}" if lines else ""
    return ProbeResult(
        False,
        name,
        view.state,
        view.exit_code,
        view.restart_count,
        f"container {name} failed to start: {why}{last}",
        phase=phase,
        log_tail=lines,
    )
