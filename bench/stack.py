"""The real parts a benchmark run needs, and the promise to remove them.

``Stack`` builds the bench driver image from busybox-static, starts a
Mosquitto broker, the backend emulator (as its own process, so the
bench's polling never competes with it for the GIL) and, on request, a
local ``docker-registry``. For each timed run it prepares a fresh world:
a new fingerprint, a new environment with N linked twins (each with its
own asset and driver container) loaded into the emulator, and a config
directory for the edge core. Every fingerprint it hands out is recorded,
and ``close`` removes every container carrying one of them, the child
processes and the temporary files, however the bench ends.

It does not time anything and does not start the edge core; see
``bench.runs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import ImageNotFound, NotFound

from edge_core.config.files import atomic_write_json
from tests.emulator.broker import Broker
from tests.support.images import busybox_rootfs
from tests.support.ports import free_port, wait_for_port
from tests.support.registry import LocalRegistry

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
FINGERPRINT_LABEL = "io.cyberwave.edge.fingerprint"
DRIVER_IMAGE = "cw-bench/driver:local"
CONTENT_LABEL = "io.cyberwave.bench.content"
# One line at start so the log forwarder has something to follow, then
# nothing: the bench measures start-up, not log throughput.
DRIVER_COMMAND = 'echo "INFO bench driver up"; while :; do sleep 3600; done'


class BenchError(RuntimeError):
    """A part of the bench could not be set up or a run went wrong."""


# Bytecode for every child process, outside the source tree. Machines that
# set PYTHONDONTWRITEBYTECODE would otherwise compile every edge_core
# module on every start, which an installed product never does.
PYCACHE = Path(tempfile.gettempdir()) / "cw-bench-pycache"
WARM_IMPORTS = (
    "import edge_core.daemon, edge_core.cli.main, docker, httpx, "
    "paho.mqtt.client, psutil, click, tests.emulator.server"
)


def python() -> str:
    """The interpreter every child process uses: the repo venv's, else ours."""
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: no inherited Cyberwave or Zenoh
    setting, bytecode cached in ``PYCACHE``, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CYBERWAVE_", "ZENOH_"))
        and key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra or {})
    return env


def warm_bytecode() -> None:
    """Compile what the children import into ``PYCACHE`` (once per machine)."""
    subprocess.run(
        [python(), "-c", WARM_IMPORTS], cwd=ROOT, env=child_env(), check=True
    )


def _rootfs(extra: Mapping[str, bytes] | None = None) -> bytes:
    return busybox_rootfs(extra=dict(extra or {}))


def _import(client: docker.DockerClient, tag: str, rootfs: bytes, content: str) -> str:
    repository, _, version = tag.rpartition(":")
    changes = [
        "ENV PATH=/bin",
        f"CMD {json.dumps(['sh', '-c', DRIVER_COMMAND])}",
        "WORKDIR /",
        f"LABEL {CONTENT_LABEL}={content}",
    ]
    client.api.import_image_from_data(
        rootfs, repository=repository, tag=version, changes=changes
    )
    return str(client.api.inspect_image(tag)["Id"])


