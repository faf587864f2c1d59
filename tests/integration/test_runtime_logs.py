"""Following a real container's output as complete lines."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import docker
import pytest

from edge_core.errors import ContainerError
from edge_core.runtime import DockerRuntime
from edge_core.runtime.logs import MAX_LINE_BYTES
from tests.support.docker_helpers import run_container, wait_exited

pytestmark = pytest.mark.integration

# With a TTY the engine sends the output unframed, each 16 KiB message of a
# long line after its own copy of the line's timestamp; the lines must not
# differ from those of a container without one.
BOTH_MODES = pytest.mark.parametrize(
    "extra", [pytest.param((), id="plain"), pytest.param(("--tty",), id="tty")]
)


def run_script(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    script: str,
    *,
    extra: Sequence[str] = (),
) -> str:
    """Create and start a container running ``sh -c script``; its name."""
    return run_container(
        runtime, fingerprint, image, ["sh", "-c", script], suffix="logs", extra=extra
    )


def finished_lines(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    script: str,
    *,
    extra: Sequence[str] = (),
) -> tuple[str, list[bytes]]:
    """Run ``script`` to its end; the container's name and its whole output."""
    name = run_script(runtime, fingerprint, image, script, extra=extra)
    wait_exited(runtime, name, fingerprint)
    return name, list(runtime.logs(name, follow=False, fingerprint=fingerprint))


def test_backlog_merges_stdout_and_stderr_as_lines(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A finished container's output comes back as lines, tail respected."""
    script = (
        "for i in 1 2 3 4 5; do echo out $i; done; echo err 6 >&2; printf 'no newline'"
    )
    name, lines = finished_lines(docker_runtime, fingerprint, test_image, script)
    assert sorted(lines) == sorted(
        [b"out 1", b"out 2", b"out 3", b"out 4", b"out 5", b"err 6", b"no newline"]
    )
    tail = list(
        docker_runtime.logs(name, follow=False, tail=2, fingerprint=fingerprint)
    )
    assert len(tail) == 2


@BOTH_MODES
def test_long_lines_arrive_whole(
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
    extra: Sequence[str],
) -> None:
    """A line longer than the engine's 16 KiB message size is one line, with
    no engine timestamp inside it, and the line after it is whole too."""
    script = (
        "i=0; while [ $i -lt 3000 ]; do printf 'abcdefghij'; i=$((i+1)); done; "
        "echo; echo after"
    )
    _, lines = finished_lines(
        docker_runtime, fingerprint, test_image, script, extra=extra
    )
    assert lines == [b"abcdefghij" * 3000, b"after"]


@BOTH_MODES
def test_follow_ends_when_the_container_stops(
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
    extra: Sequence[str],
) -> None:
    """Following yields lines as they come and ends when the container exits."""
    script = "echo first; sleep 1; echo second; sleep 1; echo third"
    name = run_script(docker_runtime, fingerprint, test_image, script, extra=extra)
    lines = list(docker_runtime.logs(name, follow=True, fingerprint=fingerprint))
    assert lines == [b"first", b"second", b"third"]


@BOTH_MODES
def test_follow_stops_when_the_stop_event_is_set(
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
    extra: Sequence[str],
) -> None:
    """Setting the stop event ends a follow on a container that keeps running."""
    name = run_script(
        docker_runtime, fingerprint, test_image, "echo ready; sleep 3600", extra=extra
    )
    stop = threading.Event()
    stream = docker_runtime.logs(name, follow=True, stop_event=stop)
    assert next(stream) == b"ready"
    stop.set()
    assert list(stream) == []
    view = docker_runtime.inspect(name, fingerprint=fingerprint)
    assert view is not None and view.running


@BOTH_MODES
def test_reattach_with_since_has_no_duplicates(
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
    extra: Sequence[str],
) -> None:
    """Resuming from the last timestamp yields every later line exactly once."""
    script = "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); usleep 50000; done"
    name = run_script(docker_runtime, fingerprint, test_image, script, extra=extra)

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
    name = run_script(
        docker_runtime, fingerprint, test_image, "echo one; echo two", extra=["--tty"]
    )
    wait_exited(docker_runtime, name, fingerprint)
    assert list(docker_runtime.logs(name, follow=False)) == [b"one", b"two"]


def test_logs_of_a_missing_container_is_an_error(
    docker_runtime: DockerRuntime, fingerprint: str
) -> None:
    """Asking for the logs of a container that does not exist says so."""
    with pytest.raises(ContainerError, match="does not exist"):
        docker_runtime.logs(f"cw-{fingerprint}-none", follow=False)


def test_follow_ends_when_the_container_is_restarted(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
) -> None:
    """A restart ends the follow, and resuming from the last timestamp gives
    exactly the lines printed since, even those of the same second."""
    script = (
        "n=$(cat /tmp/n 2>/dev/null || echo 0); echo run $n; echo $((n + 1)) > /tmp/n; "
        "exec sleep 3600"
    )
    name = run_script(docker_runtime, fingerprint, test_image, script)
    first = docker_runtime.logs(name, follow=True, fingerprint=fingerprint)
    assert next(first) == b"run 0"

    docker_client.api.restart(name, timeout=0)
    assert list(first) == []
    second = docker_runtime.logs(
        name, follow=True, since=first.last_timestamp, fingerprint=fingerprint
    )
    assert next(second) == b"run 1"
    second.close()


@BOTH_MODES
def test_output_without_line_breaks_arrives_in_bounded_pieces(
    docker_runtime: DockerRuntime,
    fingerprint: str,
    test_image: str,
    extra: Sequence[str],
) -> None:
    """200 kB without a newline comes back whole, in pieces of at most 64 KiB."""
    script = "i=0; while [ $i -lt 20000 ]; do printf 'abcdefghij'; i=$((i+1)); done"
    _, lines = finished_lines(
        docker_runtime, fingerprint, test_image, script, extra=extra
    )
    assert b"".join(lines) == b"abcdefghij" * 20000
    assert max(len(line) for line in lines) == MAX_LINE_BYTES
