"""Under systemd the edge core says READY=1 and keeps the watchdog fed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.edge import EdgeFactory, example_environment

pytestmark = pytest.mark.integration


class NotifySocket:
    """A datagram socket that records what the service sends to systemd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    recorder = NotifySocket(tmp_path / "notify.sock")
    yield recorder
    recorder.close()


def test_ready_and_watchdog_pings(
    fingerprint: str,
    new_edge: EdgeFactory,
    driver_image: str,
    notify_socket: NotifySocket,
) -> None:
    """With NOTIFY_SOCKET and WATCHDOG_USEC set, READY=1 is sent once and
    WATCHDOG=1 keeps arriving well within the watchdog period."""
    edge = new_edge(
        example_environment(fingerprint),
        env={
            "NOTIFY_SOCKET": str(notify_socket.path),
            "WATCHDOG_USEC": "2000000",
            "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": "15",
        },
    ).start()
    edge.wait_for(
        lambda: notify_socket.messages.count("WATCHDOG=1") >= 4,
        timeout=30,
        what="four watchdog pings with a 15 s loop and a 2 s watchdog",
    )
    assert notify_socket.messages.count("READY=1") == 1
    assert edge.stop() == 0
