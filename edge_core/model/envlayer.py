"""The environment variables a driver container receives.

Drivers learn who they are and how to reach the platform from their
environment (protocol.md 4.7). The rows of that table are applied here in
order, later rows overriding earlier ones except where a row says "if
absent", with the rules of protocol.md 7b item 24 on top:

* identity variables (``CYBERWAVE_TWIN_UUID``, ``CYBERWAVE_API_KEY``,
  ``CYBERWAVE_TWIN_JSON_FILE``, ``CYBERWAVE_CHILD_TWIN_UUIDS``) are the
  edge's alone: no params, forwarded variable or service env can set them;
* data-bus variables (``CYBERWAVE_DATA_BACKEND`` and ``ZENOH_*``) set in
  the driver's params win over the injected value;
* any other params variable is kept only when the edge injects no value
  for it.

Everything comes in through ``DriverContext`` and the keyword arguments,
so this module reads no settings and no environment of its own.

TODO: the macOS-only rows (``CYBERWAVE_CHILD_CAMERA_STREAM_URLS``,
``CYBERWAVE_EDGE_VIDEO_DEVICE_MAP`` and the device bridge's video source,
protocol.md 4.8) are not produced; only the macOS host rewrites are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

TWIN_UUID = "CYBERWAVE_TWIN_UUID"
API_KEY = "CYBERWAVE_API_KEY"
TWIN_JSON_FILE = "CYBERWAVE_TWIN_JSON_FILE"
CHILD_TWIN_UUIDS = "CYBERWAVE_CHILD_TWIN_UUIDS"
VIDEO_DEVICE = "CYBERWAVE_METADATA_VIDEO_DEVICE"
DATA_BACKEND = "CYBERWAVE_DATA_BACKEND"
MQTT_USE_TLS = "CYBERWAVE_MQTT_USE_TLS"
MQTT_PORT = "CYBERWAVE_MQTT_PORT"

IDENTITY_KEYS = frozenset({TWIN_UUID, API_KEY, TWIN_JSON_FILE, CHILD_TWIN_UUIDS})
CONTAINER_CONFIG_DIR = "/app/.cyberwave"
DEFAULT_DATA_BACKEND = "zenoh"
LOCAL_BACKEND_MQTT_PORT = "1883"
TLS_PORT = 8883
DOCKER_HOST_ALIAS = "host.docker.internal"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})


def is_data_bus_key(key: str) -> bool:
    """Whether a driver's own ``-e`` may override the injected value."""
    return key == DATA_BACKEND or key.startswith("ZENOH_")


def container_twin_json_path(twin_uuid: str) -> str:
    """Where a driver finds its twin JSON file inside the container."""
    return f"/app/{twin_uuid}.json"


@dataclass(frozen=True)
class DriverContext:
    """The edge-wide inputs of driver environments, filled from Settings.

    ``mqtt_host_setting`` and ``mqtt_port_setting`` are the configured
    ``CYBERWAVE_MQTT_HOST``/``_PORT`` (``None`` when unset);
    ``local_backend_host`` is the broker host inferred by the local-backend
    rule (protocol.md 2.1, 7b item 25), ``None`` when that rule does not
    apply; ``mqtt_port_effective`` is the port the edge itself connects to.
    ``cyberwave_envs`` is the ``envs`` block of ``credentials.json`` and
    ``cyberwave_process_env`` the edge's process environment; only their
    ``CYBERWAVE_*`` keys are forwarded. ``zenoh_connect`` is the configured
    ``ZENOH_CONNECT``: a comma-separated string or a sequence of endpoints.
    ``zenoh_router_enabled`` and ``zenoh_router_port`` describe the edge's
    own router: with it enabled and no ``zenoh_connect``, drivers are
    pointed at it.
    """

    token: str = field(repr=False)
    base_url: str
    environment: str = "production"
    is_production: bool = True
    host_platform: str = "linux"
    mqtt_host_setting: str | None = None
    mqtt_port_setting: str | None = None
    local_backend_host: str | None = None
    mqtt_port_effective: int = TLS_PORT
    log_level_setting: str | None = None
    cyberwave_envs: Mapping[str, str] = field(default_factory=dict, repr=False)
    cyberwave_process_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    data_backend: str | None = None
    zenoh_shared_memory: bool = False
    zenoh_mode: str | None = None
    zenoh_connect: str | Sequence[str] | None = None
    zenoh_router_enabled: bool = False
    zenoh_router_port: int = 7447


def container_host(host: str, host_platform: str) -> str:
    """``host`` as a container reaches it: on macOS a loopback host is the
    Docker host, ``host.docker.internal``."""
    if host_platform == "darwin" and host.strip("[]").lower() in _LOOPBACK_HOSTS:
        return DOCKER_HOST_ALIAS
    return host


