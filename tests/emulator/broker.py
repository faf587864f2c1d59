"""A real Mosquitto broker for tests, on a free loopback port.

Tests talk to the same broker software the platform is compatible with,
never to a fake: plain or TLS (certificates from ``certs``), anonymous or
with a password file, and optionally logging every CONNECT so a test can
count reconnects. ``stop`` and ``start`` keep the port, so a client can be
watched reconnecting to "the same" broker.

It does not pull, install or containerise anything: ``/usr/sbin/mosquitto``
must be installed (``scripts/setup-host``), and a missing binary is an
error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.emulator.certs import TlsFiles, make_tls_files

DEFAULT_EXECUTABLE = "/usr/sbin/mosquitto"
_CONNECT_LINE = "New client connected"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """One Mosquitto process: plain or TLS listener on ``host:port``."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        tls: bool = False,
        log_connects: bool = False,
        users: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        executable: str | None = None,
        own_session: bool = False,
    ) -> None:
        self.own_session = own_session
        """Run in a session of its own, so a Ctrl-C meant for the caller
        does not stop the broker before the caller's cleanup does."""
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edge-core-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.log_connects = log_connects
        self.users = dict(users or {})
        self.executable = executable or shutil.which("mosquitto") or DEFAULT_EXECUTABLE
        self.port = free_port(self.host)
        self.log_path = self.workdir / "mosquitto.log"
        self.tls_files: TlsFiles | None = (
            make_tls_files(self.workdir / "tls") if tls else None
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def ca_cert(self) -> str | None:
        """Path of the CA that signed the server certificate (None when plain)."""
        return str(self.tls_files.ca_cert) if self.tls_files else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port accepts connections.

        The first start moves to another free port if the chosen one was
        taken in the meantime; later starts insist on the same port.
        """
        if self.running:
            return
        if not Path(self.executable).exists():
            raise RuntimeError(
                f"mosquitto not found at {self.executable}; install the mosquitto "
                f"package (scripts/setup-host)"
            )
        tries = 1 if self._started_once else 3
        for attempt in range(1, tries + 1):
            try:
                self._launch(timeout)
            except RuntimeError:
                if attempt == tries:
                    raise
                self.port = free_port(self.host)
                continue
            self._started_once = True
            return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); a no-op when stopped."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def connect_count(self) -> int:
        """How many CONNECTs the broker accepted so far (needs ``log_connects``)."""
        if not self.log_connects:
            raise RuntimeError("Broker(log_connects=True) is needed to count connects")
        if not self.log_path.exists():
            return 0
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if _CONNECT_LINE in line)

    def close(self) -> None:
        """Stop the broker and remove its working directory if it made one."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "tls" if self.tls else "plain"
        return f"Broker({kind} {self.host}:{self.port})"

    # -- internals -----------------------------------------------------------

    def _launch(self, timeout: float) -> None:
        config = self._write_config()
        output = (self.workdir / "mosquitto.out").open("ab")
        with output:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.own_session,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(
                    f"mosquitto exited at start on port {self.port}: {self._tail()}"
                )
            if _accepts(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not listen on port {self.port} in {timeout} s"
        )

    def _write_config(self) -> Path:
        lines = [
            "persistence false",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
        ]
        # Mosquitto drops root privileges to a "mosquitto" user by default,
        # which could not read a root-owned temporary directory.
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.insert(0, "user root")
        if self.log_connects:
            lines += ["log_type notice", "connection_messages true"]
        else:
            lines.append("connection_messages false")
        if self.users:
            lines += ["allow_anonymous false", f"password_file {self._password_file()}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_files:
            lines += [
                f"cafile {self.tls_files.ca_cert}",
                f"certfile {self.tls_files.server_cert}",
                f"keyfile {self.tls_files.server_key}",
                "require_certificate false",
            ]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _password_file(self) -> Path:
        path = self.workdir / "passwords"
        path.write_text("")
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for user, password in self.users.items():
            subprocess.run(
                [tool, "-b", str(path), user, password],
                check=True,
                capture_output=True,
            )
        path.chmod(0o600)
        return path

    def _tail(self) -> str:
        parts = []
        for name in ("mosquitto.out", "mosquitto.log"):
            path = self.workdir / name
            if path.exists():
                parts += path.read_text(errors="replace").strip().splitlines()[-5:]
        return " | ".join(parts) or "no output"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
