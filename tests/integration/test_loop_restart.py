"""``restart_edge_core`` sent the way the web UI sends it (protocol.md 2.6, 1.8).

The emulator's restart-core endpoint creates the ``edge_core_restart``
alert and publishes the command on ``edges/{edge_uuid}/command`` through
Mosquitto. The daemon pushes twin files changed locally before it deletes
them, recreates every driver from a fresh download, and walks the alert
from ``in_progress`` to ``completed``; a repeated request id is ignored, a
second restart while one runs is refused on its own alert, malformed and
unknown commands change nothing, and with the backend away a twin file
whose push failed is kept and pushed later (7b item 22). The whole edge
core runs as a process against the backend emulator, Mosquitto and the
Docker engine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import container_ids
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    check,
    container_name,
)
from tests.support.loop import (
    DriverEnvironment,
    alert_posts,
    container_env,
    inspect,
    is_running,
    listening,
    listing_path,
    listings,
    mounted_twin_file,
    publish_raw,
    read_inside,
    restart_alert,
    restart_phase,
    twin_pushes,
    wait_cycles,
    write_inside,
)

pytestmark = pytest.mark.integration

EDITED_NAME = "Arm renamed by its driver before the restart"


def restart_ended(emulator: Emulator, alert_uuid: str, phase: str) -> bool:
    return restart_phase(emulator, alert_uuid) == phase


def assert_iso_utc(value: Any) -> None:
    assert isinstance(value, str) and value.endswith("+00:00"), value
    assert dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(0)


def hang_listings(edge: EdgeProcess, emulator: Emulator, environment_uuid: str) -> None:
    """Make every environment listing hang; return once the loop is stuck in one.

    A twin file edited from then on cannot be pushed by the loop's own
    sync, which runs after the listing.
    """
    before = listings(emulator, environment_uuid)
    emulator.fault(listing_path(environment_uuid), method="GET", hang=True)
    edge.wait_for(
        lambda: listings(emulator, environment_uuid) > before,
        timeout=STARTUP_TIMEOUT,
        what="the loop waiting on a listing",
    )


def edit_from_driver(client: docker.DockerClient, twin_uuid: str) -> None:
    """The driver renames its twin in its own twin file."""
    name, mounted = container_name(twin_uuid), mounted_twin_file(twin_uuid)
    document = read_inside(client, name, mounted)
    document["name"] = EDITED_NAME
    write_inside(client, name, mounted, document)


def test_restart_pushes_edits_then_recreates_every_driver(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A driver's unpushed edit is pushed before the twin files are deleted;
    every driver is recreated; the alert goes in_progress, then completed
    and resolved, with ISO UTC times; the same request id again does
    nothing."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge, environment = rig.edge, rig.environment
    edited_twin, other_twin = environment.twin_uuids
    before = container_ids(docker_client, new_edge.fingerprint)
    hang_listings(edge, emulator, environment.environment_uuid)
    edit_from_driver(docker_client, edited_twin)

    answer = emulator.restart_core(rig.edge_uuid)
    assert answer.status == 200, answer.body
    alert_uuid, request_id = answer.body["alert_uuid"], answer.body["request_id"]
    [push] = edge.wait_for(
        lambda: twin_pushes(emulator, edited_twin),
        timeout=STARTUP_TIMEOUT,
        what="the edited twin file pushed by the restart",
    )
    emulator.clear_faults()
    edge.wait_for(
        lambda: restart_ended(emulator, alert_uuid, "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the restart alert completed and resolved",
    )

    assert push.body["name"] == EDITED_NAME
    assert emulator.twins[edited_twin]["name"] == EDITED_NAME
    log = edge.log_text()
    edited_file = edge.config_dir / f"{edited_twin}.json"
    assert log.index(f"pushed twin {edited_twin}") < log.index(
        f"removed cached twin file {edited_file}"
    )

    # The alert: in_progress first, then completed, the backend's keys kept.
    phases = [
        request.body["metadata"]["phase"]
        for request in emulator.requests("PUT", rf"^/api/v1/alerts/{alert_uuid}$")
    ]
    assert phases == ["in_progress", "completed"]
    metadata = restart_alert(emulator, alert_uuid)["metadata"]
    assert metadata["request_id"] == request_id
    assert_iso_utc(metadata["in_progress_at"])
    assert_iso_utc(metadata["completed_at"])
    assert metadata["in_progress_at"] <= metadata["completed_at"]

    # Every driver recreated and running; twin files written again.
    after = edge.wait_for(
        lambda: _all_new_and_running(docker_client, before, environment),
        timeout=STARTUP_TIMEOUT,
        what="every driver recreated and running",
    )
    assert set(after) == set(before)
    lines = edge.log_lines()
    for twin_uuid in environment.twin_uuids:
        path = edge.config_dir / f"{twin_uuid}.json"
        # Removed, then written anew (inode numbers may be reused, so the
        # log says it, not the inode).
        removed = _index_of(lines, f"removed cached twin file {path}")
        assert _index_of(lines, f"wrote twin file {path}", after=removed) > removed
        assert json.loads(path.read_text())["uuid"] == twin_uuid
        assert len(alert_posts(emulator, "driver_starting", twin_uuid)) == 2
    assert json.loads(edited_file.read_text())["name"] == EDITED_NAME
    assert (edge.config_dir / "desired-state.json").is_file()
    restart = check(edge.status_json(), "remote restart")
    assert restart["ok"] is True
    assert request_id in restart["detail"]

    # The same request again: ignored.
    alert_puts = len(emulator.requests("PUT", rf"^/api/v1/alerts/{alert_uuid}$"))
    emulator.publish_command(
        "restart_edge_core",
        edge_uuid=rig.edge_uuid,
        request_id=request_id,
        alert_uuid=alert_uuid,
    )
    edge.wait_for_log(
        f"ignoring repeated restart_edge_core (request_id {request_id})",
        timeout=STARTUP_TIMEOUT,
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert container_ids(docker_client, new_edge.fingerprint) == after
    assert (
        len(emulator.requests("PUT", rf"^/api/v1/alerts/{alert_uuid}$")) == alert_puts
    )
    assert edge.log_text().count("restart_edge_core received") == 1
    assert other_twin in environment.twin_uuids


def _index_of(lines: list[str], text: str, *, after: int = -1) -> int:
    """The index of the first line after ``after`` holding ``text``."""
    for index, line in enumerate(lines):
        if index > after and text in line:
            return index
    raise AssertionError(f"no log line {text!r} after line {after}")


def _all_new_and_running(
    client: docker.DockerClient,
    before: Mapping[str, str],
    environment: DriverEnvironment,
) -> dict[str, str] | None:
    ids = container_ids(client, environment.fingerprint)
    if set(ids) != set(before) or any(ids[n] == before[n] for n in before):
        return None
    if not all(is_running(client, name) for name in environment.driver_names):
        return None
    return ids


def test_a_second_restart_while_one_runs_is_refused_on_its_own_alert(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """While a restart waits for the backend, a restart with another request
    id marks its alert failed with reason concurrent_restart and resolves
    it; the first restart still completes."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge, environment = rig.edge, rig.environment
    hang_listings(edge, emulator, environment.environment_uuid)

    first = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for_log(
        f"restart_edge_core received (request_id {first['request_id']})",
        timeout=STARTUP_TIMEOUT,
    )
    second = emulator.restart_core(rig.edge_uuid).body
    assert second["request_id"] != first["request_id"]
    edge.wait_for(
        lambda: restart_ended(emulator, second["alert_uuid"], "failed"),
        timeout=STARTUP_TIMEOUT,
        what="the second restart's alert failed and resolved",
    )
    refused = restart_alert(emulator, second["alert_uuid"])["metadata"]
    assert refused["reason"] == "concurrent_restart"
    assert refused["error"] == "another edge-core restart was already in progress"
    assert_iso_utc(refused["failed_at"])
    assert refused["request_id"] == second["request_id"]

    emulator.clear_faults()
    edge.wait_for(
        lambda: restart_ended(emulator, first["alert_uuid"], "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the first restart completed",
    )
    for twin_uuid in environment.twin_uuids:
        assert len(alert_posts(emulator, "driver_starting", twin_uuid)) == 2
    # Its alert tells the cloud; the log notes it once, nobody need act.
    refusals = [line for line in edge.log_lines() if "already in progress" in line]
    assert len(refusals) == 1 and "[INFO]" in refusals[0]
    assert second["request_id"] in refusals[0]


def test_malformed_and_unknown_commands_are_ignored(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A payload that is not a command object and a command the edge core
    does not know change nothing; each is one log line, a repeat of the
    same malformed payload adds none."""
    rig = listening(
        new_edge,
        emulator,
        mqtt_broker,
        docker_client,
        env={"CYBERWAVE_EDGE_LOG_LEVEL": "DEBUG"},
    )
    edge, environment = rig.edge, rig.environment
    before = container_ids(docker_client, new_edge.fingerprint)

    publish_raw(mqtt_broker, rig.topic, b"restart please {")
    edge.wait_for_log("ignoring malformed command", timeout=STARTUP_TIMEOUT)
    publish_raw(mqtt_broker, rig.topic, b'{"command": 42}')
    edge.wait_for(
        lambda: _count(edge, "ignoring malformed command") == 2,
        timeout=STARTUP_TIMEOUT,
        what="the second malformed command reported",
    )
    emulator.publish_command("Reboot_Everything", edge_uuid=rig.edge_uuid)
    edge.wait_for_log("'reboot_everything'", timeout=STARTUP_TIMEOUT)
    publish_raw(mqtt_broker, rig.topic, b"restart please {")
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    assert edge.running
    malformed = [
        line for line in edge.log_lines() if "ignoring malformed command" in line
    ]
    assert len(malformed) == 2, malformed
    assert all("[WARNING]" in line and rig.topic in line for line in malformed)
    assert _count(edge, "reboot_everything") == 1
    assert "restart_edge_core received" not in edge.log_text()
    assert container_ids(docker_client, new_edge.fingerprint) == before
    assert not [a for a in emulator.alerts() if a["alert_type"] == "edge_core_restart"]


def test_a_payload_nested_too_deep_to_parse_leaves_the_edge_listening(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """100 000 nested JSON arrays on the command topic are one malformed
    command; a restart sent right after it is carried out, no traceback."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge = rig.edge
    before = container_ids(docker_client, new_edge.fingerprint)

    publish_raw(mqtt_broker, rig.topic, b"[" * 100_000 + b"]" * 100_000)
    edge.wait_for_log("ignoring malformed command", timeout=STARTUP_TIMEOUT)
    answer = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for(
        lambda: restart_ended(emulator, answer["alert_uuid"], "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the restart sent after the nested payload",
    )

    assert container_ids(docker_client, new_edge.fingerprint) != before
    assert "Traceback" not in edge.log_text()
    assert (edge.state() or {}).get("mqtt_connected") is True


def test_a_restart_waits_for_a_hanging_backend_only_as_long_as_configured(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With every listing hanging, the restart's download gives up after
    the configured REST timeout (2 s here, after boot, not the longer boot
    limit), and the drivers come back from the saved desired state."""
    rig = listening(
        new_edge,
        emulator,
        mqtt_broker,
        docker_client,
        env={"CYBERWAVE_REST_TIMEOUT_SECONDS": "2", "CYBERWAVE_REST_RETRIES": "0"},
    )
    edge, environment = rig.edge, rig.environment
    before = container_ids(docker_client, new_edge.fingerprint)
    hang_listings(edge, emulator, environment.environment_uuid)

    answer = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for(
        lambda: restart_ended(emulator, answer["alert_uuid"], "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the restart completed without the backend",
    )
    edge.wait_for(
        lambda: _all_new_and_running(docker_client, before, environment),
        timeout=STARTUP_TIMEOUT,
        what="every driver recreated and running",
    )
    emulator.clear_faults()

    lines = edge.log_lines()
    removed = next(line for line in lines if "removed container" in line)
    fallback = next(
        line
        for line in lines
        if "could not download the environment during the restart" in line
    )
    assert "timed out" in fallback
    waited = _log_time(fallback) - _log_time(removed)
    # The attempt ends at the 2 s setting, far from the 30 s boot limit.
    assert waited < 15, (removed, fallback)


def test_a_restart_applies_an_edited_envs_block_to_the_drivers(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """envs added to credentials.json after boot reach the drivers the
    restart starts (a forwarded CYBERWAVE_* variable, the log rotation); a
    changed connection setting is named as applying at the next start."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge, environment = rig.edge, rig.environment
    name = container_name(environment.twin_uuids[0])
    path = edge.config_dir / "credentials.json"
    document = json.loads(path.read_text())
    document["envs"]["CYBERWAVE_DOCKER_LOG_MAX_SIZE"] = "1m"
    document["envs"]["CYBERWAVE_SITE_LABEL"] = "cell-7"
    document["envs"]["CYBERWAVE_DRIVER_LAUNCH_PARALLELISM"] = "2"
    path.write_text(json.dumps(document, indent=2))

    answer = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for(
        lambda: restart_ended(emulator, answer["alert_uuid"], "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the restart completed",
    )
    edge.wait_for(
        lambda: is_running(docker_client, name),
        timeout=STARTUP_TIMEOUT,
        what="the driver running again",
    )

    attrs = inspect(docker_client, name)
    assert attrs is not None
    assert container_env(attrs)["CYBERWAVE_SITE_LABEL"] == "cell-7"
    assert attrs["HostConfig"]["LogConfig"]["Config"]["max-size"] == "1m"
    [later] = [
        line
        for line in edge.log_lines()
        if "apply when the edge core starts again" in line
    ]
    assert "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM" in later
    assert "CYBERWAVE_DOCKER_LOG_MAX_SIZE" not in later


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_restart_cut_short_by_a_stop_ends_failed(
    sig: signal.Signals,
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """The edge core stopped (SIGTERM) or killed (SIGKILL) while a restart
    waits for a hanging backend: the restart's alert ends failed, saying
    so, at the stop or at the next start, and status shows it failed; the
    next run starts the drivers again."""
    rig = listening(new_edge, emulator, mqtt_broker, docker_client)
    edge, environment = rig.edge, rig.environment
    hang_listings(edge, emulator, environment.environment_uuid)
    answer = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for(
        lambda: not container_ids(docker_client, new_edge.fingerprint),
        timeout=STARTUP_TIMEOUT,
        what="the restart removing the drivers",
    )
    edge.stop(sig, timeout=15)
    emulator.clear_faults()
    if sig == signal.SIGTERM:
        assert restart_ended(emulator, answer["alert_uuid"], "failed")
        report = edge.status_json()
        assert "failed" in check(report, "remote restart")["detail"]

    edge.start()
    edge.wait_for(
        lambda: restart_ended(emulator, answer["alert_uuid"], "failed"),
        timeout=STARTUP_TIMEOUT,
        what="the cut-short restart's alert failed",
    )
    edge.wait_for(
        lambda: all(is_running(docker_client, n) for n in environment.driver_names),
        timeout=STARTUP_TIMEOUT,
        what="the drivers running again",
    )
    alert = restart_alert(emulator, answer["alert_uuid"])
    assert alert["metadata"]["error"] == "the edge core was stopped during the restart"
    detail = check(edge.status_json(), "remote restart")["detail"]
    assert "failed" in detail and answer["request_id"] in detail


def _log_time(line: str) -> float:
    stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    return stamp.replace(tzinfo=dt.UTC).timestamp()


def _count(edge: EdgeProcess, text: str) -> int:
    return sum(1 for line in edge.log_lines() if text in line)


def test_a_twin_file_whose_push_fails_during_restart_is_kept_and_pushed_later(
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """With the backend answering 503 to listings and twin updates, the
    restart keeps the edited twin file (its driver is recreated on it, from
    the saved desired state), deletes the others, and the edit is pushed
    once the backend answers again."""
    rig = listening(
        new_edge,
        emulator,
        mqtt_broker,
        docker_client,
        env={"CYBERWAVE_REST_RETRIES": "0"},
    )
    edge, environment = rig.edge, rig.environment
    edited_twin, other_twin = environment.twin_uuids
    before = container_ids(docker_client, new_edge.fingerprint)
    path = listing_path(environment.environment_uuid)
    emulator.fault(path, method="GET", status=503)
    emulator.fault(r"^/api/v1/twins/", method="PUT", status=503)
    edge.wait_for(
        lambda: any(r.status == 503 for r in emulator.requests("GET", path)),
        timeout=STARTUP_TIMEOUT,
        what="a listing refused with 503",
    )
    edit_from_driver(docker_client, edited_twin)
    edited_file = edge.config_dir / f"{edited_twin}.json"
    inode = os.stat(edited_file).st_ino

    answer = emulator.restart_core(rig.edge_uuid).body
    edge.wait_for(
        lambda: restart_ended(emulator, answer["alert_uuid"], "completed"),
        timeout=STARTUP_TIMEOUT,
        what="the restart completed without the backend",
    )
    refused = twin_pushes(emulator, edited_twin)
    assert refused and all(r.status == 503 for r in refused)
    log = edge.log_text()
    assert f"keeping twin file {edited_file}" in log
    assert f"removed cached twin file {edited_file}" not in log
    assert f"removed cached twin file {edge.config_dir / (other_twin + '.json')}" in log
    assert "restarting the drivers of the saved desired state" in log
    assert os.stat(edited_file).st_ino == inode
    assert json.loads(edited_file.read_text())["name"] == EDITED_NAME
    after = edge.wait_for(
        lambda: _all_new_and_running(docker_client, before, environment),
        timeout=STARTUP_TIMEOUT,
        what="every driver recreated and running",
    )
    inside = read_inside(
        docker_client, container_name(edited_twin), mounted_twin_file(edited_twin)
    )
    assert inside["name"] == EDITED_NAME

    emulator.clear_faults()
    edge.wait_for(
        lambda: any(r.status == 200 for r in twin_pushes(emulator, edited_twin)),
        timeout=STARTUP_TIMEOUT,
        what="the kept edit pushed once the backend answers",
    )
    assert emulator.twins[edited_twin]["name"] == EDITED_NAME
    assert container_ids(docker_client, new_edge.fingerprint) == after
