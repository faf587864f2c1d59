"""Instruments for the fault-injection tests: watch, count and break things.

The fault tests break one real part at a time (a driver container, the
broker, the backend, the disk, the edge core process itself) and check
what the edge core does about it. This module holds what they need to see
the effect from outside the edge core:

- ``CountingProxy`` sits between the edge core and Mosquitto and records
  every TCP connection the edge core opens, even while the broker is
  stopped (a connection then gets a reset, as a closed port would);
- ``broker_sessions`` reads the CONNECTs Mosquitto accepted from its log;
- ``RunningWatch`` samples driver containers in the background and
  remembers every moment one of them was not running or was replaced;
- ``container_facts`` is the identity of each container (id, start time,
  restart count) to compare before and after a fault;
- ``small_tmpfs`` and ``fill_up`` give a config dir on a file system that
  can be filled to the last byte;
- ``reconnect_offsets`` is the schedule of a capped exponential backoff,
  from which a test derives how many attempts a period may hold.

It asserts nothing and starts no edge core.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import selectors
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import docker

from edge_core.model.spec import LABEL_FINGERPRINT
from tests.emulator.broker import Broker

# -- connections to the broker ------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One TCP connection the proxy accepted.

    ``forwarded`` is False when the broker behind the proxy refused it.
    """

    at: float
    forwarded: bool


