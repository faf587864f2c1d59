"""The planner turns desired specs and observed containers into steps."""

from __future__ import annotations

from dataclasses import dataclass

from edge_core.drivers.planner import Action, plan, renamed
from edge_core.model.spec import LABEL_SERVICE, LABEL_TWIN, ContainerSpec


@dataclass(frozen=True)
class Seen:
    name: str
    state: str
    spec_hash: str | None


def spec(name: str, digest: str = "h1") -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image="cw-test/busybox:1",
        twin_uuid="7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13",
        service=None,
        command=(),
        options={},
        labels={},
        spec_hash=digest,
    )


def test_missing_container_is_launched() -> None:
    """A wanted container that does not exist gets a launch step."""
    result = plan([spec("cyberwave-driver-a")], [])
    assert [(s.spec.name, s.action) for s in result.launches] == [
        ("cyberwave-driver-a", Action.LAUNCH)
    ]
    assert not result.converged


def test_running_container_with_same_hash_is_adopted() -> None:
    """A running container whose spec hash matches is left untouched."""
    result = plan(
        [spec("cyberwave-driver-a")], [Seen("cyberwave-driver-a", "running", "h1")]
    )
    assert result.converged
    assert result.adopted == ("cyberwave-driver-a",)


def test_changed_hash_recreates() -> None:
    """A container whose spec hash differs is recreated, whatever its state."""
    result = plan(
        [spec("cyberwave-driver-a", "h2")],
        [Seen("cyberwave-driver-a", "running", "h1")],
    )
    assert [s.action for s in result.launches] == [Action.RECREATE]
    assert "h1" in result.launches[0].reason


def test_stopped_container_is_relaunched() -> None:
    """An exited container with the right hash is launched again."""
    result = plan(
        [spec("cyberwave-driver-a")], [Seen("cyberwave-driver-a", "exited", "h1")]
    )
    assert [s.action for s in result.launches] == [Action.RELAUNCH]


def test_restarting_container_is_left_to_docker() -> None:
    """A container Docker is restarting is waited for, not relaunched."""
    result = plan(
        [spec("cyberwave-driver-a")], [Seen("cyberwave-driver-a", "restarting", "h1")]
    )
    assert result.converged
    assert result.waiting == ("cyberwave-driver-a",)


def test_unwanted_driver_is_an_orphan_and_never_removed() -> None:
    """A driver container nobody wants is reported as an orphan, not removed."""
    result = plan(
        [spec("cyberwave-driver-a")],
        [
            Seen("cyberwave-driver-a", "running", "h1"),
            Seen("cyberwave-driver-zz", "exited", "h9"),
        ],
    )
    assert result.orphans == ("cyberwave-driver-zz",)
    assert result.converged


def test_paused_container_is_left_as_it_is() -> None:
    """A container a person paused is neither relaunched nor adopted."""
    result = plan(
        [spec("cyberwave-driver-a")], [Seen("cyberwave-driver-a", "paused", "h1")]
    )
    assert result.converged
    assert result.paused == ("cyberwave-driver-a",)


@dataclass(frozen=True)
class Named:
    name: str
    labels: dict[str, str]
    running: bool = True


TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"


def test_a_renamed_driver_is_found_under_its_new_name() -> None:
    """A container of ours with the twin's label under a name nobody wants
    is the driver to rename back; a running one is preferred."""
    labels = {LABEL_TWIN: TWIN}
    current = [
        Named("cyberwave-driver-7f3c2a10-old", labels, running=False),
        Named("cyberwave-driver-7f3c2a10-debug", labels),
        Named("cyberwave-driver-other", {LABEL_TWIN: "someone-else"}),
    ]

    assert renamed([spec("cyberwave-driver-7f3c2a10")], current) == {
        "cyberwave-driver-7f3c2a10-debug": "cyberwave-driver-7f3c2a10"
    }


def test_nothing_is_renamed_when_the_name_exists_or_the_service_differs() -> None:
    """A desired name that exists needs nothing; a container of another
    service of the same twin is not this driver."""
    wanted = spec("cyberwave-driver-7f3c2a10")
    service = Named(
        "cyberwave-driver-7f3c2a10-db", {LABEL_TWIN: TWIN, LABEL_SERVICE: "db"}
    )
    present = Named("cyberwave-driver-7f3c2a10", {LABEL_TWIN: TWIN})

    assert renamed([wanted], [service]) == {}
    assert renamed([wanted], [present, Named("x", {LABEL_TWIN: TWIN})]) == {}
