"""The idle-loop benchmark of cyberwave-edge-core, on real parts.

    bench/loop [--counts 1,10,30] [--cycles 20] [--interval 1] [--quick]

What does one reconcile cycle cost once nothing is left to do? For each N
(linked twins, each with a running driver container of the local test
image) the bench starts the backend emulator, a Mosquitto broker and the
real ``cyberwave-edge-core``, waits until every driver runs and no
container has been created, started or stopped for a few cycles, and
then measures M cycles:

- REST requests per cycle, from the emulator's request log, by method and
  path template, so the report shows which calls the loop makes;
- MQTT messages per cycle, from a recorder subscribed to ``#`` on the
  broker; the broker's connection log shows who could have published;
- CPU seconds per cycle of the edge core process: the kernel's CPU clock
  of the process (every thread, in nanoseconds) plus any child process
  (psutil); psutil's own ``cpu_times`` counts 10 ms ticks, too coarse
  for an idle cycle, and is only the fallback.

A cycle is not observed from the inside: the span is M intervals of wall
clock and every figure is its total over the span divided by M. The
ratios compare each N with the smallest N of the same run. The aim is that
REST requests per idle cycle do not grow with N (protocol.md 7b item 19:
one environment listing per cycle, not one GET per twin).

It never asserts a limit: it reports. It does not change product code,
and it assumes nothing about which calls the loop makes.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.report import (
    IdleSample,
    MqttWitness,
    idle_block,
    ratio_lines,
    rest_aim_lines,
)
from bench.stack import (
    FINGERPRINT_LABEL,
    ROOT,
    BenchError,
    RunWorld,
    Stack,
    child_env,
    open_stack,
    python,
    stop_process,
)
from bench.stats import parse_connects, parse_log, per_slot, template
from tests.support.images import DRIVER_IMAGE, ensure_driver_image
from tests.support.mqtt import Recorder, Seen

# Container actions that mean the edge core (or the engine) changed a
# container; attach, exec and the like do not end idleness.
LIFECYCLE_ACTIONS = frozenset(
    {
        "create",
        "start",
        "restart",
        "stop",
        "kill",
        "die",
        "destroy",
        "pause",
        "unpause",
        "update",
        "rename",
        "oom",
    }
)
BENCH_PRODUCERS = frozenset({"recorder", "emulator"})


def progress(message: str) -> None:
    """One line on stderr so a person sees the bench is alive."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def say(line: str = "") -> None:
    """One line of the report, on stdout at once."""
    print(line, flush=True)


@dataclass(frozen=True)
class LoopPlan:
    """How every N is measured."""

    counts: tuple[int, ...]
    cycles: int
    interval: float
    settle_cycles: int
    discover_interval: float
    timeout: float = 120.0


# -- the edge core ------------------------------------------------------------


def edge_command() -> list[str]:
    """``python -m edge_core`` of the venv, run from the repository root.

    The same entry point as the installed ``cyberwave-edge-core``, but it
    imports the code of the tree the bench runs from, as the emulator does.
    """
    return [python(), "-m", "edge_core"]


