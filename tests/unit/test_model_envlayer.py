"""The environment of a driver container: protocol.md 4.7 rows and 7b item 24."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edge_core.model.envlayer import (
    DriverContext,
    container_base_url,
    driver_environment,
    is_data_bus_key,
)

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
CTX = DriverContext(token="cw_token", base_url="https://api.cyberwave.com")


def env(ctx: DriverContext = CTX, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("twin_uuid", TWIN)
    return driver_environment(ctx, **kwargs)


def test_minimal_production_environment() -> None:
    """A production edge with nothing configured injects exactly the base rows."""
    assert env() == {
        "CYBERWAVE_TWIN_UUID": TWIN,
        "CYBERWAVE_API_KEY": "cw_token",
        "CYBERWAVE_EDGE_HOST_PLATFORM": "linux",
        "CYBERWAVE_MQTT_USE_TLS": "true",
        "CYBERWAVE_EDGE_CONFIG_DIR": "/app/.cyberwave",
        "CYBERWAVE_DATA_BACKEND": "zenoh",
        "ZENOH_SHARED_MEMORY": "false",
        "CYBERWAVE_BASE_URL": "https://api.cyberwave.com",
        "CYBERWAVE_API_URL": "https://api.cyberwave.com",
    }


def test_children_deduplicated_in_order() -> None:
    """Child camera uuids are joined with commas, each once, in order."""
    result = env(child_twin_uuids=["c2", "c1", "c2", ""])
    assert result["CYBERWAVE_CHILD_TWIN_UUIDS"] == "c2,c1"
    assert "CYBERWAVE_CHILD_TWIN_UUIDS" not in env(child_twin_uuids=[])


def test_twin_json_file_only_when_present() -> None:
    """CYBERWAVE_TWIN_JSON_FILE points at /app/<uuid>.json only when the file exists."""
    assert env(twin_json_present=True)["CYBERWAVE_TWIN_JSON_FILE"] == (
        f"/app/{TWIN}.json"
    )
    assert "CYBERWAVE_TWIN_JSON_FILE" not in env(twin_json_present=False)


def test_broker_settings_are_forwarded() -> None:
    """Configured MQTT host and port reach the driver."""
    ctx = replace(
        CTX, mqtt_host_setting="dev.mqtt.cyberwave.com", mqtt_port_setting="8883"
    )
    result = env(ctx)
    assert result["CYBERWAVE_MQTT_HOST"] == "dev.mqtt.cyberwave.com"
    assert result["CYBERWAVE_MQTT_PORT"] == "8883"
    assert result["CYBERWAVE_MQTT_USE_TLS"] == "true"


def test_local_backend_broker() -> None:
    """A local backend gives its host and port 1883, and no TLS."""
    ctx = replace(CTX, local_backend_host="192.168.1.10", mqtt_port_effective=1883)
    result = env(ctx)
    assert result["CYBERWAVE_MQTT_HOST"] == "192.168.1.10"
    assert result["CYBERWAVE_MQTT_PORT"] == "1883"
    assert "CYBERWAVE_MQTT_USE_TLS" not in result


def test_explicit_broker_settings_beat_local_backend() -> None:
    """Configured host and port win over the local-backend inference."""
    ctx = replace(
        CTX,
        local_backend_host="localhost",
        mqtt_host_setting="broker.lan",
        mqtt_port_setting="1884",
    )
    result = env(ctx)
    assert (result["CYBERWAVE_MQTT_HOST"], result["CYBERWAVE_MQTT_PORT"]) == (
        "broker.lan",
        "1884",
    )


def test_tls_row_follows_the_forwarded_port() -> None:
    """USE_TLS=true is added for port 8883, not for another forwarded port."""
    assert "CYBERWAVE_MQTT_USE_TLS" not in env(replace(CTX, mqtt_port_setting="1883"))
    explicit = replace(CTX, cyberwave_envs={"CYBERWAVE_MQTT_USE_TLS": "false"})
    assert env(explicit)["CYBERWAVE_MQTT_USE_TLS"] == "false"


def test_tls_row_not_added_when_params_set_it() -> None:
    """A driver's own CYBERWAVE_MQTT_USE_TLS counts as set, so it is kept."""
    result = env(params_env={"CYBERWAVE_MQTT_USE_TLS": "false"})
    assert result["CYBERWAVE_MQTT_USE_TLS"] == "false"


