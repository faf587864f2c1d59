"""Driver output that is hard to forward: huge, binary, CR-only, a burst.

Each test runs a real container printing the hostile output, follows it
with the real ``LogForwarder`` through the real Docker adapter and a real
``MqttSession`` to Mosquitto, and checks what arrived: the follower
survives, memory stays bounded by the documented limits (lines of at most
64 KiB), nothing is lost and nothing arrives twice, also after the
container restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import pytest

from edge_core.runtime.logs import MAX_LINE_BYTES
from tests.integration.test_log_forwarding import (  # noqa: F401 (fixtures)
    Driver,
    arrived,
    lines,
    make_driver,
    recorder,
    session,
)
from tests.support.mqtt import Recorder

pytestmark = pytest.mark.integration

MEGABYTE = 1024 * 1024


def once(script: str, then: str) -> list[str]:
    """Run ``script`` on the first start only and ``then`` on every start."""
    return [
        "sh",
        "-c",
        f"if [ ! -e /tmp/done ]; then {script}; touch /tmp/done; fi; {then}; "
        "exec sleep 3600",
    ]


def restart_and_settle(
    driver: Driver, client: docker.DockerClient, witness: Recorder, total: int
) -> None:
    """Restart the container, follow it again until ``total`` lines arrived,
    then give a repeat the time to show."""
    client.api.restart(driver.name, timeout=0)
    driver.detached()
    driver.cycle_until(arrived(witness, driver.topic, total), "the line after")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        driver.cycle()
        time.sleep(0.1)


def test_a_megabyte_without_a_newline_arrives_once_in_bounded_pieces(
    make_driver: Callable[..., Driver],  # noqa: F811
    recorder: Recorder,  # noqa: F811
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    """1 MiB without a line break comes in pieces of at most 64 KiB, whole
    and in order; a restart of the container sends none of it again."""
    script = f"head -c {MEGABYTE} /dev/zero | tr '\\0' x; echo; echo after"
    driver = make_driver(once(script, "echo started"), test_image)
    pieces = MEGABYTE // MAX_LINE_BYTES
    driver.cycle_until(arrived(recorder, driver.topic, pieces + 2), "the big line")

    got = lines(recorder, driver.topic)
    assert max(len(text) for text in got) <= MAX_LINE_BYTES
    assert "".join(got[:pieces]) == "x" * MEGABYTE
    assert got[pieces:] == ["after", "started"]

    restart_and_settle(driver, docker_client, recorder, pieces + 3)
    assert lines(recorder, driver.topic)[pieces:] == ["after", "started", "started"]


def test_binary_output_is_forwarded_without_ending_the_follower(
    make_driver: Callable[..., Driver],  # noqa: F811
    recorder: Recorder,  # noqa: F811
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    """Bytes that are not UTF-8 (NULs, invalid sequences) are sent with
    replacement characters; the lines after them still arrive, once."""
    script = (
        "printf 'bad \\377\\376 bytes\\n'; printf 'nul\\000inside\\n'; "
        "head -c 20000 /dev/urandom; echo; echo after"
    )
    driver = make_driver(once(script, "echo started"), test_image)
    driver.cycle_until(
        lambda: "started" in lines(recorder, driver.topic), "the line after"
    )
    got = lines(recorder, driver.topic)
    assert got[0] == "bad \ufffd\ufffd bytes"
    assert got[1] == "nul\x00inside"
    assert got[-2:] == ["after", "started"]
    count = len(got)

    restart_and_settle(driver, docker_client, recorder, count + 1)
    assert lines(recorder, driver.topic) == [*got, "started"]


def test_carriage_return_endings_are_lines_of_their_own(
    make_driver: Callable[..., Driver],  # noqa: F811
    recorder: Recorder,  # noqa: F811
    test_image: str,
) -> None:
    """Output that ends its lines with CR only (a progress counter, a
    device echo) arrives as one message per line, not as one message with
    the CRs inside, once the engine hands it out."""
    script = (
        'i=0; while [ $i -lt 5 ]; do printf "step $i\\r"; i=$((i+1)); done; '
        "printf 'crlf line\\r\\n'; echo after"
    )
    driver = make_driver(once(script, "true"), test_image)
    driver.cycle_until(
        lambda: "after" in lines(recorder, driver.topic), "the line after"
    )
    got = lines(recorder, driver.topic)
    assert got == [*(f"step {i}" for i in range(5)), "crlf line", "after"]


def test_a_burst_of_10k_lines_arrives_whole_while_the_loop_goes_on(
    make_driver: Callable[..., Driver],  # noqa: F811
    recorder: Recorder,  # noqa: F811
    test_image: str,
) -> None:
    """10 000 lines printed at once arrive in order, each once, while the
    loop's calls (follow, flush) go on every cycle, and nothing is left
    held or dropped."""
    total = 10_000
    driver = make_driver(once(f"seq 1 {total}", "true"), test_image, cold_start_tail=0)

    def received() -> bool:
        return len(recorder.messages(driver.topic)) >= total

    deadline = time.monotonic() + 25
    while not received():
        assert time.monotonic() < deadline, (
            f"{len(recorder.messages(driver.topic))} lines arrived in 25 s"
        )
        driver.cycle()
        time.sleep(0.05)
    got = lines(recorder, driver.topic)
    assert got == [str(i) for i in range(1, total + 1)]
    assert (driver.forwarder.buffered, driver.forwarder.dropped) == (0, 0)
