"""The data-bus variables drivers get, from settings to the container spec.

Spec "Zenoh data bus" and protocol.md 4.7 with 7b item 24: the settings
are read as the daemon reads them, turned into the driver context by
``wiring.driver_context`` and into a driver's spec by the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from edge_core.config.credentials import Credentials
from edge_core.config.settings import load_settings
from edge_core.host.platform import PlatformFacts
from edge_core.model.desired import LaunchContext, build_driver_specs
from edge_core.model.envlayer import zenoh_router_endpoint
from edge_core.wiring import driver_context

FP = "lab-pc-0123456789ab"
TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ASSET = "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"
LINUX = PlatformFacts(system="Linux", machine="x86_64", is_jetson=False, l4t_major=None)
MACOS = PlatformFacts(system="Darwin", machine="arm64", is_jetson=False, l4t_major=None)


def driver_env(
    tmp_path: Path,
    environ: Mapping[str, str],
    *,
    params: Sequence[str] = (),
    facts: PlatformFacts = LINUX,
) -> Mapping[str, str]:
    """The environment of the one driver of a linked twin, as the daemon
    would build it from ``environ``."""
    settings = load_settings(environ, envs={}, config_dir=tmp_path)
    credentials = Credentials(path=tmp_path / "credentials.json", token="cw_token")
    twin = {
        "uuid": TWIN,
        "name": "arm",
        "asset_uuid": ASSET,
        "metadata": {"edge_fingerprint": FP},
    }
    asset = {
        "uuid": ASSET,
        "name": "arm",
        "metadata": {
            "drivers": {
                "default": {"docker_image": "cw/driver:1", "params": list(params)}
            }
        },
    }
    desired = build_driver_specs(
        twins=[twin],
        assets_by_uuid={ASSET: asset},
        profile_keys=("linux",),
        ctx=driver_context(settings, credentials, facts),
        launch=LaunchContext(config_dir=tmp_path, version="1", fingerprint=FP),
    )
    assert not desired.failures, desired.failures
    (spec,) = desired.specs
    return spec.environment


def test_router_enabled_points_drivers_at_it(tmp_path: Path) -> None:
    """With the router on and ZENOH_CONNECT unset, drivers connect to it."""
    env = driver_env(
        tmp_path, {"ZENOH_ROUTER_ENABLED": "true", "ZENOH_ROUTER_PORT": "7500"}
    )
    assert env["ZENOH_CONNECT"] == "tcp/127.0.0.1:7500"


def test_router_on_macos_is_reached_through_the_docker_host(tmp_path: Path) -> None:
    """Off the host network the router's published port is on the Docker host."""
    env = driver_env(tmp_path, {"ZENOH_ROUTER_ENABLED": "1"}, facts=MACOS)
    assert env["ZENOH_CONNECT"] == "tcp/host.docker.internal:7447"
    assert zenoh_router_endpoint(7447) == "tcp/127.0.0.1:7447"


def test_router_disabled_leaves_peer_to_peer(tmp_path: Path) -> None:
    """Without the router and without endpoints there is no ZENOH_CONNECT."""
    assert "ZENOH_CONNECT" not in driver_env(tmp_path, {})


def test_configured_endpoints_are_kept_with_the_router(tmp_path: Path) -> None:
    """A configured ZENOH_CONNECT wins over the router's endpoint."""
    env = driver_env(
        tmp_path,
        {"ZENOH_ROUTER_ENABLED": "true", "ZENOH_CONNECT": "tcp/10.0.0.1:7447"},
    )
    assert env["ZENOH_CONNECT"] == "tcp/10.0.0.1:7447"


def test_a_drivers_own_connect_wins(tmp_path: Path) -> None:
    """A driver's ``-e ZENOH_CONNECT=…`` beats the router and the setting."""
    params = ["-e", "ZENOH_CONNECT=tcp/192.168.1.5:7447"]
    env = driver_env(
        tmp_path,
        {"ZENOH_ROUTER_ENABLED": "true", "ZENOH_CONNECT": "tcp/10.0.0.1:7447"},
        params=params,
    )
    assert env["ZENOH_CONNECT"] == "tcp/192.168.1.5:7447"
    alone = driver_env(tmp_path, {"ZENOH_ROUTER_ENABLED": "true"}, params=params)
    assert alone["ZENOH_CONNECT"] == "tcp/192.168.1.5:7447"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [(None, "false"), ("false", "false"), ("true", "true"), ("1", "true")],
)
def test_shared_memory_is_true_or_false(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    """ZENOH_SHARED_MEMORY is always injected as ``true`` or ``false``
    (default false) with the zenoh backend."""
    environ = {} if setting is None else {"ZENOH_SHARED_MEMORY": setting}
    env = driver_env(tmp_path, environ)
    assert env["CYBERWAVE_DATA_BACKEND"] == "zenoh"
    assert env["ZENOH_SHARED_MEMORY"] == expected


def test_a_drivers_own_data_bus_variables_win(tmp_path: Path) -> None:
    """Every data-bus variable may be overridden with ``-e`` in the params."""
    params = [
        "-e",
        "ZENOH_SHARED_MEMORY=true",
        "-e",
        "ZENOH_MODE=client",
        "-e",
        "CYBERWAVE_DATA_BACKEND=zenoh",
    ]
    env = driver_env(
        tmp_path,
        {"ZENOH_SHARED_MEMORY": "false", "ZENOH_MODE": "peer"},
        params=params,
    )
    assert env["ZENOH_SHARED_MEMORY"] == "true"
    assert env["ZENOH_MODE"] == "client"


def test_filesystem_backend_gets_no_shared_memory_row(tmp_path: Path) -> None:
    """With another data backend ZENOH_SHARED_MEMORY is not injected."""
    env = driver_env(tmp_path, {"CYBERWAVE_DATA_BACKEND": "filesystem"})
    assert env["CYBERWAVE_DATA_BACKEND"] == "filesystem"
    assert "ZENOH_SHARED_MEMORY" not in env
