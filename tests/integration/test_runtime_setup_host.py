"""scripts/setup-host: engine start, mosquitto check and venv install decisions.

The script runs for real, from a copy of ``scripts/`` in a temporary
repository, with stand-ins for the commands whose real effect would reach
outside the test (``dockerd``, ``docker``, ``mosquitto``, ``apt-get``,
``id`` and ``ps``) placed first on ``PATH``. Each stand-in records its
calls, so the tests check what the script decided to do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def write_tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


class Host:
    """A temporary repository and a PATH of recording stand-ins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "repo"
        self.bin = root / "bin"
        self.calls = root / "calls.log"
        self.engine_flag = root / "engine-up"
        shutil.copytree(REPO / "scripts", self.repo / "scripts")
        (self.repo / "pyproject.toml").write_text('[project]\nname = "demo"\n')
        self.bin.mkdir()
        venv_bin = self.repo / ".venv" / "bin"
        venv_bin.mkdir(parents=True)
        write_tool(venv_bin, "python", f'echo "python $*" >> {self.calls}\n')
        self.mark_installed()
        record = f'echo "$(basename "$0") $*" >> {self.calls}\n'
        write_tool(self.bin, "docker", f"{record}[ -f {self.engine_flag} ]\n")
        write_tool(self.bin, "dockerd", record)
        write_tool(self.bin, "apt-get", record + "exit 1\n")
        write_tool(self.bin, "systemctl", record + "exit 1\n")
        write_tool(self.bin, "id", "echo 0\n")
        write_tool(self.bin, "ps", "echo init\n")
        write_tool(
            self.bin,
            "mosquitto",
            'echo "mosquitto version 2.0.11"; echo; echo "usage: mosquitto"; exit 3\n',
        )
        write_tool(self.bin, "docker-registry", record)

    def mark_installed(self) -> None:
        digest = hashlib.sha256((self.repo / "pyproject.toml").read_bytes()).hexdigest()
        (self.repo / ".venv" / ".setup-host-stamp").write_text(digest + "\n")

    def engine_comes_up_when_started(self) -> None:
        write_tool(
            self.bin,
            "dockerd",
            f'echo "dockerd $*" >> {self.calls}\ntouch {self.engine_flag}\n',
        )

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "CW_DOCKERD_LOG": str(self.root / "dockerd.log"),
            "CW_ENGINE_WAIT_SECONDS": "3",
            **env,
        }
        return subprocess.run(
            [str(self.repo / "scripts" / "setup-host")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def called(self) -> list[str]:
        if not self.calls.exists():
            return []
        return self.calls.read_text().splitlines()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A prepared temporary repository with recording stand-ins."""
    return Host(tmp_path)


def test_ready_host_needs_no_action(host: Host) -> None:
    """With everything installed and running, the script does and says nothing."""
    host.engine_flag.touch()
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert not any(
        call.startswith(("apt-get", "dockerd", "python")) for call in host.called()
    )


def test_stopped_engine_is_started_in_the_background(host: Host) -> None:
    """Without systemd, dockerd is started and the script waits until it answers."""
    host.engine_comes_up_when_started()
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert "starting the Docker engine (dockerd in the background" in result.stdout
    assert "the Docker engine is running" in result.stdout
    assert "dockerd " in host.called()


def test_engine_that_never_comes_up_fails_loudly(host: Host) -> None:
    """An engine still down after the wait is one clear error line and exit 1."""
    result = host.run(CW_ENGINE_WAIT_SECONDS="2")
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1
    assert "did not come up within 2 s" in errors[0]


def test_broken_mosquitto_fails_loudly(host: Host) -> None:
    """A mosquitto binary that does not report its version fails the script."""
    host.engine_flag.touch()
    write_tool(host.bin, "mosquitto", "exit 1\n")
    result = host.run()
    assert result.returncode == 1
    assert "mosquitto" in result.stderr
    assert "does not run" in result.stderr


def test_changed_pyproject_reinstalls_once(host: Host) -> None:
    """A new pyproject.toml triggers one pip install; the next run does none."""
    host.engine_flag.touch()
    (host.repo / "pyproject.toml").write_text('[project]\nname = "demo2"\n')

    first = host.run()
    second = host.run()

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    installs = [call for call in host.called() if "pip install" in call]
    assert len(installs) == 1
    assert "-e .[dev]" in installs[0]
    assert "installing the project into .venv" in first.stdout
    assert second.stdout == ""
