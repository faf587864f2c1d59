"""Configuration files broken and mended under a running edge core.

An operator (or a half-finished install) replaces ``environment.json``
with garbage, ``{}``, an environment the backend does not know or a twin
selection naming twins that do not exist, then fixes it: the drivers keep
running, each problem is one log line (not one a cycle), ``status`` fails
the environment row with the file and the fix, and the fix is picked up
without a restart (protocol.md 7b item 13). ``credentials.json`` edited
while running (a rejected token, then a good one; an override to an image
that does not exist; a bad setting; garbage) never stops the edge core,
never shows a token, and ``restart_edge_core`` takes what it can. A
damaged ``desired-state.json`` and a file where ``run/`` belongs are
kept, and ``status`` says what they mean for the drivers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import (
    remove_all,
    running_names,
    wait_for_drivers,
)
from tests.support.edge import (
    ROOT,
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    check,
    container_name,
    example_environment,
    status_row,
    wait_keepalives,
)
from tests.support.loop import wait_edge_uuid

pytestmark = pytest.mark.integration

SCREEN_LINES = 40


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` as an editor or the installer does."""
    temp = path.with_name(f".{path.name}.edit")
    temp.write_text(text)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def status_text(edge: EdgeProcess) -> tuple[int, str]:
    """``status --offline`` as a person reads it: exit code and screen."""
    result = subprocess.run(
        [sys.executable, "-m", "edge_core", "status", "--offline"],
        env=edge.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout


def count(edge: EdgeProcess, text: str) -> int:
    return sum(1 for line in edge.log_lines() if text in line)


def test_environment_file_broken_four_ways_while_running_then_fixed(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    path = edge.config_dir / "environment.json"
    good = path.read_text()
    unknown_env = str(uuid.uuid4())
    breakages = [
        ("garbage", "\x00\x01 not json {", "is not valid JSON", None),
        ("empty object", "{}", 'field "uuid"', None),
        ("unknown environment", json.dumps({"uuid": unknown_env}), unknown_env, None),
    ]
    for what, content, expected, _ in breakages:
        write_atomically(path, content)
        line = edge.wait_for_log(expected, timeout=STARTUP_TIMEOUT)
        wait_keepalives(edge, emulator, 3)
        assert count(edge, expected) == 1, (what, edge.log_tail())
        assert "Traceback" not in edge.log_text()
        if what != "unknown environment":
            assert str(path) in line, line
        assert running_names(docker_client, fingerprint) == example.driver_names, what
        code, report = edge.status()
        environment = check(report, "environment")
        assert environment["ok"] is False, (what, environment)
        assert code == 1, what
        assert "cyberwave edge install" in (
            (environment["fix"] or "") + environment["detail"]
        ), environment
        exit_code, screen = status_text(edge)
        assert exit_code == 1
        assert len(screen.splitlines()) <= SCREEN_LINES, screen
        assert any(
            entry.split()[:2] == ["✗", "environment"] for entry in screen.splitlines()
        ), screen

    # Twins the backend does not know: the drivers do not depend on it.
    selection = {
        "uuid": example.environment_uuid,
        "twin_uuids": [str(uuid.uuid4()), str(uuid.uuid4())],
    }
    write_atomically(path, json.dumps(selection))
    edge.wait_for_log(f"{path} is usable again", timeout=STARTUP_TIMEOUT)
    wait_keepalives(edge, emulator, 3)
    assert running_names(docker_client, fingerprint) == example.driver_names
    code, report = edge.status()
    assert check(report, "environment")["detail"].endswith("(2 selected twin(s))")

    write_atomically(path, good)
    wait_keepalives(edge, emulator, 3)
    assert running_names(docker_client, fingerprint) == example.driver_names
    code, report = edge.status()
    assert check(report, "environment")["ok"] is True
    assert code == 0, report
    assert "Traceback" not in edge.log_text()
    assert edge.stop(timeout=15) == 0


REJECTED = "cw_rotated_but_rejected_5f1d0c"
ROTATED = "cw_rotated_and_accepted_9a7e42"
MISSING_IMAGE = "cw-test/no-such-driver:never-built"


def edit_credentials(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    write_atomically(path, json.dumps(document, indent=2))


def test_credentials_edited_while_running_then_a_remote_restart(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    edge_uuid = wait_edge_uuid(edge, emulator, fingerprint)
    edge.wait_for_log(f"listening for commands on edges/{edge_uuid}", timeout=10)
    path = edge.config_dir / "credentials.json"
    robot, overhead = container_name(example.robot), container_name(example.overhead)

    # The backend moves on to a new token; the file holds one it rejects.
    edit_credentials(path, token=REJECTED)
    emulator.set_tokens([ROTATED])
    edge.wait_for_log("could not download the environment", timeout=STARTUP_TIMEOUT)
    wait_for_discovers(edge, emulator, 3)
    assert running_names(docker_client, fingerprint) == example.driver_names
    assert count(edge, "could not download the environment") == 1, edge.log_tail()
    code, report = edge.status()
    assert code == 1
    backend = check(report, "backend")
    assert backend["detail"].startswith("refusing the token since"), backend
    assert "credentials.json" in backend["fix"]

    # The right token goes in: picked up without a restart.
    edit_credentials(path, token=ROTATED)
    edge.wait_for_log("API token changed", timeout=STARTUP_TIMEOUT)
    edge.wait_for_log("backend reachable again", timeout=STARTUP_TIMEOUT)
    wait_keepalives(edge, emulator, 2)

    # An override to an image nowhere to be found, and a bad setting.
    document = json.loads(path.read_text())
    document["driver_overrides"] = {example.overhead: MISSING_IMAGE}
    document["envs"]["CYBERWAVE_DOCKER_LOG_MAX_SIZE"] = "as big as it gets"
    write_atomically(path, json.dumps(document, indent=2))
    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for(
        lambda: any(
            a["uuid"] == answer["alert_uuid"] and a["status"] == "resolved"
            for a in emulator.alerts()
        ),
        timeout=STARTUP_TIMEOUT,
        what="the restart ended",
    )
    edge.wait_for(
        lambda: robot in running_names(docker_client, fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="the robot driver back",
    )
    wait_keepalives(edge, emulator, 2)
    assert edge.running
    assert overhead not in running_names(docker_client, fingerprint)
    code, report = edge.status()
    assert code == 1
    row = status_row(report, overhead)
    assert row["ok"] is False
    assert MISSING_IMAGE in row["note"]
    assert status_row(report, robot)["ok"] is True
    assert count(edge, 'CYBERWAVE_DOCKER_LOG_MAX_SIZE="as big as it gets"') == 1
    exit_code, screen = status_text(edge)
    assert exit_code == 1
    assert len(screen.splitlines()) <= SCREEN_LINES, screen

    log = edge.log_text()
    for secret in (REJECTED, ROTATED, emulator.token):
        assert secret not in log
        assert secret not in json.dumps(report)
        assert secret not in screen
    assert "Traceback" not in log
    assert edge.stop(timeout=15) == 0


def wait_for_discovers(edge: EdgeProcess, emulator: Emulator, count: int) -> None:
    """Wait for ``count`` more keepalive attempts, answered or refused."""
    target = len(emulator.requests("POST", r"/edges/discover$")) + count
    edge.wait_for(
        lambda: len(emulator.requests("POST", r"/edges/discover$")) >= target,
        timeout=STARTUP_TIMEOUT,
        what=f"{count} more keepalive attempts",
    )


@pytest.mark.parametrize("damage", ["garbage", "other environment"])
def test_saved_state_damaged_and_run_a_file_at_a_boot_without_backend(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    damage: str,
) -> None:
    """desired-state.json unusable or of another environment, and a file
    where run/ belongs: with the backend away the edge core starts no
    drivers from it, says why once, keeps the file and the notes, and
    status says what the drivers wait for."""
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    assert edge.stop(timeout=15) == 0
    remove_all(docker_client, fingerprint)
    saved = edge.config_dir / "desired-state.json"
    if damage == "garbage":
        saved.write_text('{"environment_uuid": "' + example.environment_uuid)
        expected = "desired-state.json is unusable"
        row = "desired-state.json is unusable"
    else:
        document = json.loads(saved.read_text())
        document["environment_uuid"] = str(uuid.uuid4())
        saved.write_text(json.dumps(document))
        expected = "persisted desired state is for environment"
        row = "desired-state.json is not used"
    damaged = saved.read_bytes()
    run = edge.config_dir / "run"
    shutil.rmtree(run)
    run.write_text("notes someone left\n")
    emulator.stop()

    edge.start()
    edge.wait_for_log(expected, timeout=STARTUP_TIMEOUT)
    edge.wait_for(
        lambda: (edge.state() or {}).get("phase") == "waiting_for_backend",
        timeout=STARTUP_TIMEOUT,
        what="the state file written",
    )
    time.sleep(3)  # a few 1 s cycles: the line must not repeat
    assert count(edge, expected) == 1, edge.log_tail()
    assert running_names(docker_client, fingerprint) == set()
    assert saved.read_bytes() == damaged
    [aside] = [p for p in edge.config_dir.iterdir() if p.name.startswith("run.")]
    assert aside.read_text() == "notes someone left\n"
    code, report = edge.status()
    assert code == 1
    backend = check(report, "backend")
    assert row in backend["detail"], backend
    assert "no desired-state.json yet" not in backend["detail"]
    exit_code, screen = status_text(edge)
    assert exit_code == 1
    assert len(screen.splitlines()) <= SCREEN_LINES, screen
    assert "Traceback" not in edge.log_text()
    assert edge.stop(timeout=15) == 0


def test_garbage_credentials_and_a_file_for_run_while_running_then_a_restart(
    emulator: Emulator,
    mqtt_broker: Broker,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """credentials.json broken under a running edge core is not fatal: a
    remote restart keeps the credentials read at start (one warning) and
    brings every driver back; the file is left as the operator wrote it; a
    file put where run/ belongs is moved aside, and status names the
    broken file and the fix."""
    emulator.use_broker(mqtt_broker.host, mqtt_broker.port)
    example = example_environment(fingerprint)
    edge = new_edge(example).start()
    wait_for_drivers(
        edge, docker_client, fingerprint, example.driver_names, what="the drivers"
    )
    edge_uuid = wait_edge_uuid(edge, emulator, fingerprint)
    edge.wait_for_log(f"listening for commands on edges/{edge_uuid}", timeout=10)
    path = edge.config_dir / "credentials.json"
    write_atomically(path, '{"token": "cw_half_written')
    broken = path.read_bytes()
    run = edge.config_dir / "run"
    shutil.rmtree(run)
    run.write_text("notes someone left\n")

    edge.wait_for(
        lambda: run.is_dir() and edge.state() is not None,
        timeout=STARTUP_TIMEOUT,
        what="run/ made again",
    )
    [aside] = [p for p in edge.config_dir.iterdir() if p.name.startswith("run.")]
    assert aside.read_text() == "notes someone left\n"

    answer = emulator.restart_core(edge_uuid).body
    edge.wait_for(
        lambda: any(
            a["uuid"] == answer["alert_uuid"] and a["status"] == "resolved"
            for a in emulator.alerts()
        ),
        timeout=STARTUP_TIMEOUT,
        what="the restart ended",
    )
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        example.driver_names,
        what="the drivers after the restart",
    )
    [alert] = [a for a in emulator.alerts() if a["uuid"] == answer["alert_uuid"]]
    assert alert["metadata"].get("phase") == "completed", alert
    assert count(edge, "keeping the credentials read at start") == 1
    [line] = [x for x in edge.log_lines() if "keeping the credentials" in x]
    assert str(path) in line and "is not valid JSON" in line
    assert path.read_bytes() == broken
    code, report = edge.status()
    assert code == 1
    credentials = check(report, "credentials")
    assert credentials["ok"] is False
    assert "cyberwave edge install" in credentials["detail"]
    exit_code, screen = status_text(edge)
    assert exit_code == 1
    assert len(screen.splitlines()) <= SCREEN_LINES, screen
    assert emulator.token not in edge.log_text()
    assert "Traceback" not in edge.log_text()
    assert edge.stop(timeout=15) == 0
