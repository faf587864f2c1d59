"""Long lines of a driver running with a TTY (``-t`` in its params)."""

from __future__ import annotations

import threading

import pytest

from edge_core.runtime import DockerRuntime
from edge_core.runtime.logs import MAX_LINE_BYTES
from tests.support.docker_helpers import run_container, wait_exited

pytestmark = pytest.mark.integration


def test_a_tty_line_longer_than_the_engine_message_size_carries_no_timestamps(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """With a TTY the engine splits a 30 000-byte line into messages of
    16 KiB, each with its own timestamp: the line comes back whole, with
    none of those timestamps inside it."""
    script = (
        "i=0; while [ $i -lt 3000 ]; do printf 'abcdefghij'; i=$((i+1)); done; "
        "echo; echo after"
    )
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", script],
        suffix="ttylong",
        extra=["--tty"],
    )
    wait_exited(docker_runtime, name, fingerprint)
    lines = list(docker_runtime.logs(name, follow=False, fingerprint=fingerprint))
    assert lines == [b"abcdefghij" * 3000, b"after"]


def test_a_tty_line_longer_than_a_line_piece_comes_whole_in_pieces(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """200 000 bytes without a break from a TTY container come in pieces of
    at most 64 KiB that join into exactly what the container printed."""
    size = 200_000
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x; echo; echo after"],
        suffix="ttyhuge",
        extra=["--tty"],
    )
    wait_exited(docker_runtime, name, fingerprint)
    lines = list(docker_runtime.logs(name, follow=False, fingerprint=fingerprint))
    assert lines[-1] == b"after"
    assert max(len(line) for line in lines) <= MAX_LINE_BYTES
    assert b"".join(lines[:-1]) == b"x" * size


def _tty(runtime: DockerRuntime, fingerprint: str, image: str, script: str) -> str:
    return run_container(
        runtime, fingerprint, image, ["sh", "-c", script], suffix="tty", extra=["-t"]
    )


def test_following_a_tty_container_ends_when_it_stops(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    script = "echo first; sleep 1; echo second; sleep 1; echo third"
    name = _tty(docker_runtime, fingerprint, test_image, script)
    lines = list(docker_runtime.logs(name, follow=True, fingerprint=fingerprint))
    assert lines == [b"first", b"second", b"third"]


def test_following_a_quiet_tty_container_stops_on_the_stop_event(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    name = _tty(docker_runtime, fingerprint, test_image, "echo ready; sleep 3600")
    stop = threading.Event()
    stream = docker_runtime.logs(
        name, follow=True, stop_event=stop, fingerprint=fingerprint
    )
    assert next(stream) == b"ready"
    stop.set()
    assert list(stream) == []


def test_a_tty_container_resumed_after_its_last_line_repeats_none(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    script = "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); usleep 50000; done"
    name = _tty(docker_runtime, fingerprint, test_image, script)
    first = docker_runtime.logs(name, follow=True, fingerprint=fingerprint)
    seen = [next(first) for _ in range(10)]
    first.close()
    wait_exited(docker_runtime, name, fingerprint)
    second = docker_runtime.logs(
        name, follow=True, since=first.last_timestamp, fingerprint=fingerprint
    )
    seen.extend(second)
    assert seen == [f"line {i}".encode() for i in range(40)]
