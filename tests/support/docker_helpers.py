"""Look at and drive the containers of one edge fingerprint, for tests.

The edge-level tests ask the engine which containers carry a fingerprint
(running names, ids, inspect data), wait through an ``EdgeProcess`` until
the expected drivers run, and clear them between runs; the runtime tests
create, start and wait for single containers through the edge core's
``DockerRuntime`` under a name unique to their fingerprint, and pull
images that exist only in a test registry.

It asserts nothing but what a helper's contract promises (``wait_exited``
fails when the container never exits), and it never touches a container
without the fingerprint's label.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import docker
from docker.errors import APIError

from edge_core.model.spec import LABEL_FINGERPRINT
from edge_core.runtime import ContainerState, ContainerView, DockerRuntime
from tests.support.edge import STARTUP_TIMEOUT, EdgeProcess
from tests.support.images import build_unique_image
from tests.support.registry import LocalRegistry
from tests.support.specs import make_spec

# -- reading and clearing by fingerprint label ------------------------------


def _owned_by(fingerprint: str) -> str:
    return f"{LABEL_FINGERPRINT}={fingerprint}"


def running_names(client: docker.DockerClient, fingerprint: str) -> set[str]:
    """Names of the running containers that carry ``fingerprint``."""
    filters = {"label": _owned_by(fingerprint), "status": "running"}
    found = client.api.containers(filters=filters)
    return {item["Names"][0].lstrip("/") for item in found}


def wait_for_drivers(
    edge: EdgeProcess,
    client: docker.DockerClient,
    fingerprint: str,
    expected: set[str],
    *,
    what: str,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """Wait until exactly the ``expected`` containers of ``fingerprint`` run.

    ``edge`` is the edge core expected to start them: its exit or timeout
    fails the wait with its log tail.
    """
    edge.wait_for(
        lambda: running_names(client, fingerprint) == expected,
        timeout=timeout,
        what=what,
    )


def container_ids(client: docker.DockerClient, fingerprint: str) -> dict[str, str]:
    """Id by name of every container (any state) that carries ``fingerprint``."""
    found = client.api.containers(all=True, filters={"label": _owned_by(fingerprint)})
    return {item["Names"][0].lstrip("/"): item["Id"] for item in found}


def managed(client: docker.DockerClient, fingerprint: str) -> dict[str, Any]:
    """Inspect data of every container carrying ``fingerprint``, by name."""
    found = client.api.containers(all=True, filters={"label": _owned_by(fingerprint)})
    inspected = [client.api.inspect_container(item["Id"]) for item in found]
    return {attrs["Name"].lstrip("/"): attrs for attrs in inspected}


def remove_all(client: docker.DockerClient, fingerprint: str) -> None:
    """Force-remove every container that carries ``fingerprint``."""
    for item in client.api.containers(
        all=True, filters={"label": _owned_by(fingerprint)}
    ):
        client.api.remove_container(item["Id"], force=True, v=True)


# -- single containers through the runtime adapter --------------------------


def create_container(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    *,
    suffix: str,
    command: Sequence[str] = (),
    params: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """Create ``cw-<fingerprint>-<suffix>`` from a hand-made spec; its name."""
    name = f"cw-{fingerprint}-{suffix}"
    runtime.create(
        make_spec(name, image=image, command=command, params=params, extra=extra),
        fingerprint=fingerprint,
    )
    return name


def run_container(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    command: Sequence[str],
    *,
    suffix: str,
    params: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """Create and start ``cw-<fingerprint>-<suffix>`` running ``command``."""
    name = create_container(
        runtime,
        fingerprint,
        image,
        suffix=suffix,
        command=command,
        params=params,
        extra=extra,
    )
    runtime.start(name, fingerprint=fingerprint)
    return name


def wait_exited(
    runtime: DockerRuntime,
    name: str,
    fingerprint: str,
    *,
    timeout: float = 30,
    interval: float = 0.1,
) -> ContainerView:
    """Wait until ``name`` has exited; fails when it does not within ``timeout``."""
    view = runtime.wait_for_state(
        name,
        fingerprint=fingerprint,
        states={ContainerState.EXITED},
        timeout=timeout,
        interval=interval,
    )
    assert view is not None, f"{name} did not exit within {timeout:.0f} s"
    return view


# -- images that only a registry has ---------------------------------------


@contextlib.contextmanager
def pushed_unique_image(
    client: docker.DockerClient,
    registry: LocalRegistry,
    repository: str,
    tag: str,
    *,
    command: Sequence[str] = ("sh",),
) -> Iterator[str]:
    """A unique image in ``registry`` as ``repository:tag``, not on the engine.

    Yields its registry reference; whatever a test pulled of it is removed
    from the engine on exit.
    """
    local = f"cw-test/unique-{uuid.uuid4().hex[:12]}:1"
    build_unique_image(client, local, command=command)
    ref = registry.push(client, local, repository, tag)
    client.api.remove_image(local)
    try:
        yield ref
    finally:
        with contextlib.suppress(APIError):
            client.api.remove_image(ref, force=True)