def spawn_edge(
    stack: Stack, world: RunWorld, plan: LoopPlan, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start the edge core for ``world`` with the plan's loop settings."""
    env = child_env(
        {
            "CYBERWAVE_EDGE_CONFIG_DIR": str(world.config_dir),
            "CYBERWAVE_DRIVER_PRIVILEGED": "false",
            "CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS": "0.1",
            "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": f"{plan.interval:g}",
            "CYBERWAVE_EDGE_DISCOVER_INTERVAL_SECONDS": f"{plan.discover_interval:g}",
        }
    )
    with log_path.open("wb") as log:
        return stack.spawn(
            edge_command(),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _alive(child: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    code = child.poll()
    if code is not None:
        raise BenchError(
            f"the edge core exited with {code} {what}; last output:\n{_tail(log_path)}"
        )


# -- waiting for idle ---------------------------------------------------------


def container_actions(
    stack: Stack, world: RunWorld, since: float, until: float
) -> Counter[str]:
    """The Docker actions on the run's containers between two wall times."""
    events = stack.client.api.events(
        since=f"{since - 1:.9f}",
        until=f"{until:.9f}",
        filters={
            "type": "container",
            "label": f"{FINGERPRINT_LABEL}={world.fingerprint}",
        },
        decode=True,
    )
    found: Counter[str] = Counter()
    for event in events:
        at = int(event.get("timeNano") or 0) / 1e9
        if since <= at < until:
            found[str(event.get("Action") or event.get("status") or "?")] += 1
    return found


def wait_idle(
    stack: Stack,
    world: RunWorld,
    child: subprocess.Popen[bytes],
    *,
    plan: LoopPlan,
    log_path: Path,
) -> None:
    """Return once every driver runs and no container changed for a while.

    "A while" is ``settle_cycles`` intervals without a lifecycle event on
    any container of the run, which also lets the loop run that many
    cycles after its last launch.
    """
    wanted = len(world.twins)
    quiet_for = plan.settle_cycles * plan.interval
    deadline = time.monotonic() + plan.timeout
    checked = last_change = time.time()
    while True:
        _alive(child, log_path, "before it was idle")
        now = time.time()
        actions = container_actions(stack, world, checked, now)
        checked = now
        if stack.running_count(world) < wanted or LIFECYCLE_ACTIONS & set(actions):
            last_change = now
        elif now - last_change >= quiet_for:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"the edge core with {wanted} driver(s) was not idle after "
                f"{plan.timeout:g} s (running: {stack.running_count(world)}); "
                f"last output:\n{_tail(log_path)}"
            )
        time.sleep(min(0.25, plan.interval / 4))


# -- what happened in the span ------------------------------------------------


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


_LIBC = _libc()


def process_cpu_seconds(pid: int) -> float:
    """CPU time of every thread a process ever ran, ended threads included.

    The kernel's per-process CPU clock (``clock_getcpuclockid``) counts in
    nanoseconds; psutil's ``cpu_times`` comes in clock ticks (10 ms), too
    coarse for an idle cycle of a few milliseconds, and is the fallback.
    """
    clock = ctypes.c_int()
    if _LIBC is not None and _LIBC.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
        try:
            return time.clock_gettime_ns(clock.value) / 1e9
        except OSError:
            pass
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process (all its threads) and of its live children."""
    total = process_cpu_seconds(pid)
    for child in psutil.Process(pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return float(total)


def id_names(world: RunWorld) -> dict[str, str]:
    """The ids of ``world`` and what to call them in a template."""
    names = {world.environment_uuid: "environment", world.fingerprint: "fingerprint"}
    for twin in world.twins:
        names[twin.uuid] = "twin"
        names[twin.asset_uuid] = "asset"
    return names


def rest_in_span(
    records: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
    span: tuple[float, float],
) -> tuple[Counter[str], list[float]]:
    """Requests by ``METHOD path-template`` in ``span``, and their times."""
    start, end = span
    counts: Counter[str] = Counter()
    times = []
    for record in records:
        at = float(record["timestamp"])
        if start <= at < end:
            counts[f"{record['method']} {template(record['path'], names)}"] += 1
            times.append(at)
    return counts, times


def mqtt_in_span(
    seen: Sequence[Seen], names: Mapping[str, str], span: tuple[float, float]
) -> tuple[Counter[str], list[float]]:
    """Messages by topic template in ``span``, and their times."""
    start, end = span
    inside = [item for item in seen if start <= item.at < end]
    counts = Counter(template(item.topic, names) for item in inside)
    return counts, [item.at for item in inside]


def describe(payload: Any, width: int = 70) -> str:
    """A short text saying what a message was: its type and message, if any."""
    if isinstance(payload, dict):
        kind = str(payload.get("type") or "")
        text = payload.get("message")
        shown = f"{kind}: {text!r}" if text is not None else kind or "JSON object"
    else:
        shown = repr(payload)
    return shown if len(shown) <= width else f"{shown[: width - 3]}..."


def mqtt_examples(
    seen: Sequence[Seen],
    names: Mapping[str, str],
    span: tuple[float, float],
    *,
    per_topic: int = 2,
) -> dict[str, list[str]]:
    """The most frequent kinds of message in ``span`` per topic template.

    They say why the edge core published while idle, e.g. a log line
    forwarded again and again.
    """
    start, end = span
    kinds: dict[str, Counter[str]] = {}
    for item in seen:
        if start <= item.at < end:
            topic = template(item.topic, names)
            kinds.setdefault(topic, Counter())[describe(item.payload)] += 1
    return {
        topic: [f"{found}x {text}" for text, found in counts.most_common(per_topic)]
        for topic, counts in kinds.items()
    }


def log_levels(log_path: Path, span: tuple[float, float]) -> Counter[str]:
    """The edge core's log lines in ``span``, by level."""
    start, end = span
    lines = parse_log(log_path.read_text(errors="replace"))
    # Log times have millisecond precision; a line in the span's first or
    # last millisecond still counts.
    return Counter(
        line.level for line in lines if start - 0.001 <= line.at < end + 0.001
    )


def producer(client_id: str) -> str:
    """The producer part of a client id (protocol.md 2.3), else the whole id."""
    for mode in ("_live_", "_sim_"):
        if mode in client_id:
            return client_id.split(mode, 1)[0]
    return client_id


def witness(connects: Sequence[str], seen: Sequence[Seen]) -> MqttWitness:
    """Sort the broker's clients into the edge core's, the bench's and others.

    The edge core's producers are those of the ``session_id`` values it
    put in its payloads (protocol.md 2.3).
    """
    sessions = {
        producer(str(item.payload["session_id"]))
        for item in seen
        if isinstance(item.payload, dict) and "session_id" in item.payload
    }
    edge: Counter[str] = Counter()
    bench: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for client in connects:
        name = producer(client)
        if name in sessions:
            edge[name] += 1
        elif name in BENCH_PRODUCERS:
            bench[name] += 1
        else:
            others[name] += 1
    return MqttWitness(edge=dict(edge), bench=dict(bench), others=dict(others))


# -- one N --------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """The measured span: its wall times and the edge core's CPU across it."""

    start: float
    end: float
    cpu_seconds: float


def measure_span(
    child: subprocess.Popen[bytes], plan: LoopPlan, log_path: Path
) -> Span:
    """Let the idle edge core run ``plan.cycles`` intervals; its CPU meanwhile."""
    length = plan.cycles * plan.interval
    cpu_before = cpu_seconds(child.pid)
    start = time.time()
    end = start + length
    while (now := time.time()) < end:
        _alive(child, log_path, "while idle")
        time.sleep(min(0.5, end - now))
    cpu_after = cpu_seconds(child.pid)
    finished = time.time()
    _alive(child, log_path, "while idle")
    return Span(start=start, end=finished, cpu_seconds=cpu_after - cpu_before)


def measure(stack: Stack, count: int, plan: LoopPlan) -> IdleSample:
    """Start the edge core for ``count`` twins, wait for idle, measure the span."""
    assert stack.broker is not None
    world = stack.new_world(count, [DRIVER_IMAGE])
    names = id_names(world)
    log_path = world.config_dir.parent / f"{world.fingerprint}-edge-core.log"
    broker_log = stack.broker.log_path
    log_offset = broker_log.stat().st_size if broker_log.exists() else 0
    stack.clear_requests()
    recorder = Recorder(stack.broker).start()
    try:
        started = time.monotonic()
        child = spawn_edge(stack, world, plan, log_path)
        try:
            wait_idle(stack, world, child, plan=plan, log_path=log_path)
            settle = time.monotonic() - started
            span = measure_span(child, plan, log_path)
            actions = container_actions(stack, world, span.start, span.end)
        finally:
            stop_process(child)
        seen = recorder.messages()
    finally:
        recorder.stop()
        stack.remove_containers(world.fingerprint)
    bounds = (span.start, span.end)
    rest, rest_times = rest_in_span(stack.recorded_requests(), names, bounds)
    mqtt, mqtt_times = mqtt_in_span(seen, names, bounds)
    with broker_log.open("rb") as handle:
        handle.seek(log_offset)
        connects = parse_connects(handle.read().decode(errors="replace"))

    def slots(times: Sequence[float]) -> list[int]:
        return per_slot(times, start=span.start, width=plan.interval, slots=plan.cycles)

    return IdleSample(
        count=count,
        cycles=plan.cycles,
        interval=plan.interval,
        span=span.end - span.start,
        settle=settle,
        rest=dict(rest),
        mqtt=dict(mqtt),
        mqtt_examples=mqtt_examples(seen, names, bounds),
        rest_slots=slots(rest_times),
        mqtt_slots=slots(mqtt_times),
        cpu_seconds=span.cpu_seconds,
        container_events=dict(actions),
        log_lines=dict(log_levels(log_path, bounds)),
        witness=witness(connects, seen),
    )


# -- main ---------------------------------------------------------------------


def header(stack: Stack, plan: LoopPlan) -> None:
    """What was measured where, and how a cycle is counted."""
    engine = stack.client.version().get("Version", "?")
    say("cyberwave-edge-core idle-loop benchmark")
    say(
        f"host: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Docker engine {engine}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    say(
        f"loop every {plan.interval:g} s (CYBERWAVE_RECONCILE_INTERVAL_SECONDS), "
        f"keepalive every {plan.discover_interval:g} s; idle = every driver of "
        f"{DRIVER_IMAGE} running and no container event for {plan.settle_cycles} "
        f"cycles"
    )
    say(
        f"cycles are not observed inside the edge core: each N is measured over "
        f"{plan.cycles} intervals of wall clock, and a figure per cycle is its "
        f"total in that span divided by span / interval"
    )
    say(
        "REST: the emulator's request log; MQTT: a recorder subscribed to # on "
        "the broker; CPU: the edge core's per-process CPU clock (ns, every "
        "thread) plus any child process"
    )
    progress(
        f"run {stack.run_id}: every container carries "
        f"io.cyberwave.edge.fingerprint={stack.fingerprint_prefix}*"
    )


def run(stack: Stack, plan: LoopPlan) -> None:
    """Measure every N and print the report."""
    ensure_driver_image(stack.client)
    header(stack, plan)
    samples = []
    for count in plan.counts:
        progress(f"N={count}: starting the edge core and waiting for idle")
        sample = measure(stack, count, plan)
        progress(
            f"N={count}: idle after {sample.settle:.1f} s, "
            f"{sample.rest_per_cycle:.2f} REST / cycle, "
            f"{sample.cpu_ms_per_cycle:.1f} ms CPU / cycle"
        )
        samples.append(sample)
        say()
        for line in idle_block(sample):
            say(line)
    say()
    say(f"Per idle cycle, and the ratio to N={samples[0].count} of this run")
    for line in ratio_lines(samples):
        say(f"  {line}")
    say()
    for line in rest_aim_lines(samples[0], samples[-1]):
        say(line)


QUICK = {"counts": "1,2", "cycles": 4, "settle_cycles": 2}
DEFAULTS = {"counts": "1,10,30", "cycles": 20, "settle_cycles": 3}


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/loop", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--counts", help="numbers of linked twins (default 1,10,30)")
    parser.add_argument(
        "--cycles", type=int, help="idle cycles measured per N (default 20)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="CYBERWAVE_RECONCILE_INTERVAL_SECONDS (default 1)",
    )
    parser.add_argument(
        "--settle-cycles",
        type=int,
        help="cycles without a container event before measuring (default 3)",
    )
    parser.add_argument(
        "--discover-interval",
        type=float,
        default=30.0,
        help="CYBERWAVE_EDGE_DISCOVER_INTERVAL_SECONDS (default 30, as shipped)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N=1,2, 4 cycles, 2 settle cycles (options given explicitly win)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the logs and config dirs (the path is printed)",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    except ValueError:
        parser.error(f"--counts must be numbers separated by commas: {args.counts}")
    if not args.counts or args.counts[0] < 1:
        parser.error("--counts must be at least 1")
    if args.cycles < 2 or args.settle_cycles < 1:
        parser.error("--cycles must be at least 2 and --settle-cycles at least 1")
    if args.interval <= 0 or args.discover_interval <= 0:
        parser.error("--interval and --discover-interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every N and print the report; non-zero when a part failed."""
    args = _arguments(argv)
    plan = LoopPlan(
        counts=tuple(args.counts),
        cycles=args.cycles,
        interval=args.interval,
        settle_cycles=args.settle_cycles,
        discover_interval=args.discover_interval,
    )
    started = time.monotonic()
    try:
        with open_stack(keep=args.keep, log_connects=True) as stack:
            run(stack, plan)
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"bench: FAILED: {shlex.join(exc.cmd)} exited with {exc.returncode}; "
            f"the code in this tree does not import (its traceback is above)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; what it started was removed", file=sys.stderr)
        return 130
    say()
    say(f"total bench time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
