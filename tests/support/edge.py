"""Run the whole edge core as a process against real parts, for tests.

``EdgeProcess`` starts ``python -m edge_core`` on a config directory that
``write_config`` prepared (``credentials.json`` 0600 with the token and
``envs``, ``environment.json``, optionally ``fingerprint.json``), with
short timings passed as environment variables so a test sees a cycle per
second instead of one per 15 s. Its stderr (the edge core's log) goes to a
file per run, and the harness offers polling helpers, the daemon's
``status --json`` and a clean stop that returns the exit code.
``EdgeFactory`` prepares such processes for one test's emulator and broker.

``example_environment`` builds an environment in the emulator's fixture
format with fresh twin UUIDs, so container names never collide between
tests running in parallel.

It asserts nothing itself and never touches containers: the
``fingerprint`` fixture removes what the edge core created.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.emulator.broker import Broker
from tests.emulator.server import Emulator
from tests.support.images import DRIVER_IMAGE

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

SHORT_TIMINGS: Mapping[str, str] = {
    "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": "1",
    "CYBERWAVE_EDGE_HEALTH_PUBLISH_INTERVAL_SECONDS": "1",
    "CYBERWAVE_EDGE_DISCOVER_INTERVAL_SECONDS": "1",
    "CYBERWAVE_BACKOFF_INITIAL_SECONDS": "0.2",
    "CYBERWAVE_BACKOFF_MAX_SECONDS": "1",
    "CYBERWAVE_MQTT_CONNECT_TIMEOUT": "1",
    "CYBERWAVE_MQTT_CONNECT_ATTEMPTS": "1",
    "CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS": "0.2",
    "CYBERWAVE_DRIVER_STARTUP_PROBE_SECONDS": "20",
    "CYBERWAVE_DRIVER_PRIVILEGED": "false",
}
"""Timings for tests: a cycle per second, backoff capped at one second."""

STARTUP_TIMEOUT = 60.0
"""How long a test waits for the edge core to reach a milestone at boot."""

_INHERITED_PREFIXES = ("CYBERWAVE_", "ZENOH_", "SUDO_", "NOTIFY_SOCKET", "WATCHDOG_")
OTHER_FINGERPRINT = "line-pc-4b8e1f0a9c2d"

ROBOT_SCRIPT = (
    "echo INFO robot driver up; echo WARNING gripper current high; "
    "echo plain line without a level; while true; do sleep 3600; done"
)
CAMERA_SCRIPT = "echo DEBUG camera frames flowing; while true; do sleep 3600; done"


# -- the config directory ------------------------------------------------


def write_config(
    config_dir: Path,
    *,
    token: str | None,
    envs: Mapping[str, str] | None = None,
    environment_uuid: str | None = None,
    fingerprint: str | None = None,
) -> Path:
    """Write a config dir as the installer would; returns ``config_dir``.

    ``credentials.json`` holds ``token`` and ``envs``. Without
    ``environment_uuid`` no ``environment.json`` is written; without
    ``fingerprint`` no ``fingerprint.json``.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    config_dir.chmod(0o700)
    document = {"token": token, "email": "test@example.com", "envs": dict(envs or {})}
    _write(config_dir / "credentials.json", json.dumps(document, indent=2), 0o600)
    if environment_uuid is not None:
        environment = {"uuid": environment_uuid, "name": "Test cell"}
        _write(config_dir / "environment.json", json.dumps(environment), 0o600)
    if fingerprint is not None:
        _write(
            config_dir / "fingerprint.json",
            json.dumps({"fingerprint": fingerprint}, indent=2) + "\n",
            0o644,
        )
    return config_dir


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def backend_envs(
    base_url: str, *, broker_host: str, broker_port: int
) -> dict[str, str]:
    """The ``envs`` block the installer stores for a backend and a broker."""
    return {
        "CYBERWAVE_BASE_URL": base_url,
        "CYBERWAVE_MQTT_HOST": broker_host,
        "CYBERWAVE_MQTT_PORT": str(broker_port),
    }


def tree_snapshot(directory: Path) -> dict[str, tuple[str, bytes | None, int, int]]:
    """Every entry under ``directory``: (kind, bytes, mode, mtime_ns) by path."""
    entries: dict[str, tuple[str, bytes | None, int, int]] = {}
    for path in sorted(directory.rglob("*")):
        stat = path.lstat()
        relative = str(path.relative_to(directory))
        if path.is_dir():
            entries[relative] = ("dir", None, stat.st_mode, stat.st_mtime_ns)
        else:
            entries[relative] = (
                "file",
                path.read_bytes(),
                stat.st_mode,
                stat.st_mtime_ns,
            )
    return entries


