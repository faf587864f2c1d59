"""Turn desired driver containers and observed containers into steps.

The planner is pure: it sees frozen specs and plain observations, never
Docker. An empty plan means converged. It never plans the removal of a
container that is not wanted any more: a driver whose twin was unlinked is
reported as an orphan and left for a person to remove.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from edge_core.model.spec import ContainerSpec


class Observed(Protocol):
    """What the planner needs to know about an existing container."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> object: ...

    @property
    def spec_hash(self) -> str | None: ...


class Action(Enum):
    LAUNCH = "launch"
    RECREATE = "recreate"
    RELAUNCH = "relaunch"


@dataclass(frozen=True)
class Launch:
    """Create and start ``spec``, removing any container of the same name."""

    spec: ContainerSpec
    action: Action
    reason: str


@dataclass(frozen=True)
class Plan:
    """The ordered steps of one pass, plus what was decided not to touch."""

    launches: tuple[Launch, ...] = ()
    adopted: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return not self.launches


def _state_name(state: object) -> str:
    value = getattr(state, "value", state)
    return str(value)


def _decide(spec: ContainerSpec, current: Observed | None) -> Launch | str:
    """One launch, or the word for leaving the container as it is."""
    if current is None:
        return Launch(spec, Action.LAUNCH, "no container yet")

    if current.spec_hash != spec.spec_hash:
        return Launch(
            spec,
            Action.RECREATE,
            f"spec changed ({(current.spec_hash or 'none')[:12]} "
            f"-> {spec.spec_hash[:12]})",
        )

    state = _state_name(current.state)
    if state == "running":
        return "adopted"
    if state == "restarting":
        return "waiting"
    return Launch(spec, Action.RELAUNCH, f"container is {state}")


def plan(desired: Sequence[ContainerSpec], current: Iterable[Observed]) -> Plan:
    """Plan the steps that make ``current`` match ``desired``."""
    by_name = {container.name: container for container in current}
    wanted = {spec.name for spec in desired}

    launches: list[Launch] = []
    adopted: list[str] = []
    waiting: list[str] = []
    for spec in desired:
        decision = _decide(spec, by_name.get(spec.name))
        if isinstance(decision, Launch):
            launches.append(decision)
        elif decision == "adopted":
            adopted.append(spec.name)
        else:
            waiting.append(spec.name)

    orphans = sorted(
        name
        for name in by_name
        if name.startswith("cyberwave-driver-") and name not in wanted
    )
    return Plan(
        launches=tuple(launches),
        adopted=tuple(adopted),
        waiting=tuple(waiting),
        orphans=tuple(orphans),
    )
