"""Twins linked, unlinked and edited while the edge core runs.

Every cycle the loop downloads the environment once and runs its drivers
against it: a twin newly linked to this edge gets its driver within a few
cycles, an edited driver profile recreates only that driver, a twin whose
metadata cannot become a container fails alone, and the driver of a twin
that is no longer linked (or no longer exists) is left exactly as it is
and reported as an orphan (spec.md "Driver revival and orphan
containers"). The whole edge core runs as a process against the backend
emulator, Mosquitto and the Docker engine.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import docker
import pytest

from edge_core.model.spec import LABEL_SPEC_HASH
from tests.emulator.server import Emulator
from tests.support.docker_helpers import running_names
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcess,
    container_name,
    status_row,
    status_rows,
)
from tests.support.loop import (
    IDLE_SCRIPT,
    alerts_of,
    container_env,
    driver_environment,
    driver_profile,
    inspect,
    is_running,
    start_loop_edge,
    wait_cycles,
)

pytestmark = pytest.mark.integration


def identity(client: docker.DockerClient, name: str) -> tuple[str, str]:
    """A container's id and start time: both stay when nobody touched it."""
    attrs = inspect(client, name)
    assert attrs is not None, f"{name} does not exist"
    return attrs["Id"], attrs["State"]["StartedAt"]


def orphans(edge: EdgeProcess) -> set[str]:
    """The containers the daemon's state file reports as orphans."""
    return set((edge.state() or {}).get("orphans") or ())


