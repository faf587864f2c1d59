"""The benchmark end to end on the real Docker engine and Mosquitto.

These run ``bench/startup`` as a person would, with tiny settings, and
check that it reports every section and leaves nothing behind: no
container of its run and none of the processes it started, also when it
is interrupted. Without Docker or Mosquitto they fail, they never skip.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "startup"
LABEL = "io.cyberwave.edge.fingerprint"
RUN_ID = re.compile(rb"bench: run ([0-9a-f]{6}): every container")
TIMED = re.compile(r"^ +(?P<title>\S.*?) {2,}\d+\.\d\d")


class Watched:
    """A bench process, its stderr, and every descendant it ever had."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [str(BENCH), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stderr = b""
        self.descendants: dict[int, float] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.stderr += line

    def stderr_text(self) -> bytes:
        """What the bench wrote to stderr so far."""
        with self._lock:
            return self.stderr

    def note_descendants(self) -> None:
        """Remember every process below the bench right now."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                self.descendants[child.pid] = child.create_time()
            except psutil.NoSuchProcess:
                continue

    def run_id(self) -> str | None:
        """The bench run id, once announced."""
        match = RUN_ID.search(self.stderr_text())
        return match.group(1).decode() if match else None

    def alive_descendants(self) -> list[int]:
        """Remembered descendants that still exist (same pid, same start)."""
        alive = []
        for pid, created in self.descendants.items():
            try:
                if psutil.Process(pid).create_time() == created:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        return alive


def run_containers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Names of the containers of bench run ``run_id``, any state."""
    prefix = f"cwbench-{run_id}-"
    # The summaries carry the labels; inspecting each one would race with
    # containers that other tests remove meanwhile.
    found = client.api.containers(all=True, filters={"label": LABEL})
    return [
        str(c["Names"][0]).lstrip("/")
        for c in found
        if (c.get("Labels") or {}).get(LABEL, "").startswith(prefix)
    ]


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    """A Docker client; a missing engine fails the test."""
    engine = docker.from_env()
    engine.ping()
    yield engine
    engine.close()


def watch_until_exit(watched: Watched, timeout: float) -> str:
    """Follow ``watched`` to its end; its stdout."""
    deadline = time.monotonic() + timeout
    while watched.process.poll() is None:
        watched.note_descendants()
        if time.monotonic() > deadline:
            watched.process.kill()
            pytest.fail("the bench did not finish in time")
        time.sleep(0.1)
    assert watched.process.stdout is not None
    return watched.process.stdout.read().decode()


def test_small_bench_reports_every_section_and_cleans_up(
    client: docker.DockerClient,
) -> None:
    """A tiny run prints all four sections with ratios and leaves nothing."""
    watched = Watched(
        [
            "--counts",
            "2",
            "--reps",
            "1",
            "--registry-count",
            "1",
            "--version-runs",
            "2",
            "--idle-seconds",
            "0.5",
        ]
    )
    stdout = watch_until_exit(watched, timeout=240)
    stderr = watched.stderr_text().decode(errors="replace")

    assert watched.process.returncode == 0, stderr
    for heading in (
        "1. Process start to all driver containers running",
        "2. The same with 1 distinct images pulled",
        "3. Idle RSS of the daemon",
        "4. cyberwave-edge-core --version",
    ):
        assert heading in stdout
    timed = [line for line in stdout.splitlines() if re.search(r"\d\.\d\dx", line)]
    titles = [m["title"] for line in timed if (m := TIMED.match(line))]
    assert titles.count("edge core p=4") == 2
    assert titles.count("bare SDK, 4 at a time (engine ceiling)") == 2
    assert titles.count("edge core p=4, probe every 1 s") == 1
    assert sum("aim 0.75x: " in line for line in timed) == 2
    assert re.search(r"N=2 +edge core \d+\.\d MiB", stdout)
    assert '= "driver pass done" logged at' in stdout
    run_id = watched.run_id()
    assert run_id is not None
    assert run_containers(client, run_id) == []
    assert watched.alive_descendants() == []


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"]
)
def test_interrupted_bench_removes_its_containers_and_children(
    client: docker.DockerClient, signum: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM mid-run still removes the run's containers and stops
    the edge core, the emulator and the broker."""
    watched = Watched(["--counts", "3", "--reps", "3", "--no-registry"])
    deadline = time.monotonic() + 120
    while True:
        watched.note_descendants()
        run_id = watched.run_id()
        if run_id and run_containers(client, run_id):
            break
        assert watched.process.poll() is None, watched.stderr_text()
        assert time.monotonic() < deadline, "no bench container appeared"
        time.sleep(0.05)
    watched.note_descendants()

    watched.process.send_signal(signum)
    watch_until_exit(watched, timeout=60)

    assert watched.process.returncode == 130
    assert run_containers(client, run_id) == []
    assert len(watched.descendants) >= 2
    assert watched.alive_descendants() == []
