"""The startup probe against real containers (protocol 4.5 step 5)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge_core.runtime import ContainerState, DockerRuntime, ProbeResult
from tests.support.docker_helpers import run_container, wait_exited

pytestmark = pytest.mark.integration


def launch(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    command: Sequence[str],
    *,
    extra: Sequence[str] = (),
    timeout: float = 30,
    interval: float = 0.2,
) -> ProbeResult:
    """Create, start and probe one container with ``command``."""
    name = run_container(
        runtime, fingerprint, image, command, suffix="probe", extra=extra
    )
    return runtime.probe(
        name, fingerprint=fingerprint, timeout=timeout, interval=interval
    )


def test_running_container_succeeds(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A driver that keeps running is a successful start."""
    result = launch(docker_runtime, fingerprint, test_image, ["sleep", "3600"])
    assert result.ok
    assert result.state is ContainerState.RUNNING


def test_clean_exit_succeeds(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A driver that exits 0 counts as started."""
    result = launch(docker_runtime, fingerprint, test_image, ["sh", "-c", "echo done"])
    assert result.ok
    assert result.exit_code == 0


def test_exit_with_code_fails_with_its_last_lines(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Exit code 3 fails the probe with the code and the container's output."""
    result = launch(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", "echo INFO booting >&2; echo ERROR no serial port >&2; exit 3"],
        interval=1.0,
    )
    assert not result.ok
    assert result.exit_code == 3
    assert result.phase == "docker_start_failed"
    assert result.log_tail == ("INFO booting", "ERROR no serial port")
    assert "ERROR no serial port" in result.detail


def test_exited_after_restarts_is_waited_on_until_the_deadline(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Exited with a restart count means Docker is still trying: wait, then time out."""
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", "echo crash; exit 1"],
        suffix="gave-up",
        extra=["--restart", "on-failure:1"],
    )
    settled = wait_exited(docker_runtime, name, fingerprint)
    while settled.restart_count == 0:
        settled = wait_exited(docker_runtime, name, fingerprint)
    assert settled.restart_count == 1

    result = docker_runtime.probe(
        name, fingerprint=fingerprint, timeout=2, interval=0.2
    )
    assert not result.ok
    assert result.phase == "container_startup_timeout"
    assert result.exit_code == 1
    assert result.restart_count == 1
    assert "crash" in result.log_tail


def test_probe_of_a_missing_container_fails(
    docker_runtime: DockerRuntime, fingerprint: str
) -> None:
    """Probing a container that does not exist is a failure, not an exception."""
    result = docker_runtime.probe(
        f"cw-{fingerprint}-none", fingerprint=fingerprint, timeout=1, interval=0.1
    )
    assert not result.ok
    assert "disappeared" in result.detail