# -- an environment for the emulator ---------------------------------------


@dataclass(frozen=True)
class ExampleEnvironment:
    """An environment fixture and the roles of its twins.

    ``robot`` has its own driver with ``-e`` params and the child camera
    ``wrist`` attached; ``overhead`` is a camera whose driver comes from its
    asset; ``foreign`` is linked to another edge; each of ``broken`` (none by
    default) has driver params that cannot become a container.
    """

    environment_uuid: str
    robot: str
    wrist: str
    overhead: str
    foreign: str
    broken: tuple[str, ...]
    fixture: dict[str, Any] = field(repr=False)

    @property
    def drivers(self) -> tuple[str, ...]:
        """The twins that should get a running driver container here."""
        return (self.robot, self.overhead)

    @property
    def linked(self) -> tuple[str, ...]:
        """Every twin linked to this edge (the broken ones included)."""
        return (self.robot, self.wrist, self.overhead, *self.broken)

    @property
    def driver_names(self) -> set[str]:
        """The container names of ``drivers``."""
        return {container_name(twin_uuid) for twin_uuid in self.drivers}

    @property
    def twins(self) -> list[dict[str, Any]]:
        twins: list[dict[str, Any]] = self.fixture["twins"]
        return twins


def container_name(twin_uuid: str) -> str:
    """The single-container driver name of protocol.md 4.1."""
    return f"cyberwave-driver-{twin_uuid[:8]}"


def example_environment(
    fingerprint: str,
    *,
    robot_image: str = DRIVER_IMAGE,
    camera_image: str = DRIVER_IMAGE,
    robot_script: str = ROBOT_SCRIPT,
    camera_script: str = CAMERA_SCRIPT,
    broken: int = 0,
) -> ExampleEnvironment:
    """A fresh environment with new UUIDs, linked to ``fingerprint``.

    ``broken`` is how many extra linked twins have malformed driver params.
    """
    environment_uuid = str(uuid.uuid4())
    robot, wrist, overhead, foreign = (str(uuid.uuid4()) for _ in range(4))
    broken_uuids = tuple(str(uuid.uuid4()) for _ in range(broken))
    robot_asset, camera_asset = str(uuid.uuid4()), str(uuid.uuid4())

    def twin(uid: str, name: str, asset: str, **fields: Any) -> dict[str, Any]:
        return {
            "uuid": uid,
            "name": name,
            "asset_uuid": asset,
            "environment_uuid": environment_uuid,
            "attach_to_twin_uuid": None,
            **fields,
        }

    robot_driver = {
        "docker_image": robot_image,
        "params": [
            "-e",
            "SO101_CALIBRATION=auto",
            "-e",
            f"DRIVER_SCRIPT={robot_script}",
        ],
    }
    twins = [
        twin(
            robot,
            "SO-101 arm",
            robot_asset,
            child_twin_uuids=[wrist],
            metadata={
                "edge_fingerprint": fingerprint,
                "drivers": {"default": robot_driver},
            },
        ),
        twin(
            wrist,
            "Wrist camera",
            camera_asset,
            attach_to_twin_uuid=robot,
            attach_to_link="gripper_link",
            metadata={"edge_fingerprint": fingerprint},
        ),
        twin(
            overhead,
            "Overhead camera",
            camera_asset,
            metadata={"edge_configs": {"edge_fingerprint": fingerprint}},
        ),
        twin(
            foreign,
            "Conveyor (another edge)",
            robot_asset,
            metadata={
                "edge_fingerprint": OTHER_FINGERPRINT,
                "drivers": {"default": {"docker_image": robot_image}},
            },
        ),
    ]
    for index, broken_uuid in enumerate(broken_uuids, start=1):
        twins.append(
            twin(
                broken_uuid,
                f"Badly configured gripper {index}",
                robot_asset,
                metadata={
                    "edge_fingerprint": fingerprint,
                    "drivers": {
                        "default": {
                            "docker_image": robot_image,
                            "params": ["-e", "NOT A PAIR"],
                        }
                    },
                },
            )
        )
    assets = [
        {
            "uuid": robot_asset,
            "name": "SO-101",
            "registry_id": "the-robot-studio/so101",
            "metadata": {"drivers": {"default": {"docker_image": robot_image}}},
            "capabilities": {"can_grip": True, "sensors": []},
        },
        {
            "uuid": camera_asset,
            "name": "Standard USB camera",
            "registry_id": "cyberwave/standard-cam",
            "universal_schema": {"sensors": [{"id": "rgb", "type": "rgb"}]},
            "capabilities": {"sensors": [{"id": "rgb", "type": "rgb"}]},
            "metadata": {
                "drivers": {
                    "default": {
                        "docker_image": camera_image,
                        "params": ["-e", f"DRIVER_SCRIPT={camera_script}"],
                    }
                }
            },
        },
    ]
    fixture = {
        "environment": {"uuid": environment_uuid, "name": "Test cell"},
        "twins": twins,
        "assets": assets,
    }
    return ExampleEnvironment(
        environment_uuid=environment_uuid,
        robot=robot,
        wrist=wrist,
        overhead=overhead,
        foreign=foreign,
        broken=broken_uuids,
        fixture=fixture,
    )