def test_environment_log_level_and_non_production() -> None:
    """The log level is forwarded when set; the environment only when not production."""
    dev = replace(
        CTX, environment="dev", is_production=False, log_level_setting="debug"
    )
    result = env(dev)
    assert result["CYBERWAVE_ENVIRONMENT"] == "dev"
    assert result["CYBERWAVE_EDGE_LOG_LEVEL"] == "debug"
    assert "CYBERWAVE_ENVIRONMENT" not in env()
    assert "CYBERWAVE_EDGE_LOG_LEVEL" not in env()


def test_forwarded_variables_fill_gaps_only() -> None:
    """CYBERWAVE_* from envs and the process fill gaps; envs come before the process."""
    ctx = replace(
        CTX,
        environment="dev",
        is_production=False,
        cyberwave_envs={
            "CYBERWAVE_ENVIRONMENT": "other",
            "CYBERWAVE_WORKER_IMAGE": "from-envs",
            "ZENOH_MODE": "client",
            "CYBERWAVE_BLANK": "",
        },
        cyberwave_process_env={
            "CYBERWAVE_WORKER_IMAGE": "from-process",
            "CYBERWAVE_ONLY_PROCESS": "p",
            "CYBERWAVE_SPACES": "  ",
            "PATH": "/usr/bin",
        },
    )
    result = env(ctx)
    assert result["CYBERWAVE_ENVIRONMENT"] == "dev"
    assert result["CYBERWAVE_WORKER_IMAGE"] == "from-envs"
    assert result["CYBERWAVE_ONLY_PROCESS"] == "p"
    for absent in ("ZENOH_MODE", "CYBERWAVE_BLANK", "CYBERWAVE_SPACES", "PATH"):
        assert absent not in result


def test_forced_rows_override_forwarded_values() -> None:
    """Config dir and base URLs are forced whatever the forwarded variables say."""
    ctx = replace(
        CTX,
        cyberwave_process_env={
            "CYBERWAVE_EDGE_CONFIG_DIR": "/root/.cyberwave",
            "CYBERWAVE_BASE_URL": "https://elsewhere",
            "CYBERWAVE_API_URL": "https://elsewhere",
        },
    )
    result = env(ctx)
    assert result["CYBERWAVE_EDGE_CONFIG_DIR"] == "/app/.cyberwave"
    assert result["CYBERWAVE_BASE_URL"] == "https://api.cyberwave.com"
    assert result["CYBERWAVE_API_URL"] == "https://api.cyberwave.com"


def test_data_bus_settings_injected() -> None:
    """Configured backend, shared memory, mode and endpoints are injected."""
    ctx = replace(
        CTX,
        data_backend="zenoh",
        zenoh_shared_memory=True,
        zenoh_mode="client",
        zenoh_connect=("tcp/10.0.0.1:7447", "tcp/10.0.0.2:7447"),
    )
    result = env(ctx)
    assert result["ZENOH_SHARED_MEMORY"] == "true"
    assert result["ZENOH_MODE"] == "client"
    assert result["ZENOH_CONNECT"] == "tcp/10.0.0.1:7447,tcp/10.0.0.2:7447"


def test_connect_setting_as_text() -> None:
    """A comma-separated ZENOH_CONNECT string is accepted, blanks dropped."""
    ctx = replace(CTX, zenoh_connect=" tcp/10.0.0.1:7447, ,tcp/10.0.0.2:7447 ")
    assert env(ctx)["ZENOH_CONNECT"] == "tcp/10.0.0.1:7447,tcp/10.0.0.2:7447"
    assert "ZENOH_CONNECT" not in env(replace(CTX, zenoh_connect=" , "))


