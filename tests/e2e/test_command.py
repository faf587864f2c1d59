"""The installed command and the frozen binary work as an operator uses them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from edge_core import __version__
from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.images import ensure_driver_image

ENV_UUID = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ASSET = "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"


def environment(image: str) -> dict[str, Any]:
    return {
        "environment": {"uuid": ENV_UUID, "name": "e2e"},
        "twins": [
            {
                "uuid": TWIN,
                "name": "arm",
                "asset_uuid": ASSET,
                "environment_uuid": ENV_UUID,
                "metadata": {
                    "edge_fingerprint": "<FP>",
                    "drivers": {
                        "default": {
                            "docker_image": image,
                            "params": [
                                "-e",
                                "DRIVER_SCRIPT=echo INFO e2e up; sleep 3600",
                            ],
                        }
                    },
                },
            }
        ],
        "assets": [{"uuid": ASSET, "name": "SO-101", "metadata": {}}],
    }


def write_config(
    config_dir: Path,
    *,
    token: str,
    base_url: str,
    broker: Broker | None,
    fingerprint: str,
) -> None:
    config_dir.mkdir(mode=0o700, exist_ok=True)
    envs = {
        "CYBERWAVE_BASE_URL": base_url,
        "CYBERWAVE_DRIVER_PRIVILEGED": "false",
        "CYBERWAVE_MQTT_HOST": "127.0.0.1",
        "CYBERWAVE_MQTT_PORT": str(broker.port if broker else 1),
    }
    (config_dir / "credentials.json").write_text(
        json.dumps({"token": token, "envs": envs})
    )
    (config_dir / "environment.json").write_text(json.dumps({"uuid": ENV_UUID}))
    (config_dir / "fingerprint.json").write_text(
        json.dumps({"fingerprint": fingerprint})
    )


@pytest.fixture
def broker() -> Iterator[Broker]:
    server = Broker()
    server.start()
    yield server
    server.close()


def run_env(config_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        CYBERWAVE_EDGE_CONFIG_DIR=str(config_dir),
        CYBERWAVE_RECONCILE_INTERVAL_SECONDS="1",
        CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS="0.2",
        CYBERWAVE_MQTT_CONNECT_TIMEOUT="2",
    )


def test_version_line(edge_command: list[str]) -> None:
    """--version prints the one line packaging scripts parse."""
    out = subprocess.run([*edge_command, "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"cyberwave-edge-core, version {__version__}"


def test_help_lists_status(edge_command: list[str]) -> None:
    """--help describes the daemon and lists the status command."""
    out = subprocess.run([*edge_command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "status" in out.stdout
    assert "daemon" in out.stdout


def test_missing_credentials_is_one_line_and_exit_1(
    edge_command: list[str], tmp_path: Path
) -> None:
    """Without credentials.json the daemon exits 1 with one line naming the file."""
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    out = subprocess.run(
        edge_command,
        capture_output=True,
        text=True,
        env=run_env(config_dir),
        timeout=60,
    )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "credentials.json" in lines[0]
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in config_dir.iterdir()) == []


def test_status_json_against_emulator(
    edge_command: list[str],
    tmp_path: Path,
    emulator: Emulator,
    broker: Broker,
    fingerprint: str,
) -> None:
    """status --json checks the token and broker and writes nothing."""
    config_dir = tmp_path / "cfg"
    write_config(
        config_dir,
        token=emulator.token,
        base_url=emulator.url,
        broker=broker,
        fingerprint=fingerprint,
    )
    (config_dir / "fingerprint.json").unlink()
    before = sorted(p.name for p in config_dir.iterdir())
    out = subprocess.run(
        [*edge_command, "status", "--json"],
        capture_output=True,
        text=True,
        env=run_env(config_dir),
        timeout=60,
    )
    report = json.loads(out.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["credentials"]["ok"] is True
    assert checks["token"]["ok"] is True
    assert checks["mqtt"]["ok"] is True
    assert "not saved" in checks["fingerprint"]["detail"]
    assert sorted(p.name for p in config_dir.iterdir()) == before
    assert [r.path for r in emulator.requests(method="GET")] == [
        "/api/v1/users/workspaces"
    ]


def wait_for(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_daemon_starts_driver_and_leaves_it_running_on_sigterm(
    edge_command: list[str],
    tmp_path: Path,
    emulator: Emulator,
    broker: Broker,
    fingerprint: str,
    docker_client: docker.DockerClient,
) -> None:
    """The daemon starts the linked twin's driver; SIGTERM stops only itself."""
    image = "cw-test/driver:local"
    ensure_driver_image(docker_client, image)
    emulator.load_environment(environment(image), fingerprint)
    config_dir = tmp_path / "cfg"
    write_config(
        config_dir,
        token=emulator.token,
        base_url=emulator.url,
        broker=broker,
        fingerprint=fingerprint,
    )
    log_path = tmp_path / "edge.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            edge_command,
            env=run_env(config_dir),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:

            def running() -> list[Any]:
                return docker_client.containers.list(
                    filters={
                        "label": f"io.cyberwave.edge.fingerprint={fingerprint}",
                        "status": "running",
                    }
                )

            containers = wait_for(running, 60)
            assert [c.name for c in containers] == [f"cyberwave-driver-{TWIN[:8]}"]
            wait_for(lambda: "e2e up" in log_path.read_text(), 30)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
    assert code == 0
    assert running(), "the driver container must survive the edge core's stop"
    assert (config_dir / f"{TWIN}.json").exists()
    assert emulator.edge_by_fingerprint(fingerprint) is not None