class CountingProxy:
    """A loopback TCP proxy that records every connection made through it.

    Each accepted connection is recorded, then forwarded to
    ``upstream_host:upstream_port``. When the upstream refuses, the client
    connection is reset at once, so a client sees a broker that is down
    and the attempt is still counted. Closing either side closes both.
    ``stall`` stops moving bytes on every connection (a link that stays up
    but carries nothing, as a congested uplink), ``resume`` moves them again.
    ``unix`` makes the same proxy between two Unix sockets (the Docker
    engine's, for one).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_path: Path | None = None,
        upstream_path: Path | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._upstream_path = upstream_path
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._stalled = threading.Event()
        if listen_path is None:
            self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._server.bind((self.host, 0))
            self.port: int = self._server.getsockname()[1]
        else:
            self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._server.bind(str(listen_path))
            self.port = 0
        self._server.listen(64)
        self._server.settimeout(0.1)
        self._thread = threading.Thread(
            target=self._accept_loop, name="counting-proxy", daemon=True
        )
        self._thread.start()

    @classmethod
    def unix(cls, listen_path: Path, upstream_path: Path) -> CountingProxy:
        """A proxy listening at ``listen_path`` for ``upstream_path``."""
        return cls("", 0, listen_path=listen_path, upstream_path=upstream_path)

    def attempts(self, *, since: float | None = None) -> list[Attempt]:
        """Connections so far, oldest first, from ``since`` (epoch) on."""
        with self._lock:
            found = list(self._attempts)
        return [a for a in found if since is None or a.at >= since]

    def stall(self) -> None:
        """Stop moving bytes; the connections stay open."""
        self._stalled.set()

    def resume(self) -> None:
        """Move bytes again."""
        self._stalled.clear()

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._closed.set()
        self._thread.join(5)
        self._server.close()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            _close_quietly(sock)

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        at = time.time()
        try:
            upstream = self._connect_upstream()
        except OSError:
            with self._lock:
                self._attempts.append(Attempt(at, forwarded=False))
            _reset(client)
            return
        with self._lock:
            self._attempts.append(Attempt(at, forwarded=True))
            self._sockets.update((client, upstream))
        threading.Thread(
            target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
        ).start()

    def _connect_upstream(self) -> socket.socket:
        if self._upstream_path is None:
            return socket.create_connection(self._upstream, timeout=2.0)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self._upstream_path))
        except OSError:
            upstream.close()
            raise
        return upstream

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self._closed.is_set():
                if self._stalled.is_set():
                    time.sleep(0.05)
                    continue
                if not self._forward(selector, peers):
                    break
        for sock in peers:
            _close_quietly(sock)
        with self._lock:
            self._sockets.difference_update(peers)

    @staticmethod
    def _forward(
        selector: selectors.BaseSelector,
        peers: dict[socket.socket, socket.socket],
    ) -> bool:
        """Move what arrived; False once either side is gone."""
        for key, _ in selector.select(timeout=0.2):
            source = key.fileobj
            assert isinstance(source, socket.socket)
            try:
                data = source.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return False
            if not data:
                return False
            try:
                peers[source].sendall(data)
            except BlockingIOError:
                peers[source].setblocking(True)
                peers[source].sendall(data)
                peers[source].setblocking(False)
            except OSError:
                return False
        return True


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, the way a port nobody listens on answers."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close_quietly(sock)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


_SESSION_LINE = re.compile(r"^(\d+): New client connected from \S+ as (\S+) ")


@dataclass(frozen=True)
class Session:
    """One CONNECT Mosquitto accepted: when (whole seconds) and which client."""

    at: int
    client_id: str


def broker_sessions(broker: Broker, *, client_prefix: str = "") -> list[Session]:
    """Every CONNECT the broker accepted, oldest first (needs ``log_connects``).

    Only clients whose id starts with ``client_prefix`` are returned; the
    edge core's session ids start with ``edge-core_live_``.
    """
    if not broker.log_path.exists():
        return []
    sessions = []
    for line in broker.log_path.read_text(errors="replace").splitlines():
        match = _SESSION_LINE.match(line)
        if match and match.group(2).startswith(client_prefix):
            sessions.append(Session(int(match.group(1)), match.group(2)))
    return sessions


def reconnect_offsets(initial: float, maximum: float, within: float) -> list[float]:
    """When a client backing off from ``initial`` doubling up to ``maximum``
    tries again, as offsets from the loss of its connection, up to ``within``.

    The waits are the least the backoff allows: a busy machine only makes
    the attempts later, so no more attempts than these fit in ``within``.
    """
    offsets: list[float] = []
    delay, at = initial, 0.0
    while at + delay <= within:
        at += delay
        offsets.append(at)
        delay = min(delay * 2, maximum)
    return offsets


# -- driver containers -------------------------------------------------------


@dataclass(frozen=True)
class ContainerFact:
    """Who a container is: its id, when its process started, how often
    Docker restarted it, and its state."""

    id: str
    started_at: str
    restart_count: int
    state: str
    exit_code: int
    restart_policy: str


def container_facts(
    client: docker.DockerClient, fingerprint: str
) -> dict[str, ContainerFact]:
    """The facts of every container carrying ``fingerprint``, by name."""
    label = f"{LABEL_FINGERPRINT}={fingerprint}"
    facts: dict[str, ContainerFact] = {}
    for item in client.api.containers(all=True, filters={"label": label}):
        try:
            attrs = client.api.inspect_container(item["Id"])
        except docker.errors.NotFound:
            continue
        state = attrs["State"]
        facts[attrs["Name"].lstrip("/")] = ContainerFact(
            id=attrs["Id"],
            started_at=state["StartedAt"],
            restart_count=int(attrs.get("RestartCount") or 0),
            state=state["Status"],
            exit_code=int(state.get("ExitCode") or 0),
            restart_policy=attrs["HostConfig"]["RestartPolicy"]["Name"],
        )
    return facts


class RunningWatch:
    """Samples containers in the background; remembers every bad sighting.

    A sighting is bad when a watched container is missing, not running, or
    has another id or start time than when the watch began. Use it as a
    context manager around the fault; ``problems`` lists what was seen.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        fingerprint: str,
        names: Iterable[str],
        *,
        interval: float = 0.2,
    ) -> None:
        self._client = client
        self._fingerprint = fingerprint
        self._names = sorted(names)
        self._interval = interval
        self._baseline: dict[str, ContainerFact] = {}
        self._problems: list[str] = []
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="running-watch", daemon=True
        )

    @property
    def samples(self) -> int:
        """How many times the containers were looked at."""
        return self._samples

    @property
    def problems(self) -> list[str]:
        """Every bad sighting so far, oldest first."""
        return list(self._problems)

    def __enter__(self) -> RunningWatch:
        self._baseline = container_facts(self._client, self._fingerprint)
        missing = [name for name in self._names if name not in self._baseline]
        if missing:
            raise RuntimeError(f"cannot watch containers that do not exist: {missing}")
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                facts = container_facts(self._client, self._fingerprint)
            except docker.errors.APIError as exc:
                self._problems.append(f"engine error while looking: {exc}")
            else:
                self._samples += 1
                self._problems.extend(self._judge(facts))
            self._stop.wait(self._interval)

    def _judge(self, facts: dict[str, ContainerFact]) -> list[str]:
        problems = []
        for name in self._names:
            now, before = facts.get(name), self._baseline[name]
            if now is None:
                problems.append(f"{name} was missing")
            elif now.id != before.id:
                problems.append(
                    f"{name} was replaced ({before.id[:12]} -> {now.id[:12]})"
                )
            elif now.state != "running" or now.started_at != before.started_at:
                problems.append(
                    f"{name} was {now.state}, started {now.started_at} "
                    f"(watch began with {before.started_at})"
                )
        return problems


# -- a file system that can be filled ------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, *, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``path`` (created; needs root).

    On exit it is unmounted; when a container still holds a file of it,
    lazily, so the memory goes once the container is removed.
    """
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(
                ["umount", "-l", str(path)], capture_output=True, check=False
            )


def fill_up(directory: Path, name: str = "filler.bin") -> Path:
    """Write ``directory/name`` until its file system has no byte left."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return path


def tree_bytes(directory: Path, *, skip: Iterable[str] = ()) -> dict[str, bytes]:
    """The content of every regular file under ``directory``, by relative path."""
    skipped = set(skip)
    found: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        if relative in skipped or not path.is_file() or path.is_symlink():
            continue
        found[relative] = path.read_bytes()
    return found
