"""The per-model file lock between threads and processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_core.models.errors import LockTimeout
from edge_core.models.lock import file_lock


def test_second_holder_waits_until_the_first_releases(tmp_path: Path) -> None:
    """A second thread gets the lock only after the first one left its block."""
    path = tmp_path / "m.lock"
    order: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with file_lock(path, timeout=5, what="model m"):
            order.append("first in")
            entered.set()
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(5)
    with file_lock(path, timeout=5, what="model m"):
        order.append("second in")
    thread.join()

    assert order == ["first in", "first out", "second in"]


def test_timeout_raises_lock_timeout_naming_the_object(tmp_path: Path) -> None:
    """Waiting longer than the timeout raises ``LockTimeout`` with the object named."""
    path = tmp_path / "m.lock"
    with (
        file_lock(path, timeout=5, what="model m"),
        pytest.raises(LockTimeout, match="model m stayed locked"),
        file_lock(path, timeout=0.2, what="model m"),
    ):
        pass


def test_created_lock_files_are_reported_once(tmp_path: Path) -> None:
    """``on_created`` runs for the call that created the file, not later ones."""
    created: list[Path] = []
    path = tmp_path / "m.lock"
    for _ in range(2):
        with file_lock(path, timeout=1, what="m", on_created=created.append):
            pass
    assert created == [path]
    assert path.exists()


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    """``kill -9`` of the process holding the lock frees it at once."""
    path = tmp_path / "m.lock"
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from edge_core.models.lock import file_lock
        with file_lock(Path({str(path)!r}), timeout=5, what="m"):
            Path({str(ready)!r}).write_text("locked")
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline, "the child never took the lock"
            time.sleep(0.05)
        with pytest.raises(LockTimeout), file_lock(path, timeout=0.2, what="m"):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        with file_lock(path, timeout=5, what="m"):
            pass
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
