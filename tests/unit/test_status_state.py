"""``status`` read from the daemon's state file.

Each test writes a config dir and a ``run/edge-core-state.json`` as the
daemon would (or as an older daemon did), then gathers the report offline,
renders it or runs the command, and checks the rows a person reads:
backend and broker outages, dropped log lines, the last remote restart,
the Zenoh router, flapping and held drivers.
"""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from edge_core.cli.main import cli
from edge_core.cli.status import render
from edge_core.report import Check, StatusReport, container_rows, gather
from edge_core.runtime.container import ContainerView
from edge_core.state import (
    DaemonState,
    DriverStatus,
    StateWriter,
    read_state,
    state_path,
)

ROBOT = "cyberwave-driver-7f3c2a10"
ROBOT_TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
OFFLINE_SINCE = float(calendar.timegm((2024, 5, 6, 14, 3, 0)))
SAVED_AT = float(calendar.timegm((2024, 5, 6, 13, 58, 0)))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A logged-in config dir with a fingerprint no container carries."""
    directory = tmp_path / "cyberwave"
    directory.mkdir(mode=0o700)
    credentials = directory / "credentials.json"
    credentials.write_text(json.dumps({"token": "cw_status_test"}))
    credentials.chmod(0o600)
    (directory / "environment.json").write_text(json.dumps({"uuid": str(uuid.uuid4())}))
    fingerprint = {"fingerprint": f"status-test-{uuid.uuid4().hex[:12]}"}
    (directory / "fingerprint.json").write_text(json.dumps(fingerprint))
    return directory


def environ(config_dir: Path) -> dict[str, str]:
    return {"CYBERWAVE_EDGE_CONFIG_DIR": str(config_dir), "HOME": str(config_dir)}


def old_state_document() -> dict[str, Any]:
    """A state file as daemons wrote it before the supervisor fields."""
    return {
        "pid": os.getpid(),
        "version": "0.1.0",
        "started_at": OFFLINE_SINCE - 60,
        "updated_at": OFFLINE_SINCE,
        "phase": "running",
        "fingerprint": "line-pc-4b8e1f0a9c2d",
        "edge_uuid": None,
        "environment_uuid": None,
        "backend_error": None,
        "environment_error": None,
        "mqtt_connected": True,
        "settings_warnings": [],
        "drivers": [
            {
                "twin_uuid": ROBOT_TWIN,
                "container_name": ROBOT,
                "image": "cw-test/driver:local",
                "outcome": "running",
                "phase": None,
                "reason": None,
            }
        ],
        "orphans": [],
        "linked_twins": [ROBOT_TWIN],
        "without_driver": {},
    }


def write_state(config_dir: Path, document: dict[str, Any]) -> None:
    path = state_path(config_dir)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))


def with_fields(**fields: Any) -> dict[str, Any]:
    return old_state_document() | fields


def check(report: StatusReport, name: str) -> Check:
    found = [c for c in report.checks if c.name == name]
    assert len(found) == 1, [c.name for c in report.checks]
    return found[0]


def names(report: StatusReport) -> list[str]:
    return [c.name for c in report.checks]


NEW_ROWS = {"backend", "mqtt session", "driver logs", "remote restart", "zenoh router"}


# -- compatibility of the state file ---------------------------------------


def test_old_state_file_loads_with_defaults(config_dir: Path) -> None:
    """A state file without the new fields loads, each with its default."""
    write_state(config_dir, old_state_document())

    state = read_state(config_dir)

    assert state is not None
    assert state.log_lines_dropped == 0
    assert state.restart is None
    assert (state.offline_since, state.broker_down_since, state.zenoh_router) == (
        None,
        None,
        None,
    )
    assert state.drivers[0].restarts is None
    assert state.drivers[0].parked_until is None


def test_old_state_file_shows_no_new_rows(config_dir: Path) -> None:
    """Status of an older daemon keeps its usual checks and adds none."""
    write_state(config_dir, old_state_document())

    report = gather(environ(config_dir), online=False)

    assert check(report, "daemon").ok is True
    assert check(report, "twins").detail.startswith("1 linked")
    assert NEW_ROWS.isdisjoint(names(report))


def test_new_fields_survive_a_write_and_a_read(config_dir: Path) -> None:
    """Every new field written by the daemon reads back unchanged."""
    state = DaemonState(
        pid=os.getpid(),
        version="1",
        started_at=1.0,
        updated_at=2.0,
        phase="running",
        drivers=(
            DriverStatus(
                ROBOT_TWIN,
                ROBOT,
                "img",
                "flapping",
                reason="restart loop",
                restarts=7,
                parked_until=3.5,
            ),
        ),
        log_lines_dropped=12,
        restart={"request_id": "r-1", "phase": "completed", "at": 4.0, "error": None},
        offline_since=5.0,
        broker_down_since=6.0,
        zenoh_router="cyberwave-zenoh-router-1a2b3c4d",
    )

    StateWriter(state_path(config_dir)).write(state)

    assert read_state(config_dir) == state


def test_keys_unknown_to_this_version_are_ignored(config_dir: Path) -> None:
    """A state file from a newer daemon still loads."""
    document = old_state_document()
    document["future_field"] = 1
    document["drivers"][0]["future_driver_field"] = "x"
    write_state(config_dir, document)

    state = read_state(config_dir)

    assert state is not None
    assert state.drivers[0].container_name == ROBOT


# -- rows of the daemon's links and history ---------------------------------


def test_backend_offline_names_the_time_error_and_saved_state(
    config_dir: Path,
) -> None:
    """An unreachable backend shows since when, why, and which saved
    desired state the drivers run from."""
    (config_dir / "desired-state.json").write_text(json.dumps({"fetched_at": SAVED_AT}))
    write_state(
        config_dir, with_fields(offline_since=OFFLINE_SINCE, backend_error="HTTP 503")
    )

    report = gather(environ(config_dir), online=False)

    backend = check(report, "backend")
    assert backend.ok is False
    assert backend.detail == (
        "unreachable since 2024-05-06 14:03 UTC: HTTP 503; running from "
        "desired-state.json saved at 2024-05-06 13:58 UTC"
    )
    assert backend.fix is not None and "retries by itself" in backend.fix
    assert report.healthy is False


def test_a_saved_state_the_daemon_refused_is_not_claimed(config_dir: Path) -> None:
    """A desired-state.json of another environment is not what the drivers
    run from, and the row says so."""
    (config_dir / "desired-state.json").write_text(json.dumps({"fetched_at": SAVED_AT}))
    write_state(
        config_dir,
        with_fields(offline_since=OFFLINE_SINCE, desired_known=False),
    )

    detail = check(gather(environ(config_dir), online=False), "backend").detail

    assert "running from" not in detail
    assert "desired-state.json is not used" in detail


def test_backend_offline_without_saved_state(config_dir: Path) -> None:
    """Without a saved desired state the row says the drivers wait."""
    write_state(config_dir, with_fields(offline_since=OFFLINE_SINCE))

    detail = check(gather(environ(config_dir), online=False), "backend").detail

    assert "no desired-state.json yet" in detail


def test_broker_unreachable_row(config_dir: Path) -> None:
    """A lost broker shows since when, and what waits for it."""
    write_state(config_dir, with_fields(broker_down_since=OFFLINE_SINCE))

    session = check(gather(environ(config_dir), online=False), "mqtt session")

    assert session.ok is False
    assert session.detail.startswith("broker unreachable since 2024-05-06 14:03 UTC")
    assert session.fix is not None and "CYBERWAVE_MQTT_HOST" in session.fix


def test_outage_rows_need_a_running_daemon(config_dir: Path) -> None:
    """A stopped daemon's last outage is history: no outage rows."""
    write_state(
        config_dir,
        with_fields(
            phase="stopped",
            offline_since=OFFLINE_SINCE,
            broker_down_since=OFFLINE_SINCE,
        ),
    )

    report = gather(environ(config_dir), online=False)

    assert {"backend", "mqtt session"}.isdisjoint(names(report))


