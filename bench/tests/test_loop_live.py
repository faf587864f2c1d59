"""The idle-loop benchmark end to end on the real Docker engine and Mosquitto.

These run ``bench/loop --quick`` as a person would (N=1 and N=2, a few
cycles) and check that the report parses, that its figures agree with
each other, and that the bench leaves no container and no process
behind, also when it is stopped. Without Docker or Mosquitto they fail,
they never skip. No figure is compared with a wall-clock limit.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "loop"
LABEL = "io.cyberwave.edge.fingerprint"
RUN_ID = re.compile(rb"bench: run ([0-9a-f]{6}): every container")
BLOCK = re.compile(
    r"^N=(?P<count>\d+) +(?P<cycles>\d+\.\d\d) cycles = (?P<span>\d+\.\d\d) s "
    r"measured / (?P<interval>[\d.]+) s interval"
)
ROW = re.compile(r"^ {4}(?P<name>\S.*?) +(?P<per_cycle>\d+\.\d\d) +(?P<total>\d+)\b")
EXAMPLE = "        e.g. "
SLOTS = re.compile(r"\[(?P<low>\d+)-(?P<high>\d+) per [\d.]+ s slot\]")
CPU = re.compile(
    r"CPU of the edge core process \(every thread\): (?P<ms>\d+\.\d\d) ms per "
    r"cycle = (?P<share>\d+\.\d\d)% of one core"
)


class Watched:
    """The bench process, its stderr, and every descendant it ever had."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [str(BENCH), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.descendants: dict[int, float] = {}
        self._stderr = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._stderr += line

    def stderr(self) -> bytes:
        """What the bench wrote to stderr so far."""
        with self._lock:
            return self._stderr

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

    def run_id(self) -> str | None:
        """The bench run id, once announced."""
        match = RUN_ID.search(self.stderr())
        return match.group(1).decode() if match else None

    def follow(self, timeout: float) -> str:
        """Follow the bench to its end; its stdout."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            self.note_descendants()
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail("the bench did not finish in time")
            time.sleep(0.1)
        assert self.process.stdout is not None
        return self.process.stdout.read().decode()


def run_containers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Names of the containers of bench run ``run_id``, any state."""
    prefix = f"cwbench-{run_id}-"
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


@dataclass
class Section:
    """The rows of one REST or MQTT table of an N block."""

    rows: list[tuple[str, float, int]]
    total: tuple[float, int]
    slots: tuple[int, int]


@dataclass
class Block:
    """One N of the report, parsed."""

    count: int
    cycles: float
    span: float
    interval: float
    rest: Section
    mqtt: Section
    cpu_ms: float
    cpu_share: float
    lines: list[str]


def parse_section(lines: list[str]) -> Section:
    """The rows up to and including the ``total`` row."""
    rows: list[tuple[str, float, int]] = []
    for line in lines:
        if line.startswith(EXAMPLE):
            continue
        match = ROW.match(line)
        assert match, f"not a table row: {line!r}"
        name, per_cycle, total = (
            match["name"],
            float(match["per_cycle"]),
            int(match["total"]),
        )
        if name == "total":
            slots = SLOTS.search(line)
            assert slots, line
            return Section(
                rows, (per_cycle, total), (int(slots["low"]), int(slots["high"]))
            )
        rows.append((name, per_cycle, total))
    raise AssertionError(f"no total row in {lines}")


def parse_blocks(stdout: str) -> list[Block]:
    """Every N block of the report."""
    lines = stdout.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        head = BLOCK.match(line)
        if head is None:
            continue
        body = lines[index + 1 : index + 40]
        body = body[: next((i for i, b in enumerate(body) if not b.strip()), len(body))]
        mqtt_at = next(i for i, b in enumerate(body) if b.startswith("  MQTT messages"))
        cpu = next(m for b in body if (m := CPU.search(b)))
        blocks.append(
            Block(
                count=int(head["count"]),
                cycles=float(head["cycles"]),
                span=float(head["span"]),
                interval=float(head["interval"]),
                rest=parse_section(body[1:mqtt_at]),
                mqtt=parse_section(
                    [b for b in body[mqtt_at + 1 :] if b.startswith("    ")]
                ),
                cpu_ms=float(cpu["ms"]),
                cpu_share=float(cpu["share"]),
                lines=body,
            )
        )
    return blocks