def test_router_gives_default_connect() -> None:
    """With the router enabled and no endpoints, drivers connect to the local router."""
    ctx = replace(CTX, zenoh_router_enabled=True, zenoh_router_port=7999)
    assert env(ctx)["ZENOH_CONNECT"] == "tcp/127.0.0.1:7999"
    both = replace(ctx, zenoh_connect=("tcp/10.0.0.1:7447",))
    assert env(both)["ZENOH_CONNECT"] == "tcp/10.0.0.1:7447"
    assert "ZENOH_CONNECT" not in env()


def test_no_shared_memory_row_for_other_backends() -> None:
    """ZENOH_SHARED_MEMORY is only injected when the backend is zenoh."""
    ctx = replace(CTX, data_backend="filesystem")
    result = env(ctx)
    assert result["CYBERWAVE_DATA_BACKEND"] == "filesystem"
    assert "ZENOH_SHARED_MEMORY" not in result
    params = env(params_env={"CYBERWAVE_DATA_BACKEND": "filesystem"})
    assert "ZENOH_SHARED_MEMORY" not in params


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CYBERWAVE_DATA_BACKEND", "filesystem"),
        ("ZENOH_CONNECT", "tcp/192.168.1.5:7447"),
        ("ZENOH_MODE", "peer"),
        ("ZENOH_SHARED_MEMORY", "true"),
    ],
)
def test_params_win_for_data_bus_keys(key: str, value: str) -> None:
    """A driver's own -e for a data-bus variable beats the injected value."""
    ctx = replace(CTX, zenoh_mode="client", zenoh_connect=("tcp/10.0.0.1:7447",))
    assert env(ctx, params_env={key: value})[key] == value


@pytest.mark.parametrize(
    "key",
    [
        "CYBERWAVE_TWIN_UUID",
        "CYBERWAVE_API_KEY",
        "CYBERWAVE_TWIN_JSON_FILE",
        "CYBERWAVE_CHILD_TWIN_UUIDS",
    ],
)
def test_edge_wins_for_identity_keys(key: str) -> None:
    """No params, forwarded variable or service env can set an identity variable."""
    ctx = replace(
        CTX, cyberwave_envs={key: "envs"}, cyberwave_process_env={key: "process"}
    )
    forged = {key: "forged"}
    with_edge_value = env(
        ctx,
        child_twin_uuids=["child"],
        twin_json_present=True,
        params_env=forged,
        shared_env=forged,
        service_env=forged,
    )
    without_edge_value = env(
        ctx, params_env=forged, shared_env=forged, service_env=forged
    )
    assert with_edge_value[key] != "forged"
    assert with_edge_value[key] in (TWIN, "cw_token", f"/app/{TWIN}.json", "child")
    if key in ("CYBERWAVE_TWIN_JSON_FILE", "CYBERWAVE_CHILD_TWIN_UUIDS"):
        assert key not in without_edge_value


def test_other_params_only_fill_gaps() -> None:
    """A params -e for an injected key loses; for a new key it is kept."""
    result = env(
        params_env={
            "CYBERWAVE_EDGE_CONFIG_DIR": "/mine",
            "CYBERWAVE_BASE_URL": "https://mine",
            "CYBERWAVE_EDGE_HOST_PLATFORM": "windows",
            "SO101_CALIBRATION": "auto",
        }
    )
    assert result["CYBERWAVE_EDGE_CONFIG_DIR"] == "/app/.cyberwave"
    assert result["CYBERWAVE_BASE_URL"] == "https://api.cyberwave.com"
    assert result["CYBERWAVE_EDGE_HOST_PLATFORM"] == "linux"
    assert result["SO101_CALIBRATION"] == "auto"


def test_params_lose_to_forwarded_cyberwave_variables() -> None:
    """A forwarded CYBERWAVE_* counts as injected, so params do not replace it."""
    ctx = replace(CTX, cyberwave_envs={"CYBERWAVE_FEATURE": "edge"})
    assert (
        env(ctx, params_env={"CYBERWAVE_FEATURE": "driver"})["CYBERWAVE_FEATURE"]
        == "edge"
    )


