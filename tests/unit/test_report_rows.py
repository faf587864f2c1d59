"""The container rows of ``status``: what each driver is, and what to do.

Rows join the engine's view of each managed container with the daemon's
last word on it (from its state file): failed, flapping, held, orphan.
"""

from __future__ import annotations

import time
from typing import Any

from edge_core.model.spec import LABEL_SPEC_HASH, LABEL_TWIN
from edge_core.report import ContainerRow, container_rows
from edge_core.runtime.container import ContainerView
from edge_core.state import DaemonState, DriverStatus

NOW = 1_796_299_200.0  # 2026-12-03 12:00:00 UTC
ROBOT = "cyberwave-driver-7f3c2a10"
ROBOT_TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
IMAGE = "cw-test/driver:local"


def view(name: str = ROBOT, status: str = "running", **extra: Any) -> ContainerView:
    return ContainerView.from_inspect(
        {
            "Id": f"id-{name}",
            "Name": f"/{name}",
            "State": {"Status": status, "ExitCode": extra.get("exit_code", 0)},
            "Config": {
                "Image": IMAGE,
                "Labels": {LABEL_TWIN: ROBOT_TWIN, LABEL_SPEC_HASH: "h1"},
            },
        }
    )


def driver(outcome: str, **fields: Any) -> DriverStatus:
    return DriverStatus(
        twin_uuid=ROBOT_TWIN,
        container_name=ROBOT,
        image=IMAGE,
        outcome=outcome,
        **fields,
    )


def state(*drivers: DriverStatus, orphans: tuple[str, ...] = ()) -> DaemonState:
    return DaemonState(
        pid=1,
        version="0",
        started_at=NOW - 3600,
        updated_at=NOW,
        phase="running",
        drivers=drivers,
        orphans=orphans,
    )


def one_row(views: list[ContainerView], daemon: DaemonState) -> ContainerRow:
    rows = container_rows(views, daemon, now=NOW)
    assert len(rows) == 1, rows
    return rows[0]


def test_running_adopted_driver_is_ok() -> None:
    """A running driver the daemon adopted has no note and is ok."""
    row = one_row([view()], state(driver("adopted")))

    assert (row.state, row.note, row.outcome, row.ok) == (
        "running",
        "",
        "adopted",
        True,
    )


def test_flapping_driver_says_until_when_and_what_to_do() -> None:
    """A parked driver names its restarts, the retry time and the two ways
    out: fix the driver or its device, or send restart_edge_core."""
    until = NOW + 540
    daemon = state(driver("flapping", restarts=7, parked_until=until))

    row = one_row([view(status="exited")], daemon)

    retry_at = time.strftime("%H:%M", time.gmtime(until))
    assert row.ok is False
    assert (row.outcome, row.restarts, row.parked_until) == ("flapping", 7, until)
    assert row.note.startswith("flapping: 7 restarts in a loop")
    assert f"it retries at {retry_at} UTC" in row.note
    assert "fix the driver or its device" in row.note
    assert f"docker logs {ROBOT}" in row.note
    assert "send restart_edge_core" in row.note


def test_flapping_driver_past_its_cooloff_is_being_retried() -> None:
    """Once the cool-off is over the note says the driver got its retry."""
    daemon = state(driver("flapping", restarts=5, parked_until=NOW - 60))

    row = one_row([view()], daemon)

    assert row.ok is False
    assert "started once more" in row.note


def test_held_driver_shows_the_wait() -> None:
    """A driver waiting for its revival shows the supervisor's reason."""
    reason = "exited soon after its last start; next try in 40 s"

    row = one_row([view(status="exited")], state(driver("held", reason=reason)))

    assert row.note == f"held: {reason}"
    assert row.ok is False


def test_held_removed_driver_is_a_missing_row() -> None:
    """A driver removed by hand and waiting for revival shows as missing."""
    reason = "removed outside the edge core; recreated in 3 min"

    row = one_row([], state(driver("held", reason=reason)))

    assert (row.name, row.state, row.outcome) == (ROBOT, "missing", "held")
    assert row.note == f"held: {reason}"


def test_removed_driver_without_a_verdict_says_how_it_comes_back() -> None:
    """A driver gone from the engine that the daemon still calls running
    says it was removed outside the edge core and how it returns."""
    row = one_row([], state(driver("running")))

    assert row.state == "missing"
    assert row.note.startswith("removed outside the edge core")
    assert "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS" in row.note
    assert row.ok is False


def test_stopped_orphan_gets_the_exact_docker_rm_command() -> None:
    """An orphan is neither ok nor wrong, and its note is the command that
    removes it."""
    orphan = "cyberwave-driver-0ddba115"

    row = one_row([view(orphan, "exited")], state(orphans=(orphan,)))

    assert row.outcome == "orphan"
    assert row.ok is None
    assert row.note.endswith(f"remove it with: docker rm {orphan}")


def test_running_orphan_needs_force() -> None:
    """A running orphan can only be removed with docker rm -f."""
    orphan = "cyberwave-driver-0ddba115"

    row = one_row([view(orphan)], state(orphans=(orphan,)))

    assert row.note.endswith(f"docker rm -f {orphan}")


def test_failed_driver_without_container_keeps_its_phase_and_reason() -> None:
    """A driver that failed before it had a container shows phase and why."""
    failed = driver("failed", phase="image_missing", reason="no such image")

    row = one_row([], state(failed))

    assert row.state == "not running"
    assert row.note == "failed (image_missing): no such image"


def test_containers_without_daemon_state_are_listed_plainly() -> None:
    """Without a state file, the engine's containers are listed as they are,
    with what the engine says of one that does not run."""
    rows = container_rows([view(status="exited")], None, now=NOW)

    assert [(r.name, r.state, r.note, r.ok) for r in rows] == [
        (ROBOT, "exited", "exited, last exit code 0", False)
    ]


def test_a_driver_docker_keeps_restarting_says_how_often_and_why() -> None:
    """A crash loop below the restart-loop threshold is still explained:
    how many restarts, the last exit code, what happens next."""
    crashing = ContainerView.from_inspect(
        {
            "Id": "id-1",
            "Name": f"/{ROBOT}",
            "RestartCount": 3,
            "State": {"Status": "restarting", "ExitCode": 1},
            "Config": {"Image": IMAGE, "Labels": {LABEL_TWIN: ROBOT_TWIN}},
        }
    )

    [row] = container_rows([crashing], None, now=NOW)

    assert row.note.startswith("keeps crashing: Docker restarted it 3 times")
    assert "last exit code 1" in row.note
    assert row.restarts == 3 and row.ok is False


def test_held_retry_of_a_failed_launch_keeps_its_phase() -> None:
    """A driver held between retries of a failed launch is "not running"
    and names the failure phase and cause."""
    reason = "launch failed 2 times in a row: image missing; next try in 2 min"
    held = driver("held", phase="image_missing", reason=reason)

    row = one_row([], state(held))

    assert row.state == "not running"
    assert row.note == f"held (image_missing): {reason}"
