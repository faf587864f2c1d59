"""Following a real container's output as complete lines."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from edge_core.errors import ContainerError
from edge_core.runtime import ContainerState, DockerRuntime
from tests.support.specs import make_spec

pytestmark = pytest.mark.integration


def run_container(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    command: Sequence[str],
    *,
    suffix: str = "logs",
    extra: Sequence[str] = (),
) -> str:
    name = f"cw-{fingerprint}-{suffix}"
    runtime.create(
        make_spec(name, image=image, command=command, extra=extra),
        fingerprint=fingerprint,
    )
    runtime.start(name, fingerprint=fingerprint)
    return name


def wait_exited(runtime: DockerRuntime, name: str, fingerprint: str) -> None:
    view = runtime.wait_for_state(
        name,
        fingerprint=fingerprint,
        states={ContainerState.EXITED},
        timeout=30,
        interval=0.1,
    )
    assert view is not None


def test_backlog_merges_stdout_and_stderr_as_lines(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A finished container's output comes back as lines, tail respected."""
    script = (
        "for i in 1 2 3 4 5; do echo out $i; done; echo err 6 >&2; printf 'no newline'"
    )
    name = run_container(docker_runtime, fingerprint, test_image, ["sh", "-c", script])
    wait_exited(docker_runtime, name, fingerprint)

    lines = list(docker_runtime.logs(name, follow=False, fingerprint=fingerprint))
    assert sorted(lines) == sorted(
        [b"out 1", b"out 2", b"out 3", b"out 4", b"out 5", b"err 6", b"no newline"]
    )
    tail = list(
        docker_runtime.logs(name, follow=False, tail=2, fingerprint=fingerprint)
    )
    assert len(tail) == 2


def test_long_lines_arrive_whole(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A line longer than the engine's 16 KiB message size is one line."""
    script = (
        "i=0; while [ $i -lt 3000 ]; do printf 'abcdefghij'; i=$((i+1)); done; echo"
    )
    name = run_container(docker_runtime, fingerprint, test_image, ["sh", "-c", script])
    wait_exited(docker_runtime, name, fingerprint)
    lines = list(docker_runtime.logs(name, follow=False, fingerprint=fingerprint))
    assert lines == [b"abcdefghij" * 3000]


def test_follow_ends_when_the_container_stops(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Following yields lines as they come and ends when the container exits."""
    script = "echo first; sleep 1; echo second; sleep 1; echo third"
    name = run_container(docker_runtime, fingerprint, test_image, ["sh", "-c", script])
    lines = list(docker_runtime.logs(name, follow=True, fingerprint=fingerprint))
    assert lines == [b"first", b"second", b"third"]


def test_follow_stops_when_the_stop_event_is_set(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Setting the stop event ends a follow on a container that keeps running."""
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", "echo ready; sleep 3600"],
    )
    stop = threading.Event()
    stream = docker_runtime.logs(name, follow=True, stop_event=stop)
    assert next(stream) == b"ready"
    stop.set()
    assert list(stream) == []
    view = docker_runtime.inspect(name, fingerprint=fingerprint)
    assert view is not None and view.running


def test_reattach_with_since_has_no_duplicates(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Resuming from the last timestamp yields every later line exactly once."""
    script = "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); usleep 50000; done"
    name = run_container(docker_runtime, fingerprint, test_image, ["sh", "-c", script])

    first = docker_runtime.logs(name, follow=True, fingerprint=fingerprint)
    seen = [next(first) for _ in range(10)]
    first.close()
    assert first.last_timestamp is not None

    wait_exited(docker_runtime, name, fingerprint)
    second = docker_runtime.logs(
        name, follow=True, since=first.last_timestamp, fingerprint=fingerprint
    )
    seen.extend(second)
    assert seen == [f"line {i}".encode() for i in range(40)]


def test_tty_container_lines(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A container with a TTY gives the same complete lines without CR."""
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", "echo one; echo two"],
        extra=["--tty"],
    )
    wait_exited(docker_runtime, name, fingerprint)
    assert list(docker_runtime.logs(name, follow=False)) == [b"one", b"two"]


def test_logs_of_a_missing_container_is_an_error(
    docker_runtime: DockerRuntime, fingerprint: str
) -> None:
    """Asking for the logs of a container that does not exist says so."""
    with pytest.raises(ContainerError, match="does not exist"):
        docker_runtime.logs(f"cw-{fingerprint}-none", follow=False)
