"""The optional Zenoh router container, as a frozen ``ContainerSpec``.

With ``ZENOH_ROUTER_ENABLED`` the edge core runs one ``zenohd`` router
next to the drivers (protocol.md 4.10): named after the environment
(4.1), restarted by Docker unless stopped, with the same json-file log
rotation as the drivers, on the host network on Linux and with its port
published on other hosts. Unlike the deployed edge core it carries the
created-by and fingerprint labels and a spec hash (7b item 16), so the
edge core only ever touches its own router and adopts a running one
whose spec is unchanged. Its service label says ``zenoh-router``, as the
worker's says ``worker`` (4.2): the edge core knows its router by these
labels, also under a name a person gave it.

The image runs ``zenohd`` with its own defaults, which listen on 7447.
For another ``ZENOH_ROUTER_PORT`` the router is told to listen there
(``--listen tcp/0.0.0.0:<port>``), so the endpoint drivers are given is
the one the router really serves.

This module only assembles values; starting, adopting and removing the
router is ``edge_core.drivers.zenoh``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_core.model.envlayer import DOCKER_HOST_ALIAS
from edge_core.model.names import zenoh_router_name
from edge_core.model.options import RunOptions, fold
from edge_core.model.runargs import LOGS_OFF, PRODUCT
from edge_core.model.spec import (
    LABEL_CREATED_BY,
    LABEL_FINGERPRINT,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    ContainerSpec,
    spec_hash,
)

DEFAULT_ROUTER_IMAGE = "eclipse/zenoh:latest"
DEFAULT_ROUTER_PORT = 7447
ROUTER_RESTART = "unless-stopped"
ROUTER_ROLE = "zenoh-router"
"""The router's ``io.cyberwave.edge.service`` label."""
DOCKER_HOST_GATEWAY = f"{DOCKER_HOST_ALIAS}:host-gateway"

Pairs = list[tuple[str, str | bool]]


@dataclass(frozen=True)
class RouterInputs:
    """Everything the router container depends on.

    ``environment_uuid`` names the router (``None`` gives ``…-default``);
    ``host_is_linux`` chooses host networking over published ports;
    ``log_max_size`` of ``off`` leaves Docker's log options alone.
    """

    image: str = DEFAULT_ROUTER_IMAGE
    port: int = DEFAULT_ROUTER_PORT
    environment_uuid: str | None = None
    host_is_linux: bool = True
    log_max_size: str = "10m"
    log_max_file: str = "3"
    version: str = "0"

    @property
    def name(self) -> str:
        """``cyberwave-zenoh-router-<env8>`` (protocol.md 4.1)."""
        return zenoh_router_name(self.environment_uuid)


def router_command(port: int) -> tuple[str, ...]:
    """The router's arguments: none for the image's default port."""
    if port == DEFAULT_ROUTER_PORT:
        return ()
    return ("--listen", f"tcp/0.0.0.0:{port}")


def _log_pairs(inputs: RouterInputs) -> Pairs:
    size = inputs.log_max_size.strip()
    if size.lower() == LOGS_OFF:
        return []
    return [
        ("--log-driver", "json-file"),
        ("--log-opt", f"max-size={size}"),
        ("--log-opt", f"max-file={inputs.log_max_file.strip()}"),
    ]


def _network_pairs(inputs: RouterInputs) -> Pairs:
    if inputs.host_is_linux:
        return [("--network", "host")]
    # Without host networking the port is published for TCP and UDP.
    return [
        ("--publish", f"{inputs.port}:{inputs.port}/tcp"),
        ("--publish", f"{inputs.port}:{inputs.port}/udp"),
        ("--add-host", DOCKER_HOST_GATEWAY),
    ]


def router_options(inputs: RouterInputs) -> RunOptions:
    """The normalized run flags of the router, without the edge labels."""
    pairs: Pairs = [("--restart", ROUTER_RESTART)]
    pairs += _log_pairs(inputs)
    pairs += _network_pairs(inputs)
    pairs.append(("--name", inputs.name))
    return fold(pairs, source=f"container {inputs.name}")


def router_spec(
    inputs: RouterInputs, *, fingerprint: str, image_id: str | None
) -> ContainerSpec:
    """The frozen spec of the router container, labels and hash included.

    ``image_id`` is the local id of ``inputs.image`` (it is part of the
    hash, so a new image under the same tag recreates the router).
    """
    options = router_options(inputs)
    command = router_command(inputs.port)
    digest = spec_hash(
        image=inputs.image, image_id=image_id, options=options, command=command
    )
    labels = {
        LABEL_SPEC_HASH: digest,
        LABEL_CREATED_BY: f"{PRODUCT}/{inputs.version}",
        LABEL_FINGERPRINT: fingerprint,
        LABEL_SERVICE: ROUTER_ROLE,
    }
    return ContainerSpec(
        name=inputs.name,
        image=inputs.image,
        twin_uuid="",
        service=ROUTER_ROLE,
        command=command,
        options=options,
        labels=labels,
        spec_hash=digest,
    )