def test_dropped_log_lines_are_counted(config_dir: Path) -> None:
    """Dropped driver log lines are a warning with the setting to raise."""
    write_state(config_dir, with_fields(log_lines_dropped=42))

    logs = check(gather(environ(config_dir), online=False), "driver logs")

    assert logs.ok is None
    assert logs.detail.startswith("42 driver log line(s) dropped")
    assert logs.fix is not None and "CYBERWAVE_DRIVER_LOG_BUFFER_LINES" in logs.fix


@pytest.mark.parametrize(
    ("phase", "error", "ok", "words"),
    [
        ("completed", None, True, "completed at 2024-05-06 14:03 UTC (request r-7)"),
        ("in_progress", None, None, "in progress at 2024-05-06 14:03 UTC"),
        ("failed", "docker engine gone", None, "(request r-7): docker engine gone"),
    ],
)
def test_last_remote_restart(
    config_dir: Path, phase: str, error: str | None, ok: bool | None, words: str
) -> None:
    """The last restart_edge_core shows its phase, time, request and error."""
    restart = {"request_id": "r-7", "phase": phase, "at": OFFLINE_SINCE, "error": error}
    write_state(config_dir, with_fields(restart=restart))

    row = check(gather(environ(config_dir), online=False), "remote restart")

    assert row.ok is ok
    assert row.detail.startswith("last restart_edge_core ")
    assert words in row.detail
    assert (row.fix is not None) == (phase == "failed")


