"""A typed, read-only view over the engine's inspect document of a container.

Callers above the Docker adapter never index the engine's raw JSON: they
read a ``ContainerView``. The view holds a copy of what the engine said at
one moment; it never refreshes itself and never talks to the engine.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge_core.model.spec import (
    LABEL_FINGERPRINT,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
)


class ContainerState(enum.Enum):
    """The engine's ``State.Status`` of a container."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> ContainerState:
        """The state named ``value``; ``UNKNOWN`` for anything unexpected."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNKNOWN


# RFC 3339 with up to nanoseconds, as the engine writes it.
_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from an engine timestamp, or None.

    The engine writes ``0001-01-01T00:00:00Z`` for "never"; that and
    anything unparsable give None. Digits past microseconds are dropped.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value.strip())
    if match is None:
        return None
    if match["base"].startswith("0001-"):
        return None
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    parsed = datetime.fromisoformat(f"{match['base']}.{fraction}{zone}")
    return parsed.astimezone(timezone.utc)


def _env_map(entries: object) -> dict[str, str]:
    if not isinstance(entries, list):
        return {}
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = str(entry).partition("=")
        env[key] = value
    return env


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class ContainerView:
    """What the engine reported about one container when it was inspected."""

    id: str
    name: str
    image: str
    image_id: str
    state: ContainerState
    exit_code: int | None
    restart_count: int
    started_at: datetime | None
    finished_at: datetime | None
    labels: Mapping[str, str] = field(hash=False, compare=False)
    env: Mapping[str, str] = field(hash=False, compare=False)
    health: str | None = None
    privileged: bool = False
    restart_policy: str = ""
    tty: bool = False
    pid: int = 0
    """The main process on the host (0 when not running)."""

    @classmethod
    def from_inspect(cls, attrs: Mapping[str, Any]) -> ContainerView:
        """Build the view from the engine's ``GET /containers/{id}/json``."""
        state = _dict(attrs.get("State"))
        config = _dict(attrs.get("Config"))
        host = _dict(attrs.get("HostConfig"))
        health = _dict(state.get("Health")).get("Status")
        exit_code = state.get("ExitCode")
        return cls(
            id=str(attrs.get("Id", "")),
            name=str(attrs.get("Name", "")).lstrip("/"),
            image=str(config.get("Image", "")),
            image_id=str(attrs.get("Image", "")),
            state=ContainerState.parse(state.get("Status")),
            exit_code=exit_code if isinstance(exit_code, int) else None,
            restart_count=_int(attrs.get("RestartCount")),
            started_at=parse_timestamp(state.get("StartedAt")),
            finished_at=parse_timestamp(state.get("FinishedAt")),
            labels={str(k): str(v) for k, v in _dict(config.get("Labels")).items()},
            env=_env_map(config.get("Env")),
            health=str(health) if health else None,
            privileged=bool(host.get("Privileged", False)),
            restart_policy=str(_dict(host.get("RestartPolicy")).get("Name") or ""),
            tty=bool(config.get("Tty", False)),
            pid=_int(state.get("Pid")),
        )

    @property
    def twin_uuid(self) -> str | None:
        """The twin this container serves (label ``io.cyberwave.edge.twin``)."""
        return self.labels.get(LABEL_TWIN)

    @property
    def service(self) -> str | None:
        """The service name of a multi-service driver or the worker."""
        return self.labels.get(LABEL_SERVICE)

    @property
    def spec_hash(self) -> str | None:
        """The spec hash the container was created from."""
        return self.labels.get(LABEL_SPEC_HASH)

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the edge core that created the container."""
        return self.labels.get(LABEL_FINGERPRINT)

    @property
    def running(self) -> bool:
        """True while the engine reports the container as running."""
        return self.state is ContainerState.RUNNING

    def file_inode(self, path: str) -> int | None:
        """The inode of ``path`` as the running container sees it, if known.

        Read through ``/proc/<pid>/root``: a bind-mounted file keeps the
        inode of the host file the container was started with, even when
        that file was since deleted or replaced on the host.
        """
        if not self.running or self.pid <= 0:
            return None
        try:
            return os.stat(f"/proc/{self.pid}/root/{path.lstrip('/')}").st_ino
        except OSError:
            return None

    def belongs_to(self, fingerprint: str) -> bool:
        """True when the container carries ``fingerprint`` as its owner label."""
        return bool(fingerprint) and self.fingerprint == fingerprint
