"""How the whole edge core treats broken configuration (protocol.md 7b item 13).

An unusable ``credentials.json`` or a token the backend rejects is fatal:
one clear line and a non-zero exit, with nothing in the config dir
touched. A malformed ``environment.json`` is not: the daemon says so once,
``status`` shows it, and fixing the file later starts the drivers.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import docker
import pytest

from edge_core.model.spec import LABEL_FINGERPRINT
from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.docker_helpers import wait_for_drivers
from tests.support.edge import (
    STARTUP_TIMEOUT,
    EdgeFactory,
    EdgeProcesses,
    backend_envs,
    check,
    example_environment,
    tree_snapshot,
    write_config,
)

pytestmark = pytest.mark.integration

EXIT_TIMEOUT = 30.0


VALID_ENVS = {
    "CYBERWAVE_BASE_URL": "http://127.0.0.1:9",
    "CYBERWAVE_MQTT_HOST": "127.0.0.1",
    "CYBERWAVE_MQTT_PORT": "9",
}
BAD_CREDENTIALS: list[tuple[str, str | None, str | None]] = [
    # (id, file content or None for no file, the field the line must name)
    ("missing", None, None),
    ("not-json", '{"token": "cw_abc", ', None),
    ("empty-token", json.dumps({"token": "  ", "envs": VALID_ENVS}), "token"),
    ("token-not-text", json.dumps({"token": 42, "envs": VALID_ENVS}), "token"),
    ("envs-not-object", json.dumps({"token": "cw_abc", "envs": ["x"]}), "envs"),
]


@pytest.mark.parametrize(
    ("content", "field"),
    [pytest.param(content, field, id=name) for name, content, field in BAD_CREDENTIALS],
)
def test_unusable_credentials_stop_with_one_line_and_touch_nothing(
    edges: EdgeProcesses, tmp_path: Path, content: str | None, field: str | None
) -> None:
    """An unusable credentials.json ends the edge core with a non-zero code
    and one stderr line naming the file (and field), leaving every file as
    it was."""
    config_dir = write_config(
        tmp_path / "config",
        token="cw_placeholder",
        envs=VALID_ENVS,
        environment_uuid="5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
        fingerprint="test-credentials",
    )
    credentials = config_dir / "credentials.json"
    if content is None:
        credentials.unlink()
    else:
        credentials.write_text(content)
    before = tree_snapshot(config_dir)

    edge = edges.new(config_dir).start()
    code = edge.wait_exit(EXIT_TIMEOUT)

    assert code != 0
    lines = [line for line in edge.log_lines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(credentials) in lines[0]
    if field is not None:
        assert f'field "{field}"' in lines[0]
    assert edge.stdout_text() == ""
    assert tree_snapshot(config_dir) == before


def test_rejected_token_exits_1_with_one_clear_line(
    emulator: Emulator,
    mqtt_broker: Broker,
    edges: EdgeProcesses,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """A token answered 401 at boot ends the edge core with exit code 1, one
    error line naming the credentials file, and status saying why."""
    config_dir = write_config(
        tmp_path / "config",
        token="cw_rejected_token_0123456789",
        envs=backend_envs(
            emulator.url, broker_host=mqtt_broker.host, broker_port=mqtt_broker.port
        ),
        environment_uuid="5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
    )
    edge = edges.new(config_dir).start()

    assert edge.wait_exit(EXIT_TIMEOUT) == 1
    errors = edge.error_lines()
    assert len(errors) == 1, edge.log_text()
    assert str(config_dir / "credentials.json") in errors[0]
    assert "HTTP 401" in errors[0]
    assert "cyberwave edge install" in errors[0]
    assert "cw_rejected_token_0123456789" not in edge.log_text()
    rejected = emulator.requests("GET", r"^/api/v1/users/workspaces$")
    assert [r.status for r in rejected] == [401]
    assert not emulator.requests("POST", r"^/api/v1/edges")

    # The fingerprint was computed and saved world-readable before the check.
    saved = config_dir / "fingerprint.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    fingerprint = json.loads(saved.read_text())["fingerprint"]
    assert not docker_client.api.containers(
        all=True, filters={"label": f"{LABEL_FINGERPRINT}={fingerprint}"}
    )
    daemon = check(edge.status_json(), "daemon")
    assert daemon["ok"] is False
    assert "token was rejected" in daemon["detail"]


MALFORMED_ENVIRONMENTS: list[tuple[str, str | None, str | None]] = [
    ("not-json", "{uuid: nope", None),
    ("uuid-not-uuid", json.dumps({"uuid": "cell-2"}), "uuid"),
    ("twins-not-list", None, "twin_uuids"),
]


@pytest.mark.parametrize(
    ("content", "field"),
    [pytest.param(c, f, id=name) for name, c, f in MALFORMED_ENVIRONMENTS],
)
def test_malformed_environment_file_waits_for_a_fix(
    emulator: Emulator,
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    docker_client: docker.DockerClient,
    content: str | None,
    field: str | None,
) -> None:
    """A malformed environment.json is reported once by file and field and
    shown by status; once fixed, the next cycles start the drivers."""
    example = example_environment(fingerprint)
    edge = new_edge(example)
    path = edge.config_dir / "environment.json"
    good = path.read_text()
    if content is None:
        content = json.dumps({"uuid": example.environment_uuid, "twin_uuids": "all"})
    path.write_text(content)

    edge.start()
    line = edge.wait_for_log("environment.json", timeout=STARTUP_TIMEOUT)
    assert "[WARNING]" in line
    assert str(path) in line
    if field is not None:
        assert f'field "{field}"' in line
    # Re-read every cycle, reported once.
    edge.wait_for(
        lambda: len(emulator.requests("POST", r"/edges/discover$")) >= 3,
        timeout=STARTUP_TIMEOUT,
        what="a few keepalive cycles",
    )
    assert sum(1 for entry in edge.log_lines() if str(path) in entry) == 1
    assert not emulator.requests("GET", r"^/api/v1/environments/")
    report = edge.status_json()
    environment = check(report, "environment")
    assert environment["ok"] is False
    assert str(path) in environment["detail"]
    assert check(report, "daemon")["ok"] is True
    assert edge.running

    write_atomically(path, good)
    wait_for_drivers(
        edge,
        docker_client,
        fingerprint,
        example.driver_names,
        what="the drivers after the fix",
    )
    assert check(edge.status_json(), "environment")["ok"] is True


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` as the installer does, so no cycle reads half a file."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.chmod(temp, 0o600)
    os.replace(temp, path)