def test_unlinked_and_deleted_twins_leave_orphans_untouched(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A twin whose metadata no longer carries this edge's fingerprint, and a
    twin deleted from the backend, leave their containers running untouched
    (not removed, not restarted) and listed as orphans by status; stopping an
    orphan does not revive it; the remaining driver is not touched."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT] * 3)
    unlinked_twin, deleted_twin, kept_twin = environment.twin_uuids
    unlinked, deleted, kept = (
        container_name(twin_uuid) for twin_uuid in environment.twin_uuids
    )
    edge = start_loop_edge(new_edge, environment, docker_client)
    before = {name: identity(docker_client, name) for name in environment.driver_names}

    metadata = copy.deepcopy(environment.twin(unlinked_twin)["metadata"])
    del metadata["edge_fingerprint"]
    emulator.edit_twin(unlinked_twin, {"metadata": metadata})
    emulator.backend.remove_twin(deleted_twin)
    edge.wait_for(
        lambda: orphans(edge) == {unlinked, deleted},
        timeout=STARTUP_TIMEOUT,
        what="both containers reported as orphans",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    for name in environment.driver_names:
        assert identity(docker_client, name) == before[name], name
    assert running_names(docker_client, fingerprint) == environment.driver_names
    report = edge.status_json()
    for name in (unlinked, deleted):
        row = status_row(report, name)
        assert row["outcome"] == "orphan", row
        assert row["state"] == "running"
        assert "no longer linked" in row["note"]
        assert f"docker rm -f {name}" in row["note"]
        assert row["ok"] is None
    assert status_row(report, kept)["ok"] is True

    # A stopped orphan stays stopped: revival is only for linked twins.
    docker_client.api.stop(unlinked, timeout=1)
    wait_cycles(edge, emulator, environment.environment_uuid, 3)
    stopped = inspect(docker_client, unlinked)
    assert stopped is not None and stopped["Id"] == before[unlinked][0]
    assert stopped["State"]["Status"] == "exited"
    assert status_row(edge.status_json(), unlinked)["outcome"] == "orphan"
    assert identity(docker_client, kept) == before[kept]
    assert identity(docker_client, deleted) == before[deleted]
    for twin_uuid in (unlinked_twin, deleted_twin, kept_twin):
        assert not alerts_of(emulator, twin_uuid, "driver_health")
    assert orphans(edge) == {unlinked, deleted}


def test_a_twin_linked_while_running_gets_its_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A twin linked to this edge in the backend (with an asset the edge core
    has not seen yet) gets its driver within a few cycles, announced by a
    starting card that is resolved; the running driver is not touched."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT])
    [first_twin] = environment.twin_uuids
    first = container_name(first_twin)
    edge = start_loop_edge(new_edge, environment, docker_client)
    before = identity(docker_client, first)

    asset = {
        "uuid": str(uuid.uuid4()),
        "name": "Second robot",
        "registry_id": "cyberwave/second-robot",
        "metadata": {},
        "capabilities": {"sensors": []},
    }
    emulator.backend.set_asset(asset)
    twin = environment.new_twin(
        "echo INFO linked later; while true; do sleep 3600; done",
        name="Linked later",
    )
    twin["asset_uuid"] = asset["uuid"]
    emulator.backend.set_twin(twin)
    name = container_name(twin["uuid"])

    edge.wait_for(
        lambda: is_running(docker_client, name),
        timeout=STARTUP_TIMEOUT,
        what="the newly linked twin's driver",
    )
    edge.wait_for(
        lambda: alerts_of(emulator, twin["uuid"], "driver_starting", status="resolved"),
        timeout=STARTUP_TIMEOUT,
        what="its starting card resolved",
    )
    assert identity(docker_client, first) == before
    document = (edge.config_dir / f"{twin['uuid']}.json").read_text()
    assert asset["uuid"] in document
    assert emulator.requests("GET", rf"^/api/v1/assets/{asset['uuid']}$")


def test_an_edited_driver_profile_recreates_only_that_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Adding ``-e FOO=bar`` to one twin's driver params recreates its
    container (new id, new spec hash, FOO in its environment); the other
    driver keeps its container."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    edited_twin, other_twin = environment.twin_uuids
    edited, other = container_name(edited_twin), container_name(other_twin)
    edge = start_loop_edge(new_edge, environment, docker_client)
    old = inspect(docker_client, edited)
    assert old is not None
    other_before = identity(docker_client, other)

    metadata = copy.deepcopy(environment.twin(edited_twin)["metadata"])
    metadata["drivers"] = driver_profile(IDLE_SCRIPT, extra=["-e", "FOO=bar"])
    emulator.edit_twin(edited_twin, {"metadata": metadata})

    def recreated() -> dict[str, Any] | None:
        attrs = inspect(docker_client, edited)
        if attrs is None or attrs["Id"] == old["Id"]:
            return None
        return attrs if attrs["State"]["Status"] == "running" else None

    new = edge.wait_for(
        recreated, timeout=STARTUP_TIMEOUT, what="the edited driver recreated"
    )
    assert container_env(new)["FOO"] == "bar"
    assert "FOO" not in container_env(old)
    old_hash = old["Config"]["Labels"][LABEL_SPEC_HASH]
    assert new["Config"]["Labels"][LABEL_SPEC_HASH] != old_hash
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert identity(docker_client, other) == other_before
    assert identity(docker_client, edited) == (new["Id"], new["State"]["StartedAt"])


def test_a_twin_with_broken_metadata_fails_alone(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A twin linked while running with driver params that cannot become a
    container gets none, and a running driver whose params are edited into
    that shape keeps its container untouched without being called an orphan;
    status names each twin and the reason, each gets a start-failure alert,
    and the healthy driver is untouched."""
    environment = driver_environment(fingerprint, [IDLE_SCRIPT, IDLE_SCRIPT])
    good_twin, edited_twin = environment.twin_uuids
    good, edited = container_name(good_twin), container_name(edited_twin)
    edge = start_loop_edge(new_edge, environment, docker_client)
    before = {name: identity(docker_client, name) for name in (good, edited)}

    broken = environment.new_twin(IDLE_SCRIPT, name="Badly configured gripper")
    broken["metadata"]["drivers"]["default"]["params"] = ["-e", "NOT A PAIR"]
    emulator.backend.set_twin(broken)
    metadata = copy.deepcopy(environment.twin(edited_twin)["metadata"])
    metadata["drivers"]["default"]["params"] = ["-e", "NOT A PAIR"]
    emulator.edit_twin(edited_twin, {"metadata": metadata})

    def failure_rows() -> dict[str, dict[str, Any]] | None:
        report = edge.status_json()
        rows = {
            twin_uuid: [
                row for row in status_rows(report, twin_uuid) if not row["name"]
            ]
            for twin_uuid in (broken["uuid"], edited_twin)
        }
        if not all(rows.values()):
            return None
        return {twin_uuid: found[0] for twin_uuid, found in rows.items()}

    rows = edge.wait_for(
        failure_rows, timeout=STARTUP_TIMEOUT, what="status to name both twins"
    )
    for twin_uuid, row in rows.items():
        assert row["state"] == "not running", row
        assert "'NOT A PAIR'" in row["note"]
        assert "KEY=value" in row["note"]
        assert row["ok"] is False
        assert any(twin_uuid in line for line in edge.error_lines())
        edge.wait_for(
            lambda uid=twin_uuid: alerts_of(emulator, uid, "driver_start_failure"),
            timeout=STARTUP_TIMEOUT,
            what=f"a driver_start_failure alert for {twin_uuid}",
        )
    wait_cycles(edge, emulator, environment.environment_uuid, 2)

    assert inspect(docker_client, container_name(broken["uuid"])) is None
    assert {name: identity(docker_client, name) for name in before} == before
    assert edited not in set((edge.state() or {}).get("orphans") or ())
    report = edge.status_json()
    assert status_row(report, edited)["outcome"] != "orphan"
    assert status_row(report, good)["ok"] is True
    assert "no longer linked" not in edge.log_text()


def test_a_lookalike_twin_never_takes_over_a_running_driver(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Two twins whose uuids start alike want one container name. The
    driver running first keeps it when the other is linked (smaller uuid
    or not), and when that other twin is unlinked again nothing is
    recreated: the container was never handed over."""
    prefix = uuid.uuid4().hex[:8]
    big = f"{prefix}-ffff-4fff-8fff-{uuid.uuid4().hex[:12]}"
    small = f"{prefix}-0000-4000-8000-{uuid.uuid4().hex[:12]}"
    environment = driver_environment(fingerprint, [])
    environment.fixture["twins"].append(
        environment.new_twin(IDLE_SCRIPT, twin_uuid=big)
    )
    edge = start_loop_edge(new_edge, environment, docker_client)
    name = container_name(big)
    before = identity(docker_client, name)

    lookalike = environment.new_twin(IDLE_SCRIPT, twin_uuid=small)
    emulator.backend.set_twin(lookalike)
    edge.wait_for(
        lambda: "already the driver of twin" in edge.log_text(),
        timeout=STARTUP_TIMEOUT,
        what="the lookalike twin's failure",
    )
    wait_cycles(edge, emulator, environment.environment_uuid, 2)
    assert identity(docker_client, name) == before
    assert alerts_of(emulator, small, "driver_start_failure")

    metadata = copy.deepcopy(lookalike["metadata"])
    metadata["edge_fingerprint"] = "another-edge-000000000000"
    emulator.edit_twin(small, {"metadata": metadata})
    wait_cycles(edge, emulator, environment.environment_uuid, 3)

    assert identity(docker_client, name) == before
    attrs = inspect(docker_client, name)
    assert attrs is not None
    assert attrs["Config"]["Labels"]["io.cyberwave.edge.twin"] == big
    assert orphans(edge) == set()