# -- the process -----------------------------------------------------------


def edge_environ(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The process environment: this one without edge settings, plus timings.

    A value of None in ``extra`` removes that variable (back to its default).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_INHERITED_PREFIXES)
    }
    env.update(SHORT_TIMINGS)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class EdgeExited(AssertionError):
    """The edge core exited while a test was waiting for something."""


class EdgeProcess:
    """One ``python -m edge_core`` process at a time on one config dir.

    ``start`` may be called again after ``stop``: each run logs to its own
    file (``edge-1.log``, ``edge-2.log``...) next to the config dir, and
    ``log_text`` reads the current run's log.
    """

    def __init__(
        self,
        config_dir: Path,
        *,
        env: Mapping[str, str | None] | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.env = edge_environ(env)
        self.env["CYBERWAVE_EDGE_CONFIG_DIR"] = str(config_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_path = config_dir.parent / "edge-0.log"
        self.stdout_path = config_dir.parent / "edge-0.out"

    # -- lifecycle --------------------------------------------------------

    def start(self) -> EdgeProcess:
        """Start a new run of the edge core; returns self."""
        if self.running:
            raise RuntimeError("the edge core is already running")
        self.runs += 1
        self.log_path = self.config_dir.parent / f"edge-{self.runs}.log"
        self.stdout_path = self.config_dir.parent / f"edge-{self.runs}.out"
        with self.log_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "edge_core"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the edge core was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        if self._process is None:
            raise RuntimeError("the edge core was never started")
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the edge core did not exit within {timeout:.0f} s; log:\n"
                f"{self.log_tail()}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code."""
        if self._process is None:
            raise RuntimeError("the edge core was never started")
        if self._process.poll() is None:
            self._process.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """End the process however it behaves (teardown)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)

    # -- output -----------------------------------------------------------

    def log_text(self) -> str:
        """The current run's log (the edge core's stderr) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    def error_lines(self) -> list[str]:
        """The current run's ``[ERROR]`` log lines."""
        return [line for line in self.log_lines() if "[ERROR]" in line]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- waiting ----------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float,
        what: str = "the condition",
        interval: float = 0.1,
        allow_exit: bool = False,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy; return that.

        Fails at once (``EdgeExited``) when the edge core exits first,
        unless ``allow_exit``; fails with the log tail on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if not allow_exit and self._process is not None and not self.running:
                raise EdgeExited(
                    f"the edge core exited with {self.returncode} while waiting "
                    f"for {what}; log:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what} did not happen within {timeout:.0f} s; log:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(interval)

    def wait_for_log(self, text: str, *, timeout: float) -> str:
        """Wait for a log line containing ``text``; returns that line."""

        def find() -> str:
            return next((line for line in self.log_lines() if text in line), "")

        return self.wait_for(find, timeout=timeout, what=f"log line {text!r}")

    # -- what the edge core reports ---------------------------------------

    def status_json(self, *, offline: bool = True) -> dict[str, Any]:
        """``cyberwave-edge-core status --json`` with this run's environment."""
        return self.status(offline=offline)[1]

    def status(self, *, offline: bool = True) -> tuple[int, dict[str, Any]]:
        """``status --json``: its exit code and its report."""
        command = [sys.executable, "-m", "edge_core", "status", "--json"]
        if offline:
            command.append("--offline")
        result = subprocess.run(
            command,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(
                f"status --json printed no JSON (exit {result.returncode}): "
                f"{result.stdout[-2000:]} {result.stderr[-2000:]}"
            ) from None
        return result.returncode, report

    def state(self) -> dict[str, Any] | None:
        """The daemon's own state file (``run/edge-core-state.json``), if any."""
        path = self.config_dir / "run" / "edge-core-state.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data


def link_new_twin(
    emulator: Emulator, example: ExampleEnvironment, fingerprint: str, *, name: str
) -> str:
    """Link one more twin with a driver of its own to the edge; its uuid."""
    robot = next(t for t in example.twins if t["uuid"] == example.robot)
    twin_uuid = str(uuid.uuid4())
    emulator.backend.set_twin(
        {
            "uuid": twin_uuid,
            "name": name,
            "asset_uuid": robot["asset_uuid"],
            "environment_uuid": example.environment_uuid,
            "attach_to_twin_uuid": None,
            "metadata": {
                "edge_fingerprint": fingerprint,
                "drivers": {
                    "default": {
                        "docker_image": DRIVER_IMAGE,
                        "params": ["-e", "DRIVER_SCRIPT=sleep 3600"],
                    }
                },
            },
        }
    )
    return twin_uuid


def keepalives(emulator: Emulator) -> int:
    """How many discover keepalives the emulator received so far."""
    return len(emulator.requests("POST", r"/edges/discover$"))


def wait_keepalives(edge: EdgeProcess, emulator: Emulator, count: int) -> None:
    """Wait for ``count`` more keepalives (each a few loop cycles)."""
    target = keepalives(emulator) + count
    edge.wait_for(
        lambda: keepalives(emulator) >= target,
        timeout=STARTUP_TIMEOUT,
        what=f"{count} more keepalives",
    )


def check(report: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The check called ``name`` in a ``status --json`` report."""
    for item in report.get("checks", []):
        if item.get("name") == name:
            found: dict[str, Any] = item
            return found
    raise AssertionError(f"status has no {name!r} check: {report.get('checks')}")


def status_row(report: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The containers row called ``name`` in a ``status --json`` report."""
    for item in report["containers"]:
        if item["name"] == name:
            found: dict[str, Any] = item
            return found
    raise AssertionError(f"status has no row {name!r}: {report['containers']}")


def status_rows(report: Mapping[str, Any], twin_uuid: str) -> list[dict[str, Any]]:
    """Every containers row of ``twin_uuid`` in a ``status --json`` report."""
    return [row for row in report["containers"] if row["twin_uuid"] == twin_uuid]


def running_in_status(report: Mapping[str, Any]) -> set[str]:
    """The names of the containers a ``status --json`` report calls running."""
    return {row["name"] for row in report["containers"] if row["state"] == "running"}


class EdgeProcesses:
    """Every edge core a test started; all of them are ended on close."""

    def __init__(self) -> None:
        self._processes: list[EdgeProcess] = []

    def new(
        self, config_dir: Path, *, env: Mapping[str, str | None] | None = None
    ) -> EdgeProcess:
        """A not yet started edge core on ``config_dir``."""
        process = EdgeProcess(config_dir, env=env)
        self._processes.append(process)
        return process

    def close(self) -> None:
        for process in self._processes:
            process.kill()


def prepare_edge(
    processes: EdgeProcesses,
    workdir: Path,
    *,
    emulator: Emulator,
    broker: Broker,
    fingerprint: str,
    example: ExampleEnvironment | None,
    env: Mapping[str, str | None] | None = None,
    token: str | None = None,
    broker_port: int | None = None,
) -> EdgeProcess:
    """A not yet started edge core wired to ``emulator`` and ``broker``.

    The example environment (when given) is loaded into the emulator and
    selected in ``environment.json``; ``fingerprint.json`` holds
    ``fingerprint`` so the ``fingerprint`` fixture removes the containers.
    ``broker_port`` points the edge at another port than the broker's.
    """
    if example is not None:
        emulator.load_environment(example.fixture, fingerprint)
    config_dir = write_config(
        workdir / "config",
        token=emulator.token if token is None else token,
        envs=backend_envs(
            emulator.url,
            broker_host=broker.host,
            broker_port=broker.port if broker_port is None else broker_port,
        ),
        environment_uuid=example.environment_uuid if example else None,
        fingerprint=fingerprint,
    )
    return processes.new(config_dir, env=env)


@dataclass(frozen=True)
class EdgeFactory:
    """Prepares edge cores wired to one test's emulator, broker and workdir."""

    processes: EdgeProcesses
    workdir: Path
    emulator: Emulator
    broker: Broker
    fingerprint: str

    def __call__(
        self,
        example: ExampleEnvironment | None,
        *,
        env: Mapping[str, str | None] | None = None,
        broker_port: int | None = None,
    ) -> EdgeProcess:
        """A not yet started edge core, as ``prepare_edge`` makes it."""
        return prepare_edge(
            self.processes,
            self.workdir,
            emulator=self.emulator,
            broker=self.broker,
            fingerprint=self.fingerprint,
            example=example,
            env=env,
            broker_port=broker_port,
        )
