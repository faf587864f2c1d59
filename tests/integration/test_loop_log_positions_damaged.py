"""A damaged ``run/log-positions.json`` costs at most the cold-start tail.

An edge core forwards a counting driver, is stopped, and finds its read
positions file damaged when it starts again: garbage, empty, a directory,
or naming a container that no longer exists. The edge core keeps running,
the lines printed after it arrive, and the lines sent a second time are at
most the cold-start tail, never the driver's whole log (some lines printed
while no edge core ran are not sent, as at a first start).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import docker
import pytest

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.edge import STARTUP_TIMEOUT, EdgeFactory, container_name
from tests.support.loop import driver_environment, start_loop_edge
from tests.support.mqtt import Recorder, payloads

pytestmark = pytest.mark.integration

COUNTER_SCRIPT = "i=0; while true; do i=$((i+1)); echo INFO line $i; sleep 0.1; done"
LINE = re.compile(r"^INFO line (\d+)$")
TAIL = 5


def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b'{"cyberwave-driver-\x00\xff not json')
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("x")
    elif how == "stale":
        document = json.loads(path.read_text())
        for entry in document.values():
            entry["container_id"] = "0" * 64
        path.write_text(json.dumps(document))


@pytest.mark.parametrize("how", ["garbage", "empty", "directory", "stale"])
def test_a_damaged_positions_file_repeats_at_most_the_tail(
    how: str,
    emulator: Emulator,
    mqtt_broker: Broker,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
) -> None:
    environment = driver_environment(new_edge.fingerprint, [COUNTER_SCRIPT])
    [twin_uuid] = environment.twin_uuids
    topic = f"cyberwave/twin/{twin_uuid}/driverlog"
    env = {"CYBERWAVE_DRIVER_LOG_COLD_START_TAIL": str(TAIL)}

    with Recorder(mqtt_broker) as recorder:
        edge = start_loop_edge(new_edge, environment, docker_client, env=env)
        path = edge.config_dir / "run" / "log-positions.json"
        recorder.wait_for(
            lambda _seen: _highest(recorder, topic) >= 6 * TAIL,
            timeout=STARTUP_TIMEOUT,
            what="the first lines",
        )
        edge.stop(timeout=15)
        assert path.is_file(), "positions not saved at a clean stop"
        stopped_at = _highest(recorder, topic)
        _damage(path, how)

        edge.start()
        target = _printed(docker_client, twin_uuid) + 20
        recorder.wait_for(
            lambda _seen: _highest(recorder, topic) >= target,
            timeout=STARTUP_TIMEOUT,
            what=f"line {target}",
        )
        assert edge.running
        numbers = _numbers(recorder, topic)
        edge.stop(timeout=15)

    assert stopped_at > 3 * TAIL
    # Without a usable position only the cold-start tail of what was printed
    # meanwhile comes: some lines are missing, as after a first start.
    assert max(numbers) >= target
    repeated = len(numbers) - len(set(numbers))
    assert repeated <= TAIL, f"{repeated} lines sent twice"
    if how == "directory":
        assert path.is_dir()
        said = [line for line in edge.log_lines() if "log-positions.json" in line]
        assert len(said) == 1, said
        shutil.rmtree(path)
    else:
        assert path.is_file() and json.loads(path.read_text())


def _numbers(recorder: Recorder, topic: str) -> list[int]:
    found = []
    for payload in payloads(recorder.messages(topic)):
        match = LINE.match(str(payload.get("message", "")))
        if match:
            found.append(int(match.group(1)))
    return found


def _highest(recorder: Recorder, topic: str) -> int:
    return max(_numbers(recorder, topic), default=0)


def _printed(client: docker.DockerClient, twin_uuid: str) -> int:
    tail = client.containers.get(container_name(twin_uuid)).logs(tail=5).decode()
    numbers = [int(m.group(1)) for m in map(LINE.match, tail.splitlines()) if m]
    return max(numbers, default=0)