def test_remote_restart_time_may_be_iso(config_dir: Path) -> None:
    """An ISO-8601 time in the restart record is read like an epoch."""
    restart = {"phase": "completed", "at": "2024-05-06T14:03:00+00:00"}
    write_state(config_dir, with_fields(restart=restart))

    row = check(gather(environ(config_dir), online=False), "remote restart")

    assert row.detail == "last restart_edge_core completed at 2024-05-06 14:03 UTC"


def test_zenoh_router_row(config_dir: Path) -> None:
    """An enabled Zenoh router is named by its container."""
    write_state(config_dir, with_fields(zenoh_router="cyberwave-zenoh-router-1a2b"))

    row = check(gather(environ(config_dir), online=False), "zenoh router")

    assert (row.ok, row.detail) == (
        True,
        "enabled: container cyberwave-zenoh-router-1a2b",
    )


def test_failed_zenoh_router_row_says_why_and_what_to_do(config_dir: Path) -> None:
    """A router that should run and does not is a failed row with the reason
    and the settings to check, and the report is not healthy."""
    write_state(
        config_dir,
        with_fields(
            zenoh_router="cyberwave-zenoh-router-1a2b",
            zenoh_router_error="image eclipse/zenoh:9.9 is not available",
        ),
    )

    report = gather(environ(config_dir), online=False)
    row = check(report, "zenoh router")

    assert row.ok is False
    assert row.detail == (
        "container cyberwave-zenoh-router-1a2b does not run: "
        "image eclipse/zenoh:9.9 is not available"
    )
    assert row.fix is not None and "ZENOH_ROUTER_IMAGE" in row.fix
    assert report.healthy is False


def test_paused_zenoh_router_row_says_it_is_paused(config_dir: Path) -> None:
    """A router a person paused is a failed row saying so and how to undo it,
    like a paused driver's row, without the settings hint of a failure."""
    note = (
        "paused by hand; left alone until: docker unpause cyberwave-zenoh-router-1a2b"
    )
    write_state(
        config_dir,
        with_fields(
            zenoh_router="cyberwave-zenoh-router-1a2b",
            zenoh_router_state="paused",
            zenoh_router_note=note,
        ),
    )

    report = gather(environ(config_dir), online=False)
    row = check(report, "zenoh router")

    assert (row.ok, row.fix) == (False, None)
    assert row.detail == f"container cyberwave-zenoh-router-1a2b is {note}"
    assert report.healthy is False