def check_section(section: Section, cycles: float) -> None:
    """Per-cycle figures are totals over the cycles; the total adds the rows."""
    for _name, per_cycle, total in [*section.rows, ("total", *section.total)]:
        assert total >= 0
        assert per_cycle == pytest.approx(total / cycles, abs=0.006)
    assert section.total[1] == sum(total for _, _, total in section.rows)
    low, high = section.slots
    assert 0 <= low <= high <= section.total[1]


def test_quick_bench_reports_each_count_consistently_and_cleans_up(
    client: docker.DockerClient,
) -> None:
    """A quick run reports N=1 and N=2 with figures that agree, the ratios and
    the aim, and leaves no container or process of its own."""
    watched = Watched(["--quick"])
    stdout = watched.follow(timeout=300)
    stderr = watched.stderr().decode(errors="replace")

    assert watched.process.returncode == 0, stderr
    assert "cycles are not observed inside the edge core" in stdout
    blocks = parse_blocks(stdout)
    assert [b.count for b in blocks] == [1, 2]
    for block in blocks:
        assert block.interval > 0
        assert block.cycles >= 4
        assert block.cycles == pytest.approx(block.span / block.interval, abs=0.006)
        check_section(block.rest, block.cycles)
        check_section(block.mqtt, block.cycles)
        assert block.cpu_ms > 0
        share = block.cpu_ms * block.cycles / (block.span * 1000) * 100
        assert block.cpu_share == pytest.approx(share, abs=0.011)
        # The drivers of the test image never talk to the broker.
        assert any("only the edge core published" in line for line in block.lines)

    table = stdout.split("Per idle cycle, and the ratio to N=1 of this run\n")[1]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:4]}
    assert float(rows["REST"][2]) == blocks[0].rest.total[0]
    assert float(rows["REST"][3]) == blocks[1].rest.total[0]
    assert float(rows["MQTT"][2]) == blocks[0].mqtt.total[0]
    assert float(rows["CPU"][2]) == blocks[0].cpu_ms
    cpu_ratio = rows["CPU"][4]
    assert cpu_ratio.endswith("x")
    assert float(cpu_ratio[:-1]) == pytest.approx(
        blocks[1].cpu_ms / blocks[0].cpu_ms, rel=0.05, abs=0.02
    )
    aim = re.search(
        r"^aim: REST requests per idle cycle do not grow with N: N=2 / N=1 = .*: "
        r"(met|NOT met)$",
        stdout,
        re.MULTILINE,
    )
    assert aim, stdout
    run_id = watched.run_id()
    assert run_id is not None
    assert run_containers(client, run_id) == []
    assert watched.alive_descendants() == []


def test_stopped_bench_removes_its_containers_and_children(
    client: docker.DockerClient,
) -> None:
    """SIGTERM while the edge core runs still removes the run's containers and
    stops the edge core, the emulator and the broker."""
    watched = Watched(["--quick", "--cycles", "30"])
    deadline = time.monotonic() + 120
    while True:
        watched.note_descendants()
        run_id = watched.run_id()
        if run_id and run_containers(client, run_id):
            break
        assert watched.process.poll() is None, watched.stderr()
        assert time.monotonic() < deadline, "no bench container appeared"
        time.sleep(0.05)
    watched.note_descendants()

    watched.process.send_signal(signal.SIGTERM)
    watched.follow(timeout=60)

    assert watched.process.returncode == 130
    assert run_containers(client, run_id) == []
    assert len(watched.descendants) >= 3
    assert watched.alive_descendants() == []