def container_base_url(base_url: str, host_platform: str) -> str:
    """The base URL a container should use (protocol.md 1.1)."""
    if host_platform != "darwin":
        return base_url
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if container_host(host, host_platform) == host:
        return base_url
    netloc = DOCKER_HOST_ALIAS
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if "@" in parts.netloc:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def _forwardable(source: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    """The ``CYBERWAVE_*`` entries of ``source`` that may be forwarded."""
    for key, value in source.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        if not key.startswith("CYBERWAVE_") or key in IDENTITY_KEYS:
            continue
        if value.strip():
            yield key, value


def _without_identity(env: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (env or {}).items() if k not in IDENTITY_KEYS}


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def _broker_rows(ctx: DriverContext) -> dict[str, str]:
    rows: dict[str, str] = {}
    if ctx.mqtt_host_setting:
        rows["CYBERWAVE_MQTT_HOST"] = ctx.mqtt_host_setting
    elif ctx.local_backend_host:
        rows["CYBERWAVE_MQTT_HOST"] = container_host(
            ctx.local_backend_host, ctx.host_platform
        )

    if ctx.mqtt_port_setting:
        rows[MQTT_PORT] = str(ctx.mqtt_port_setting)
    elif ctx.local_backend_host:
        rows[MQTT_PORT] = LOCAL_BACKEND_MQTT_PORT
    return rows


def _data_bus_rows(ctx: DriverContext, params: Mapping[str, str]) -> dict[str, str]:
    injected_backend = ctx.data_backend or DEFAULT_DATA_BACKEND
    rows = {DATA_BACKEND: injected_backend}

    # The backend the driver will really use decides on the SHM row.
    backend = params.get(DATA_BACKEND) or injected_backend
    if backend.strip().lower() == DEFAULT_DATA_BACKEND:
        rows["ZENOH_SHARED_MEMORY"] = "true" if ctx.zenoh_shared_memory else "false"

    if ctx.zenoh_mode:
        rows["ZENOH_MODE"] = ctx.zenoh_mode
    endpoints = zenoh_endpoints(ctx.zenoh_connect)
    if endpoints:
        rows["ZENOH_CONNECT"] = ",".join(endpoints)
    elif ctx.zenoh_router_enabled:
        rows["ZENOH_CONNECT"] = zenoh_router_endpoint(
            ctx.zenoh_router_port, ctx.host_platform
        )
    return rows


def zenoh_router_endpoint(port: int, host_platform: str = "linux") -> str:
    """The edge's own Zenoh router as a driver reaches it (7b item 24).

    On Linux both share the host network, so it is ``tcp/127.0.0.1:<port>``;
    on macOS the router's published port is on the Docker host.
    """
    return f"tcp/{container_host('127.0.0.1', host_platform)}:{port}"


def zenoh_endpoints(value: str | Sequence[str] | None) -> list[str]:
    """The Zenoh endpoints of a ``ZENOH_CONNECT`` setting, blanks dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


def _tls_port(env: Mapping[str, str], ctx: DriverContext) -> bool:
    port = env.get(MQTT_PORT, str(ctx.mqtt_port_effective))
    return port.strip() == str(TLS_PORT)


def driver_environment(
    ctx: DriverContext,
    *,
    twin_uuid: str,
    child_twin_uuids: Iterable[str] = (),
    twin_json_present: bool = False,
    params_env: Mapping[str, str] | None = None,
    shared_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, str] | None = None,
    video_device: str | None = None,
) -> dict[str, str]:
    """The complete environment of one driver container (protocol.md 4.7).

    ``params_env`` is every env var the driver's params set;
    ``shared_env``/``service_env`` are a multi-service profile's; and
    ``video_device`` the camera device chosen for this twin on Linux.
    """
    params = _without_identity(params_env)
    env: dict[str, str] = {}

    # Who the driver is, and the edge host it runs on.
    env[TWIN_UUID] = twin_uuid
    env[API_KEY] = ctx.token
    env["CYBERWAVE_EDGE_HOST_PLATFORM"] = ctx.host_platform
    children = _dedupe(child_twin_uuids)
    if children:
        env[CHILD_TWIN_UUIDS] = ",".join(children)
    if video_device and ctx.host_platform == "linux" and VIDEO_DEVICE not in params:
        env[VIDEO_DEVICE] = video_device

    # How to reach the platform, then what the operator configured.
    env.update(_broker_rows(ctx))
    if ctx.log_level_setting:
        env["CYBERWAVE_EDGE_LOG_LEVEL"] = ctx.log_level_setting
    if not ctx.is_production and ctx.environment:
        env["CYBERWAVE_ENVIRONMENT"] = ctx.environment
    for source in (ctx.cyberwave_envs, ctx.cyberwave_process_env):
        for key, value in _forwardable(source):
            env.setdefault(key, value)
    if MQTT_USE_TLS not in env and MQTT_USE_TLS not in params and _tls_port(env, ctx):
        env[MQTT_USE_TLS] = "true"
    env["CYBERWAVE_EDGE_CONFIG_DIR"] = CONTAINER_CONFIG_DIR
    env.update(_data_bus_rows(ctx, params))

    # A multi-service profile's own env overrides all of the above.
    env.update(_without_identity(shared_env))
    env.update(_without_identity(service_env))

    # Rows the edge always forces, whatever came before.
    url = container_base_url(ctx.base_url, ctx.host_platform)
    env["CYBERWAVE_BASE_URL"] = url
    env["CYBERWAVE_API_URL"] = url
    if twin_json_present:
        env[TWIN_JSON_FILE] = container_twin_json_path(twin_uuid)

    # The driver's own -e: data-bus keys win, others only fill gaps.
    for key, value in params.items():
        if is_data_bus_key(key) or key not in env:
            env[key] = value
    return env