def test_zenoh_router_kept_under_another_name_is_a_warning_row(
    config_dir: Path,
) -> None:
    """A router that runs under the name a person gave it, because a foreign
    container holds its own, is neither ok nor failed, with what to do."""
    note = "runs as my-router: a container not managed by this edge core holds its name"
    write_state(
        config_dir,
        with_fields(
            zenoh_router="my-router",
            zenoh_router_state="adopted",
            zenoh_router_note=note,
        ),
    )

    row = check(gather(environ(config_dir), online=False), "zenoh router")

    assert row.ok is None
    assert row.detail == f"enabled: the router {note}"
    assert row.fix is not None and "gets its name back" in row.fix


def test_an_environment_the_backend_refuses_fails_the_environment_row(
    config_dir: Path,
) -> None:
    """environment.json parses, but the running daemon could not download
    what it selects: the environment row fails with the daemon's reason."""
    error = "GET /api/v1/environments/0b7c/twins answered HTTP 404 (not found)"
    write_state(config_dir, with_fields(environment_error=error))

    row = check(gather(environ(config_dir), online=False), "environment")

    assert row.ok is False
    assert "cannot be downloaded" in row.detail and error in row.detail
    assert row.fix is not None and "cyberwave edge install" in row.fix


def test_a_stopped_daemons_download_error_is_not_shown(config_dir: Path) -> None:
    """An error of a daemon that no longer runs says nothing about now."""
    write_state(config_dir, with_fields(environment_error="HTTP 404", phase="stopped"))

    assert check(gather(environ(config_dir), online=False), "environment").ok


def test_twin_file_problems_fail_their_row(config_dir: Path) -> None:
    """Lasting twin file problems the daemon reports are one failed row."""
    problems = [
        f"the backend refused twin file /c/{n}.json: HTTP 422" for n in range(4)
    ]
    write_state(config_dir, with_fields(twin_file_problems=problems))

    report = gather(environ(config_dir), online=False)
    row = check(report, "twin files")

    assert row.ok is False
    assert row.detail.startswith("the backend refused twin file /c/0.json")
    assert "(and 1 more)" in row.detail
    assert report.healthy is False


def test_a_read_only_run_dir_fails_the_disk_row(config_dir: Path) -> None:
    """With run/ on a read-only mount the daemon cannot save its state, and
    status says so instead of showing a stale state as healthy."""
    run = config_dir / "run"
    run.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(run)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (run the tests as root): {mounted.stderr}")
    try:
        report = gather(environ(config_dir), online=False)
    finally:
        subprocess.run(["umount", str(run)], check=False, capture_output=True)

    row = check(report, "disk")
    assert row.ok is False
    assert str(run) in row.detail and "read-only" in row.detail
    assert report.healthy is False


# -- the screen and the JSON -----------------------------------------------


def flapping_report(config_dir: Path) -> StatusReport:
    """A report with an outage and a flapping, a held and an orphan row."""
    document = with_fields(offline_since=OFFLINE_SINCE, log_lines_dropped=3)
    document["drivers"] = [
        {
            "twin_uuid": ROBOT_TWIN,
            "container_name": ROBOT,
            "image": "cw-test/driver:local",
            "outcome": "flapping",
            "restarts": 7,
            "parked_until": OFFLINE_SINCE + 600,
            "reason": "restart loop",
        },
        {
            "twin_uuid": "2b",
            "container_name": "cyberwave-driver-2b",
            "image": "cw-test/driver:local",
            "outcome": "held",
            "reason": "removed outside the edge core; recreated in 3 min",
        },
    ]
    document["orphans"] = ["cyberwave-driver-0ddba115"]
    write_state(config_dir, document)
    state = read_state(config_dir)
    views = [
        ContainerView.from_inspect(
            {"Id": name, "Name": name, "State": {"Status": "exited"}}
        )
        for name in (ROBOT, "cyberwave-driver-0ddba115")
    ]
    gathered = gather(environ(config_dir), online=False)
    return StatusReport(
        version=gathered.version,
        config_dir=gathered.config_dir,
        checks=gathered.checks,
        containers=container_rows(views, state, now=OFFLINE_SINCE),
        daemon=gathered.daemon,
    )