def test_service_env_overrides_shared_and_injected() -> None:
    """Service env beats shared env, which beats injected rows except forced ones."""
    result = env(
        shared_env={"ROS_DOMAIN_ID": "0", "MODE": "shared", "ZENOH_MODE": "peer"},
        service_env={"MODE": "service", "CYBERWAVE_BASE_URL": "https://x"},
    )
    assert result["ROS_DOMAIN_ID"] == "0"
    assert result["MODE"] == "service"
    assert result["ZENOH_MODE"] == "peer"
    assert result["CYBERWAVE_BASE_URL"] == "https://api.cyberwave.com"


def test_params_data_bus_beats_service_env() -> None:
    """Even over a service's env, a params -e for a data-bus key wins."""
    result = env(
        service_env={"ZENOH_MODE": "peer"}, params_env={"ZENOH_MODE": "router"}
    )
    assert result["ZENOH_MODE"] == "router"


def test_video_device_linux_only_and_not_over_params() -> None:
    """The chosen camera device is injected on Linux unless params set one."""
    assert env(video_device="/dev/video0")["CYBERWAVE_METADATA_VIDEO_DEVICE"] == (
        "/dev/video0"
    )
    mine = env(
        video_device="/dev/video0",
        params_env={"CYBERWAVE_METADATA_VIDEO_DEVICE": "/dev/video4"},
    )
    assert mine["CYBERWAVE_METADATA_VIDEO_DEVICE"] == "/dev/video4"
    mac = env(replace(CTX, host_platform="darwin"), video_device="/dev/video0")
    assert "CYBERWAVE_METADATA_VIDEO_DEVICE" not in mac


def test_macos_rewrites_loopback_hosts() -> None:
    """On macOS a loopback base URL and local broker become host.docker.internal."""
    ctx = replace(
        CTX,
        host_platform="darwin",
        base_url="http://localhost:8000",
        local_backend_host="localhost",
    )
    result = env(ctx)
    assert result["CYBERWAVE_EDGE_HOST_PLATFORM"] == "darwin"
    assert result["CYBERWAVE_BASE_URL"] == "http://host.docker.internal:8000"
    assert result["CYBERWAVE_API_URL"] == "http://host.docker.internal:8000"
    assert result["CYBERWAVE_MQTT_HOST"] == "host.docker.internal"


@pytest.mark.parametrize(
    ("url", "platform", "expected"),
    [
        ("http://127.0.0.1:8000/", "darwin", "http://host.docker.internal:8000/"),
        ("http://[::1]:8000", "darwin", "http://host.docker.internal:8000"),
        ("http://0.0.0.0", "darwin", "http://host.docker.internal"),
        ("https://api.cyberwave.com", "darwin", "https://api.cyberwave.com"),
        ("http://localhost:8000", "linux", "http://localhost:8000"),
    ],
)
def test_container_base_url(url: str, platform: str, expected: str) -> None:
    """Only macOS rewrites loopback hosts, keeping scheme, port and path."""
    assert container_base_url(url, platform) == expected


def test_data_bus_key_rule() -> None:
    """CYBERWAVE_DATA_BACKEND and ZENOH_* are data-bus keys; others are not."""
    assert is_data_bus_key("CYBERWAVE_DATA_BACKEND")
    assert is_data_bus_key("ZENOH_LISTEN")
    assert not is_data_bus_key("CYBERWAVE_TWIN_UUID")
    assert not is_data_bus_key("MY_ZENOH_X")


def test_context_repr_hides_token() -> None:
    """The context's repr never shows the token or forwarded variables."""
    ctx = replace(CTX, cyberwave_envs={"CYBERWAVE_MQTT_PASSWORD": "secret"})
    assert "cw_token" not in repr(ctx)
    assert "secret" not in repr(ctx)
