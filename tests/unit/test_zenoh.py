"""The Zenoh router's container spec (protocol.md 4.1, 4.10, 7b item 16)."""

from __future__ import annotations

from dataclasses import replace

from edge_core.model.spec import (
    LABEL_CREATED_BY,
    LABEL_FINGERPRINT,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
)
from edge_core.model.zenoh import RouterInputs, router_command, router_spec
from edge_core.runtime.translate import create_args

ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
FP = "lab-pc-0123456789ab"
INPUTS = RouterInputs(image="eclipse/zenoh:latest", environment_uuid=ENV, version="1.2")


def test_router_name_follows_the_environment() -> None:
    """The router is named after the environment, or ``default`` without one."""
    assert INPUTS.name == "cyberwave-zenoh-router-5b0e6a52"
    assert replace(INPUTS, environment_uuid=None).name == (
        "cyberwave-zenoh-router-default"
    )


def test_linux_router_options_are_those_of_the_contract() -> None:
    """Restart unless-stopped, json-file rotation, host network and the name."""
    spec = router_spec(INPUTS, fingerprint=FP, image_id="sha256:abc")
    assert spec.options == {
        "--restart": ["unless-stopped"],
        "--log-driver": ["json-file"],
        "--log-opt": ["max-file=3", "max-size=10m"],
        "--network": ["host"],
        "--name": ["cyberwave-zenoh-router-5b0e6a52"],
    }
    assert spec.command == ()
    assert spec.image == "eclipse/zenoh:latest"


def test_router_carries_the_edge_labels() -> None:
    """Created-by, fingerprint and spec hash make it ours (7b item 16); its
    service label says it is the router."""
    spec = router_spec(INPUTS, fingerprint=FP, image_id=None)
    assert dict(spec.labels) == {
        LABEL_SPEC_HASH: spec.spec_hash,
        LABEL_CREATED_BY: "cyberwave-edge-core/1.2",
        LABEL_FINGERPRINT: FP,
        LABEL_SERVICE: "zenoh-router",
    }


def test_log_options_follow_the_settings() -> None:
    """The driver log settings apply; ``off`` leaves Docker's defaults."""
    sized = router_spec(
        replace(INPUTS, log_max_size="50m", log_max_file="5"),
        fingerprint=FP,
        image_id=None,
    )
    assert sized.options["--log-opt"] == ["max-file=5", "max-size=50m"]
    off = router_spec(
        replace(INPUTS, log_max_size="off"), fingerprint=FP, image_id=None
    )
    assert "--log-driver" not in off.options
    assert "--log-opt" not in off.options


def test_without_host_networking_the_port_is_published() -> None:
    """Off Linux the port is published for TCP and UDP, and the host is named."""
    spec = router_spec(
        replace(INPUTS, host_is_linux=False, port=7500), fingerprint=FP, image_id=None
    )
    assert "--network" not in spec.options
    assert spec.options["--publish"] == ["7500:7500/tcp", "7500:7500/udp"]
    assert spec.options["--add-host"] == ["host.docker.internal:host-gateway"]


def test_another_port_makes_the_router_listen_there() -> None:
    """The default port needs no argument; any other is passed to zenohd."""
    assert router_command(7447) == ()
    assert router_command(7500) == ("--listen", "tcp/0.0.0.0:7500")
    spec = router_spec(replace(INPUTS, port=7500), fingerprint=FP, image_id=None)
    assert spec.command == ("--listen", "tcp/0.0.0.0:7500")


def test_spec_hash_covers_image_id_port_and_image() -> None:
    """A new image under the same tag, a new port or image changes the hash;
    the fingerprint and version do not."""
    base = router_spec(INPUTS, fingerprint=FP, image_id="sha256:a").spec_hash
    assert base == router_spec(INPUTS, fingerprint="x", image_id="sha256:a").spec_hash
    assert (
        base
        == router_spec(
            replace(INPUTS, version="2"), fingerprint=FP, image_id="sha256:a"
        ).spec_hash
    )
    changed = [
        router_spec(INPUTS, fingerprint=FP, image_id="sha256:b"),
        router_spec(replace(INPUTS, port=7448), fingerprint=FP, image_id="sha256:a"),
        router_spec(
            replace(INPUTS, image="eclipse/zenoh:1.9.0"),
            fingerprint=FP,
            image_id="sha256:a",
        ),
    ]
    assert all(spec.spec_hash != base for spec in changed)


def test_the_engine_gets_host_network_and_restart_policy() -> None:
    """The spec translates to the Engine API's host config without surprises."""
    args = create_args(router_spec(INPUTS, fingerprint=FP, image_id=None))
    host = args.host_config
    assert host["network_mode"] == "host"
    assert host["restart_policy"] == {"Name": "unless-stopped"}
    assert host["log_config"] == {
        "type": "json-file",
        "config": {"max-file": "3", "max-size": "10m"},
    }
    assert args.container["name"] == "cyberwave-zenoh-router-5b0e6a52"
    assert args.container["labels"][LABEL_FINGERPRINT] == FP
