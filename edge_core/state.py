"""What the running daemon last reported about itself, for ``status``.

The daemon rewrites ``{config}/run/edge-core-state.json`` whenever its
phase or a driver's outcome changes, so a separate ``status`` process can
say "waiting for the backend since 12:03: HTTP 500" or "driver failed:
image missing" without asking the daemon. It holds no secret.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_core.config.files import atomic_write_json, read_regular
from edge_core.logsetup import format_exception_line

log = logging.getLogger(__name__)

STATE_FILE = Path("run") / "edge-core-state.json"


OUTCOMES = ("running", "adopted", "waiting", "failed", "flapping", "held")
"""What became of a driver in the last pass.

``flapping``: parked by the restart-loop rule (``restarts`` and
``parked_until`` say how bad and until when); ``held``: not launched yet
because revival waits (debounce, launch backoff, removal by hand), with
the wait in ``reason``.
"""


@dataclass(frozen=True)
class DriverStatus:
    """The last outcome of one driver container."""

    twin_uuid: str
    container_name: str
    image: str
    outcome: str
    phase: str | None = None
    reason: str | None = None
    restarts: int | None = None
    parked_until: float | None = None
    loops: int | None = None
    """How many restart loops parked a flapping driver so far."""
    spec_hash: str | None = None
    """The spec a flapping driver was parked with."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriverStatus:
        """Read one entry, ignoring keys a newer daemon may have added."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DaemonState:
    """A snapshot of the daemon, written atomically by the daemon only."""

    pid: int
    version: str
    started_at: float
    updated_at: float
    phase: str
    fingerprint: str | None = None
    edge_uuid: str | None = None
    environment_uuid: str | None = None
    backend_error: str | None = None
    backend_token_refused: bool = False
    """The backend's last answer refused the token (HTTP 401 or 403)."""
    environment_error: str | None = None
    mqtt_connected: bool = False
    settings_warnings: tuple[str, ...] = ()
    drivers: tuple[DriverStatus, ...] = ()
    orphans: tuple[str, ...] = ()
    linked_twins: tuple[str, ...] = ()
    without_driver: dict[str, str] = field(default_factory=dict)
    # Driver log lines dropped because the broker was away too long.
    log_lines_dropped: int = 0
    # The last remote restart: request_id, phase (in_progress, completed,
    # failed), at (epoch) and error.
    restart: dict[str, Any] | None = None
    # Epochs since when the backend, and the broker, could not be reached.
    offline_since: float | None = None
    broker_down_since: float | None = None
    # Whether the daemon holds a desired state of the selected environment
    # (downloaded, or read from desired-state.json); None from older daemons.
    desired_known: bool | None = None
    # The Zenoh router's container name when the router is enabled, why it
    # does not run when it failed, what the last look found (``paused``,
    # ``adopted`` …) and what a person did to it that is left as it is.
    zenoh_router: str | None = None
    zenoh_router_error: str | None = None
    zenoh_router_state: str | None = None
    zenoh_router_note: str | None = None
    # One line per lasting problem with a twin file (a refused push, a
    # file that cannot be written, one repaired from its driver's damage).
    twin_file_problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonState:
        """Read a state file; fields an older daemon did not write default."""
        drivers = tuple(DriverStatus.from_json(d) for d in data.get("drivers", ()))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["drivers"] = drivers
        known["settings_warnings"] = tuple(data.get("settings_warnings", ()))
        known["orphans"] = tuple(data.get("orphans", ()))
        known["linked_twins"] = tuple(data.get("linked_twins", ()))
        known["twin_file_problems"] = tuple(data.get("twin_file_problems", ()))
        return cls(**known)


def state_path(config_dir: Path) -> Path:
    return config_dir / STATE_FILE


def read_state(config_dir: Path) -> DaemonState | None:
    """The last state the daemon wrote, or None when there is none usable."""
    try:
        data = json.loads(
            read_regular(state_path(config_dir), follow=False).decode("utf-8")
        )
        return DaemonState.from_json(data)
    except (OSError, ValueError, TypeError):
        return None


class StateWriter:
    """Writes the state file when it changed; a failure is logged once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: dict[str, Any] | None = None
        self._error: str | None = None

    def write(self, state: DaemonState) -> None:
        document = state.to_json()
        comparable = {k: v for k, v in document.items() if k != "updated_at"}
        if comparable == self._written:
            return
        try:
            self._ensure_directory()
            atomic_write_json(self.path, document, mode=0o644)
        except OSError as exc:
            # Tried again every cycle; a full disk is said once, not 240
            # times an hour.
            if str(exc) != self._error:
                log.warning(
                    "could not write %s: %s; status cannot show this daemon's "
                    "state until it can",
                    self.path,
                    format_exception_line(exc),
                )
            self._error = str(exc)
            return
        if self._error is not None:
            log.info("%s is written again", self.path)
        self._error = None
        self._written = comparable

    def _ensure_directory(self) -> None:
        """Make ``run/``; a file in its place is moved aside, never deleted."""
        directory = self.path.parent
        if directory.is_dir():
            return
        if directory.exists() or directory.is_symlink():
            stamp = int(time.time())
            aside = directory.with_name(f"{directory.name}.moved-aside-{stamp}")
            directory.rename(aside)
            log.warning(
                "%s was not a directory; moved it to %s to make the directory",
                directory,
                aside,
            )
        directory.mkdir()
        # The process umask (077) would hide the state from ``status`` run
        # in the owner's shell while we run as root.
        directory.chmod(0o755)
