"""Turn desired driver containers and observed containers into steps.

The planner is pure: it sees frozen specs and plain observations, never
Docker. An empty plan means converged. It never plans the removal of a
container that is not wanted any more: a driver whose twin was unlinked is
reported as an orphan and left for a person to remove.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from edge_core.model.spec import LABEL_SERVICE, LABEL_TWIN, ContainerSpec


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
    paused: tuple[str, ...] = ()
    """Paused by a person (``docker pause``): left as they are."""
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
    if state == "paused":
        return "paused"
    return Launch(spec, Action.RELAUNCH, f"container is {state}")


def plan(desired: Sequence[ContainerSpec], current: Iterable[Observed]) -> Plan:
    """Plan the steps that make ``current`` match ``desired``."""
    by_name = {container.name: container for container in current}
    wanted = {spec.name for spec in desired}

    launches: list[Launch] = []
    left: dict[str, list[str]] = {"adopted": [], "waiting": [], "paused": []}
    for spec in desired:
        decision = _decide(spec, by_name.get(spec.name))
        if isinstance(decision, Launch):
            launches.append(decision)
        else:
            left[decision].append(spec.name)

    orphans = sorted(
        name
        for name in by_name
        if name.startswith("cyberwave-driver-") and name not in wanted
    )
    return Plan(
        launches=tuple(launches),
        adopted=tuple(left["adopted"]),
        waiting=tuple(left["waiting"]),
        paused=tuple(left["paused"]),
        orphans=tuple(orphans),
    )


class Labelled(Protocol):
    """A container as ``renamed`` needs to see it."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def running(self) -> bool: ...


def renamed(
    desired: Sequence[ContainerSpec], current: Iterable[Labelled]
) -> dict[str, str]:
    """Containers of ours that serve a desired driver under another name.

    A person may ``docker rename`` a driver; launching the desired name
    anew would then run two drivers for one device. Returns the current
    name of each such container and the name to give it back (a running
    one first when there are several), for desired names that are free.
    """
    containers = list(current)
    taken = {container.name for container in containers}
    wanted = {spec.name for spec in desired}
    found: dict[str, str] = {}
    for spec in desired:
        if spec.name in taken:
            continue
        candidates = [
            container
            for container in containers
            if container.name not in wanted
            and container.name not in found
            and container.labels.get(LABEL_TWIN) == spec.twin_uuid
            and container.labels.get(LABEL_SERVICE) == spec.service
        ]
        candidates.sort(key=lambda container: not container.running)
        if candidates:
            found[candidates[0].name] = spec.name
    return found