def ensure_driver_image(client: docker.DockerClient, tag: str = DRIVER_IMAGE) -> str:
    """Build the bench driver image unless an identical one exists; its id."""
    rootfs = _rootfs()
    content = hashlib.sha256(rootfs + DRIVER_COMMAND.encode()).hexdigest()
    try:
        attrs = client.api.inspect_image(tag)
    except ImageNotFound:
        attrs = {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(CONTENT_LABEL) == content:
        return str(attrs["Id"])
    return _import(client, tag, rootfs, content)


@dataclass(frozen=True)
class Twin:
    """One linked twin of a run and the driver container it should get."""

    uuid: str
    asset_uuid: str
    image: str

    @property
    def container_name(self) -> str:
        """The driver container name of protocol.md 4.1."""
        return f"cyberwave-driver-{self.uuid[:8]}"


@dataclass(frozen=True)
class RunWorld:
    """Everything one timed run works in; unique to that run."""

    fingerprint: str
    environment_uuid: str
    config_dir: Path
    twins: tuple[Twin, ...]

    @property
    def label_filter(self) -> dict[str, str]:
        """The Docker filter that selects exactly this run's containers."""
        return {"label": f"{FINGERPRINT_LABEL}={self.fingerprint}"}


def environment_fixture(environment_uuid: str, twins: Sequence[Twin]) -> dict[str, Any]:
    """An emulator fixture: one environment, each twin linked with its own asset."""
    driver = {"params": ["-e", "BENCH_DRIVER=1"]}
    return {
        "environment": {"uuid": environment_uuid, "name": "Bench cell"},
        "twins": [
            {
                "uuid": twin.uuid,
                "name": f"Bench robot {index}",
                "asset_uuid": twin.asset_uuid,
                "environment_uuid": environment_uuid,
                "attach_to_twin_uuid": None,
                "metadata": {"edge_fingerprint": "<FP>"},
            }
            for index, twin in enumerate(twins, start=1)
        ],
        "assets": [
            {
                "uuid": twin.asset_uuid,
                "name": f"Bench robot model {index}",
                "registry_id": f"cw-bench/robot-{index}",
                "metadata": {
                    "drivers": {"default": {"docker_image": twin.image, **driver}}
                },
            }
            for index, twin in enumerate(twins, start=1)
        ],
    }


class Stack:
    """The broker, the emulator, the optional registry and the cleanup duty."""

    def __init__(
        self, client: docker.DockerClient, workdir: Path, *, log_connects: bool = False
    ) -> None:
        self.client = client
        self.workdir = workdir
        self.log_connects = log_connects
        self.token = f"cw_bench_{secrets.token_hex(12)}"
        self.run_id = secrets.token_hex(3)
        self.broker: Broker | None = None
        self.registry: LocalRegistry | None = None
        self.emulator_url = ""
        self.registry_images: tuple[str, ...] = ()
        self._emulator: subprocess.Popen[bytes] | None = None
        self._fingerprints: list[str] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._http = httpx.Client(timeout=30)

    # -- set-up ---------------------------------------------------------

    def start(self) -> None:
        """Build the driver image and start the broker and the emulator."""
        ensure_driver_image(self.client)
        warm_bytecode()
        self.broker = Broker(
            workdir=self.workdir / "mosquitto", log_connects=self.log_connects
        )
        self.broker.start()
        self._start_emulator()

    def _start_emulator(self) -> None:
        assert self.broker is not None
        port = free_port()
        log = (self.workdir / "emulator.log").open("wb")
        with log:
            self._emulator = subprocess.Popen(
                [
                    python(),
                    "-m",
                    "tests.emulator",
                    "--port",
                    str(port),
                    "--token",
                    self.token,
                    "--broker-host",
                    self.broker.host,
                    "--broker-port",
                    str(self.broker.port),
                ],
                cwd=ROOT,
                env=child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if not wait_for_port("127.0.0.1", port, timeout=20):
            raise BenchError(
                f"the backend emulator did not listen on port {port}; see "
                f"{self.workdir / 'emulator.log'}"
            )
        self.emulator_url = f"http://127.0.0.1:{port}"

    def start_registry(self, count: int, *, size: int = 2_000_000) -> tuple[str, ...]:
        """Start a local registry holding ``count`` distinct driver images.

        Each image has its own random layer of ``size`` bytes, so pulling
        it really downloads it. Returns the references, in the registry.
        """
        self.registry = LocalRegistry(self.workdir / "registry")
        self.registry.start()
        for index in range(count):
            tag = f"cw-bench/pulled-{index}:build"
            rootfs = _rootfs({"app/random.bin": os.urandom(size)})
            _import(self.client, tag, rootfs, hashlib.sha256(rootfs).hexdigest())
            try:
                ref = self.registry.push(
                    self.client, tag, f"cw-bench/driver-{index}", "1"
                )
            finally:
                self.client.api.remove_image(tag, force=True)
            self.registry_images = (*self.registry_images, ref)
        return self.registry_images

    def drop_registry_images(self) -> None:
        """Remove the local copies of the registry images, so the next pull is real."""
        for ref in self.registry_images:
            try:
                self.client.api.remove_image(ref, force=True)
            except NotFound:
                continue

    # -- one run --------------------------------------------------------

    @property
    def fingerprint_prefix(self) -> str:
        """What every fingerprint of this bench run starts with."""
        return f"cwbench-{self.run_id}-"

    def new_world(self, count: int, images: Sequence[str] | None = None) -> RunWorld:
        """A fresh fingerprint, environment and config dir with ``count`` twins."""
        fingerprint = f"{self.fingerprint_prefix}{secrets.token_hex(5)}"
        self._fingerprints.append(fingerprint)
        environment_uuid = str(uuid.uuid4())
        twins = tuple(
            Twin(
                uuid=str(uuid.uuid4()),
                asset_uuid=str(uuid.uuid4()),
                image=images[index % len(images)] if images else DRIVER_IMAGE,
            )
            for index in range(count)
        )
        fixture = environment_fixture(environment_uuid, twins)
        answer = self._http.post(
            f"{self.emulator_url}/_emulator/environment",
            json={"fingerprint": fingerprint, "fixture": fixture},
        )
        if answer.status_code != 200:
            raise BenchError(
                f"the emulator refused the bench environment: "
                f"{answer.status_code} {answer.text[:300]}"
            )
        config_dir = self.workdir / fingerprint
        self._write_config(config_dir, fingerprint, environment_uuid)
        return RunWorld(fingerprint, environment_uuid, config_dir, twins)

    def _write_config(
        self, config_dir: Path, fingerprint: str, environment_uuid: str
    ) -> None:
        assert self.broker is not None
        config_dir.mkdir(mode=0o700, parents=True)
        files: dict[str, tuple[dict[str, Any], int]] = {
            "credentials.json": (
                {
                    "token": self.token,
                    "envs": {
                        "CYBERWAVE_BASE_URL": self.emulator_url,
                        "CYBERWAVE_MQTT_HOST": self.broker.host,
                        "CYBERWAVE_MQTT_PORT": str(self.broker.port),
                    },
                },
                0o600,
            ),
            "environment.json": ({"uuid": environment_uuid}, 0o600),
            "fingerprint.json": ({"fingerprint": fingerprint}, 0o644),
        }
        for name, (document, mode) in files.items():
            atomic_write_json(config_dir / name, document, mode=mode)

    def recorded_requests(self) -> list[dict[str, Any]]:
        """Every API request the emulator recorded since the last clear."""
        answer = self._http.get(f"{self.emulator_url}/_emulator/requests")
        if answer.status_code != 200:
            raise BenchError(
                f"the emulator did not list its requests: {answer.status_code}"
            )
        found: list[dict[str, Any]] = answer.json()
        return found

    def clear_requests(self) -> None:
        """Make the emulator forget the requests it recorded so far."""
        self._http.delete(f"{self.emulator_url}/_emulator/requests")

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a child process that ``close`` will stop if it still runs."""
        child = subprocess.Popen(list(argv), **kwargs)
        self._children.append(child)
        return child

    def running_count(self, world: RunWorld) -> int:
        """How many of the run's containers Docker reports as running."""
        filters = {**world.label_filter, "status": "running"}
        return len(self.client.api.containers(filters=filters))

    def remove_containers(self, fingerprint: str) -> int:
        """Remove every container labelled with ``fingerprint``; how many."""
        filters = {"label": f"{FINGERPRINT_LABEL}={fingerprint}"}
        ids = [c["Id"] for c in self.client.api.containers(all=True, filters=filters)]

        def remove(container_id: str) -> None:
            try:
                self.client.api.remove_container(container_id, force=True, v=True)
            except NotFound:
                return

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(remove, ids))
        return len(ids)

    # -- tear-down ------------------------------------------------------

    def close(self) -> None:
        """Stop every child, remove every bench container, delete the files."""
        for child in [*self._children, self._emulator]:
            if child is not None:
                stop_process(child)
        # A create the engine accepted just before a child was stopped can
        # still complete, so look again until a pass finds nothing.
        removed = 0
        for _ in range(10):
            found = sum(self.remove_containers(fp) for fp in self._fingerprints)
            if not found:
                break
            removed += found
            time.sleep(0.5)
        if removed:
            print(f"bench: removed {removed} leftover container(s)", file=sys.stderr)
        self.drop_registry_images()
        if self.registry is not None:
            self.registry.stop()
        if self.broker is not None:
            self.broker.close()
        self._http.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop_process(child: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; a no-op when it already ended."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout)


@contextmanager
def open_stack(keep: bool = False, *, log_connects: bool = False) -> Iterator[Stack]:
    """A started ``Stack`` that is always closed, also on Ctrl-C or SIGTERM.

    SIGTERM is turned into ``KeyboardInterrupt`` for the duration, so the
    same clean-up path runs for both. ``keep`` leaves the work directory
    (logs, config dirs) in place for a post-mortem. ``log_connects`` makes
    the broker log every client that connects (``Broker.log_path``).
    """
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise BenchError(
            f"the Docker engine does not answer ({exc}); start it (scripts/setup-host)"
        ) from exc
    workdir = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    stack = Stack(client=client, workdir=workdir, log_connects=log_connects)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.start()
        yield stack
    finally:
        if keep:
            kept = workdir.with_name(workdir.name + "-kept")
            shutil.copytree(workdir, kept, dirs_exist_ok=True, symlinks=True)
            print(f"bench: logs and config dirs kept in {kept}", file=sys.stderr)
        stack.close()
        signal.signal(signal.SIGTERM, previous)
        client.close()
