"""What the driver supervisor sees and what it decides, as plain data.

``Observation`` is one container as the engine reported it at the start
of a cycle, ``Desired`` a container a linked twin wants; ``Verdict`` holds
the cycle's decisions (park, release, went down, came back) and
``FlapInfo`` a parked driver as ``status`` shows it. The rules that turn
the one into the other live in ``supervisor``; nothing here decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from edge_core.runtime.container import ContainerView

DOWN_STATES = frozenset({"exited", "dead", "created"})
"""States of a container that exists but is not running and not on its way."""

REMOVED = "removed"
"""The state reported for a desired container that no longer exists."""

REMOVING = "removing"
"""The engine's state of a container whose removal is under way."""


# -- what goes in --------------------------------------------------------


@dataclass(frozen=True)
class Desired:
    """A driver container a linked twin wants, by its spec hash."""

    twin_uuid: str
    spec_hash: str


@dataclass(frozen=True)
class Observation:
    """What the engine said about one container at the start of a cycle."""

    name: str
    twin_uuid: str | None
    container_id: str
    spec_hash: str | None
    state: str
    restart_count: int
    exit_code: int | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def down(self) -> bool:
        return self.state in DOWN_STATES


def observations(views: Iterable[ContainerView]) -> tuple[Observation, ...]:
    """Plain observations of the engine's container views."""
    return tuple(
        Observation(
            name=view.name,
            twin_uuid=view.twin_uuid,
            container_id=view.id,
            spec_hash=view.spec_hash,
            state=view.state.value,
            restart_count=view.restart_count,
            exit_code=view.exit_code,
        )
        for view in views
    )


# -- what comes out ------------------------------------------------------


class Park(NamedTuple):
    """Stop ``name`` (and keep Docker from restarting it) for ``cooloff`` s."""

    name: str
    twin_uuid: str
    restarts: int
    window: float
    cooloff: float
    loop: int

    @property
    def description(self) -> str:
        """One sentence for the ``driver_restart_loop`` alert and the log."""
        return (
            f"{self.name} restarted {self.restarts} times in "
            f"{format_seconds(self.window)} (loop {self.loop}); it is stopped for "
            f"{format_duration(self.cooloff)}, then started once more"
        )


class Cleared(NamedTuple):
    """The parking of ``name`` ended for good: resolve its restart-loop alert."""

    name: str
    twin_uuid: str
    reason: str


class WentDown(NamedTuple):
    """A driver seen running is not running any more, and not by our hand."""

    name: str
    twin_uuid: str
    state: str
    exit_code: int | None

    @property
    def detail(self) -> str:
        """What happened, for the ``driver_health`` alert: ``exited with code 1``."""
        if self.state == REMOVED:
            return "removed"
        if self.exit_code is not None and self.state == "exited":
            return f"exited with code {self.exit_code}"
        return self.state


class CameBack(NamedTuple):
    """A driver reported down runs again: resolve its health alert."""

    name: str
    twin_uuid: str


@dataclass(frozen=True)
class Verdict:
    """The decisions of one cycle; each event is reported once."""

    park: tuple[Park, ...] = ()
    cleared: tuple[Cleared, ...] = ()
    went_down: tuple[WentDown, ...] = ()
    came_back: tuple[CameBack, ...] = ()

    @property
    def quiet(self) -> bool:
        """True when nothing changed this cycle."""
        return not (self.park or self.cleared or self.went_down or self.came_back)


@dataclass(frozen=True)
class FlapInfo:
    """A parked driver, for ``status``: when it retries, and how bad it is."""

    twin_uuid: str
    parked_until_wall: float
    loops: int
    restarts: int
    retrying: bool = False
    spec_hash: str | None = None
    """The spec that was parked; another one releases the driver."""

    @property
    def parked_until(self) -> float:
        """``parked_until_wall`` under the name ``DriverStatus`` uses."""
        return self.parked_until_wall


# -- wording ------------------------------------------------------------------


def format_seconds(value: float) -> str:
    """``60 s``, ``2.5 s``."""
    return f"{value:g} s"


def format_duration(seconds: float) -> str:
    """A short human duration, rounded up: ``45 s``, ``9 min``, ``1 h 5 min``."""
    if seconds < 60:
        return f"{max(math.ceil(seconds), 1)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