def test_screen_shows_flapping_held_orphan_and_outage(config_dir: Path) -> None:
    """One screen says what is wrong and what to do for each new case."""
    console = Console(record=True, width=400, color_system=None)

    render(flapping_report(config_dir), console)

    text = console.export_text()
    assert "exited, flapping" in text
    assert "it retries at 14:13 UTC, or send restart_edge_core" in text
    assert "missing, held" in text
    assert "recreated in 3 min" in text
    assert "exited, orphan" in text
    assert "docker rm cyberwave-driver-0ddba115" in text
    assert "unreachable since 2024-05-06 14:03 UTC" in text
    assert "3 driver log line(s) dropped" in text


def test_json_carries_the_new_fields(config_dir: Path) -> None:
    """``status --json`` keeps rows and daemon fields machine-readable."""
    document = json.loads(json.dumps(flapping_report(config_dir).to_json()))

    rows = {row["name"]: row for row in document["containers"]}
    assert rows[ROBOT]["outcome"] == "flapping"
    assert rows[ROBOT]["restarts"] == 7
    assert rows[ROBOT]["parked_until"] == OFFLINE_SINCE + 600
    assert rows[ROBOT]["ok"] is False
    assert rows["cyberwave-driver-0ddba115"]["ok"] is None
    assert document["daemon"]["offline_since"] == OFFLINE_SINCE
    assert document["daemon"]["log_lines_dropped"] == 3
    assert document["healthy"] is False


def test_status_command_reports_an_offline_daemon(config_dir: Path) -> None:
    """``status --json --offline`` prints the new rows and exits 1."""
    write_state(
        config_dir,
        with_fields(
            offline_since=OFFLINE_SINCE,
            restart={"request_id": "r-1", "phase": "completed", "at": SAVED_AT},
        ),
    )

    result = CliRunner().invoke(
        cli, ["status", "--json", "--offline"], env=environ(config_dir)
    )

    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    checks = {item["name"]: item for item in document["checks"]}
    assert checks["backend"]["ok"] is False
    assert checks["remote restart"]["ok"] is True
    assert document["daemon"]["restart"]["request_id"] == "r-1"


def _ended_pid() -> int:
    """The pid of a process that has already ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("phase", "ended"),
    [("stopped", "stopped"), ("running", "ended without stopping")],
)
def test_a_daemon_that_is_not_running_fails_status(
    config_dir: Path, phase: str, ended: str
) -> None:
    """Stopped or killed, a daemon that does not run leaves its drivers
    unsupervised: the row fails and ``status`` exits 1, though every
    container still runs."""
    write_state(config_dir, with_fields(pid=_ended_pid(), phase=phase))

    result = CliRunner().invoke(
        cli, ["status", "--json", "--offline"], env=environ(config_dir)
    )

    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    checks = {item["name"]: item for item in document["checks"]}
    assert checks["daemon"]["ok"] is False
    assert checks["daemon"]["detail"].startswith(f"not running ({ended}")
    assert "systemctl start" in checks["daemon"]["fix"]


def test_piped_status_keeps_whole_lines_without_padding(config_dir: Path) -> None:
    """Piped into a file or a ticket, every row is one line with no trailing
    blanks, however long its detail."""
    write_state(config_dir, with_fields(offline_since=OFFLINE_SINCE))

    result = CliRunner().invoke(cli, ["status", "--offline"], env=environ(config_dir))

    lines = result.output.splitlines()
    assert any(line.lstrip().startswith(("✓", "✗")) for line in lines), result.output
    assert all(line == line.rstrip() for line in lines), result.output
