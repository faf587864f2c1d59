"""One timed start-up: the edge core's, or the bare docker-SDK baseline's.

Both are timed the same way, from just before the child process is
spawned until Docker lists every container of the run (selected by the
run's fingerprint label) as running, polled every 50 ms. The edge core
run also reads its own log for the "driver pass done" line and the phase
marks, and can sample the process's RSS after a few idle cycles.

Each run removes its containers before returning, whatever happened.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.stack import (
    ROOT,
    BenchError,
    RunWorld,
    Stack,
    child_env,
    python,
    stop_process,
)
from bench.stats import Phases, parse_log, phases
from edge_core.config.files import atomic_write_json

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class EdgeTuning:
    """The settings every timed edge core run gets."""

    parallelism: int
    probe_interval: float = 0.1
    reconcile_interval: float = 1.0
    timeout: float = 120.0


@dataclass(frozen=True)
class EdgeSample:
    """One edge core start-up."""

    running: float
    pass_done: float | None
    phases: Phases
    rss_bytes: int | None


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def edge_run(
    stack: Stack,
    world: RunWorld,
    tuning: EdgeTuning,
    *,
    idle_seconds: float = 0.0,
) -> EdgeSample:
    """Start ``python -m edge_core`` for ``world`` and time it to all running.

    With ``idle_seconds`` the process is left idle that long after the
    drivers run, and its RSS is sampled at the end.
    """
    env = child_env(
        {
            "CYBERWAVE_EDGE_CONFIG_DIR": str(world.config_dir),
            "CYBERWAVE_DRIVER_PRIVILEGED": "false",
            "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM": str(tuning.parallelism),
            "CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS": str(tuning.probe_interval),
            "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": str(tuning.reconcile_interval),
        }
    )
    log_path = world.config_dir.parent / f"{world.fingerprint}-edge-core.log"
    try:
        with log_path.open("wb") as log:
            started_wall = time.time()
            started = time.monotonic()
            child = stack.spawn(
                [python(), "-m", "edge_core"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            running = _wait_running(
                stack,
                world,
                child,
                started,
                timeout=tuning.timeout,
                log_path=log_path,
                may_exit=False,
                what="the edge core",
            )
            pass_done = _wait_pass_done(child, log_path, timeout=tuning.timeout)
            rss = _idle_rss(child, idle_seconds) if idle_seconds > 0 else None
        finally:
            stop_process(child)
        marks = phases(parse_log(log_path.read_text(errors="replace")), started_wall)
    finally:
        stack.remove_containers(world.fingerprint)
    return EdgeSample(
        running=running,
        pass_done=marks.pass_done if pass_done else None,
        phases=marks,
        rss_bytes=rss,
    )


def _wait_running(
    stack: Stack,
    world: RunWorld,
    child: subprocess.Popen[bytes],
    started: float,
    *,
    timeout: float,
    log_path: Path,
    may_exit: bool,
    what: str,
) -> float:
    """Seconds from ``started`` until every container of ``world`` runs.

    ``may_exit`` says whether the child ending with code 0 is expected
    (the bare launcher) or a failure (the edge core).
    """
    wanted = len(world.twins)
    deadline = started + timeout
    while True:
        if stack.running_count(world) >= wanted:
            return time.monotonic() - started
        code = child.poll()
        if code is not None and not (may_exit and code == 0):
            raise BenchError(
                f"{what} exited with {code} before {wanted} "
                f"container(s) ran; last output:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"{wanted} container(s) were not all running after {timeout:g} s "
                f"(running: {stack.running_count(world)}); last output:\n"
                f"{_tail(log_path)}"
            )
        time.sleep(POLL_SECONDS)


def _wait_pass_done(
    child: subprocess.Popen[bytes], log_path: Path, *, timeout: float
) -> bool:
    """True once the edge core logged the end of its driver pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"driver pass done" in log_path.read_bytes():
            return True
        if child.poll() is not None:
            return False
        time.sleep(POLL_SECONDS)
    return False


def _idle_rss(child: subprocess.Popen[bytes], seconds: float) -> int:
    """The child's resident set size after ``seconds`` of idling."""
    time.sleep(seconds)
    if child.poll() is not None:
        raise BenchError(f"the edge core exited with {child.returncode} while idle")
    rss: int = psutil.Process(child.pid).memory_info().rss
    return rss


def baseline_plan(
    world: RunWorld, stack: Stack, *, pull: bool, parallel: int = 1
) -> Path:
    """Write the bare launcher's plan for ``world``: the same containers.

    Each container gets what the edge core would give its driver: the
    same name, image, labels of protocol.md 4.2, the twin and config
    mounts and the environment of 4.7 (with this bench's broker and
    emulator), so the engine does the same work for both.
    """
    config = world.config_dir
    containers = []
    for twin in world.twins:
        twin_file = config / f"{twin.uuid}.json"
        atomic_write_json(twin_file, {"uuid": twin.uuid}, mode=0o644)
        env = {
            "CYBERWAVE_TWIN_UUID": twin.uuid,
            "CYBERWAVE_API_KEY": stack.token,
            "CYBERWAVE_EDGE_HOST_PLATFORM": "linux",
            "CYBERWAVE_MQTT_HOST": stack.broker.host if stack.broker else "",
            "CYBERWAVE_MQTT_PORT": str(stack.broker.port if stack.broker else ""),
            "CYBERWAVE_EDGE_CONFIG_DIR": "/app/.cyberwave",
            "CYBERWAVE_DATA_BACKEND": "zenoh",
            "ZENOH_SHARED_MEMORY": "false",
            "CYBERWAVE_BASE_URL": stack.emulator_url,
            "CYBERWAVE_API_URL": stack.emulator_url,
            "CYBERWAVE_TWIN_JSON_FILE": f"/app/{twin.uuid}.json",
            "BENCH_DRIVER": "1",
        }
        containers.append(
            {
                "name": twin.container_name,
                "image": twin.image,
                "env": env,
                "labels": {
                    "io.cyberwave.edge.twin": twin.uuid,
                    "io.cyberwave.edge.spec-hash": "0" * 64,
                    "io.cyberwave.edge.created-by": "cw-bench/baseline",
                    "io.cyberwave.edge.fingerprint": world.fingerprint,
                },
                "binds": {
                    str(twin_file): {"bind": f"/app/{twin.uuid}.json", "mode": "rw"},
                    str(config): {"bind": "/app/.cyberwave", "mode": "ro"},
                },
            }
        )
    plan = config.parent / f"{world.fingerprint}-plan.json"
    document = {"pull": pull, "parallel": parallel, "containers": containers}
    atomic_write_json(plan, document, mode=0o600)
    return plan


def baseline_run(
    stack: Stack,
    world: RunWorld,
    *,
    pull: bool = False,
    parallel: int = 1,
    timeout: float = 120.0,
) -> float:
    """Seconds from spawning the bare launcher until all its containers run.

    ``parallel`` is how many pulls and launches the launcher runs at once.
    """
    plan = baseline_plan(world, stack, pull=pull, parallel=parallel)
    log_path = plan.with_suffix(".log")
    try:
        with log_path.open("wb") as log:
            started = time.monotonic()
            child = stack.spawn(
                [python(), str(ROOT / "bench" / "bare_launch.py"), str(plan)],
                cwd=ROOT,
                env=child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            running = _wait_running(
                stack,
                world,
                child,
                started,
                timeout=timeout,
                log_path=log_path,
                may_exit=True,
                what="the baseline launcher",
            )
        finally:
            stop_process(child)
    finally:
        stack.remove_containers(world.fingerprint)
    return running
