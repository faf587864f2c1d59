"""Every environment variable the edge core reads, parsed once into ``Settings``.

Settings come from two places (protocol.md 3.3 and 5.6): "runtime"
variables are looked up in the process environment (non-empty, stripped),
then in the ``envs`` block of ``credentials.json`` (only ``CYBERWAVE_*``
keys), then fall back to the default; "process" variables come from the
process environment only. Everything is read once at start (and again on
``restart_edge_core``) and handed down as one frozen object, so no module
reads ``os.environ`` on its own (7b item 20).

A tuning value that is not a number or out of range never stops the edge
core: the default is used and ``Settings.warnings`` gets one line naming
the variable, the bad value and the default, for the log and ``status``.

Adding a variable is one row in ``VARIABLES`` plus one field in
``Settings``. The few values derived from several variables (the broker
endpoint, TLS and the topic prefix, protocol.md 2.1, 2.4, 7b item 25) are
computed in ``_derive``. This module does not read any file.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.cyberwave.com"
DEFAULT_MQTT_HOST = "mqtt.cyberwave.com"
TLS_PORT = 8883
LOCAL_BROKER_PORT = 1883
PRODUCTION = "production"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MQTT_V5 = frozenset({"5", "v5", "mqtt5", "mqttv5"})
_MQTT_V311 = frozenset({"311", "3", "3.1.1", "v311", "mqtt3", "mqttv311", "v3.1.1"})
# What the engine's json-file log driver accepts as max-size (10m, 1.5g, 512k).
_LOG_SIZE = re.compile(r"\d+(\.\d+)? ?([kmgtp]i?b?|b)?", re.IGNORECASE)
LOGS_OFF = "off"
LARGEST = 1_000_000_000
"""The largest number any variable without its own upper bound takes:
about 31 years in seconds. Larger values are typos, and waits on them
overflow the platform's timer (``OverflowError``)."""


class Kind(enum.Enum):
    """How the text of a variable is turned into a value."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    LOG_LEVEL = "log_level"
    MQTT_PROTOCOL = "mqtt_protocol"
    LOG_SIZE = "log_size"
    LOG_FILES = "log_files"


TEXT, INT, FLOAT, BOOL = Kind.TEXT, Kind.INT, Kind.FLOAT, Kind.BOOL
RUNTIME, PROCESS = True, False


@dataclass(frozen=True)
class Var:
    """One environment variable: where it is read, how, and its default.

    ``runtime`` variables also look in the credentials ``envs`` block.
    ``gt``, ``ge`` and ``le`` bound numbers (without ``le``, ``LARGEST``
    applies); a value outside them is replaced by the default with a
    warning.
    """

    name: str
    attr: str
    kind: Kind
    default: Any
    runtime: bool = PROCESS
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    aliases: tuple[str, ...] = ()


# fmt: off
VARIABLES: tuple[Var, ...] = (
    # Core and connectivity (protocol.md 5.6). The broker endpoint, TLS and the
    # topic prefix are finished in ``_derive``.
    Var("CYBERWAVE_BASE_URL", "base_url", TEXT, DEFAULT_BASE_URL, RUNTIME),
    Var("CYBERWAVE_ENVIRONMENT", "environment", TEXT, PRODUCTION, RUNTIME),
    Var("CYBERWAVE_MQTT_HOST", "mqtt_host", TEXT, None, RUNTIME),
    Var("CYBERWAVE_MQTT_PORT", "mqtt_port", INT, None, ge=1, le=65535),
    Var("CYBERWAVE_MQTT_USE_TLS", "mqtt_use_tls", BOOL, False),
    Var("CYBERWAVE_MQTT_TLS_CA_CERT", "mqtt_tls_ca_cert", TEXT, None),
    Var("CYBERWAVE_MQTT_USERNAME", "mqtt_username", TEXT, "mqttcyb"),
    Var("CYBERWAVE_MQTT_PASSWORD", "mqtt_password", TEXT, None, RUNTIME),
    Var("CYBERWAVE_MQTT_PROTOCOL", "mqtt_protocol", Kind.MQTT_PROTOCOL, 5),
    Var("CYBERWAVE_MQTT_TOPIC_PREFIX", "mqtt_topic_prefix", TEXT, None,
        aliases=("CYBERWAVE_TOPIC_PREFIX",)),
    Var("CYBERWAVE_MQTT_CONNECT_TIMEOUT", "mqtt_connect_timeout", FLOAT, 10.0, gt=0),
    Var("CYBERWAVE_MQTT_CONNECT_ATTEMPTS", "mqtt_connect_attempts", INT, 3, ge=1),
    Var("CYBERWAVE_MQTT_KEEPALIVE_SECONDS", "mqtt_keepalive", INT, 60, ge=1, le=65535),
    Var("CYBERWAVE_MQTT_MAX_PAYLOAD_BYTES", "mqtt_max_payload_bytes", INT,
        32 * 1024 * 1024, ge=1),
    Var("CYBERWAVE_MQTT_TOPIC_ALIASES", "mqtt_topic_aliases", BOOL, False),
    Var("CYBERWAVE_WORKSPACE_ID", "workspace_id", TEXT, None),
    Var("CYBERWAVE_EDGE_UUID", "edge_uuid_override", TEXT, None),
    Var("CYBERWAVE_CLIENT_USER_AGENT", "client_user_agent", TEXT, None),
    Var("CYBERWAVE_EDGE_LOG_LEVEL", "log_level", Kind.LOG_LEVEL, "INFO"),
    # Loop, REST and shutdown timing.
    Var("CYBERWAVE_EDGE_HEALTH_PUBLISH_INTERVAL_SECONDS", "health_publish_interval",
        FLOAT, 5.0, ge=1),
    Var("CYBERWAVE_RECONCILE_INTERVAL_SECONDS", "reconcile_interval", FLOAT, 15.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_EDGE_DISCOVER_INTERVAL_SECONDS", "discover_interval", FLOAT, 30.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_REST_TIMEOUT_SECONDS", "rest_timeout", FLOAT, 10.0, RUNTIME, gt=0),
    Var("CYBERWAVE_REST_RETRIES", "rest_retries", INT, 3, RUNTIME, ge=0),
    Var("CYBERWAVE_BACKOFF_INITIAL_SECONDS", "backoff_initial", FLOAT, 1.0, RUNTIME,
        gt=0),
    Var("CYBERWAVE_BACKOFF_MAX_SECONDS", "backoff_max", FLOAT, 60.0, RUNTIME, gt=0),
    Var("CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS", "shutdown_timeout", FLOAT, 10.0, RUNTIME,
        gt=0),
    Var("CYBERWAVE_STARTUP_TIMEOUT_MINUTES", "startup_timeout_minutes", INT, 30, ge=1),
    Var("CYBERWAVE_EDGE_JSON_SYNC_INTERVAL_LOOPS", "edge_json_sync_interval_loops",
        INT, 20, ge=1),
    Var("CYBERWAVE_WORKER_SYNC_INTERVAL_LOOPS", "worker_sync_interval_loops", INT, 20,
        ge=1),
    # Drivers.
    Var("CYBERWAVE_DRIVER_PRIVILEGED", "driver_privileged", BOOL, True, RUNTIME),
    Var("CYBERWAVE_DRIVER_LAUNCH_PARALLELISM", "driver_launch_parallelism", INT, 4,
        RUNTIME, ge=1, le=16),
    Var("CYBERWAVE_DRIVER_STARTUP_PROBE_SECONDS", "driver_startup_probe", FLOAT, 120.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_CREATE_TIMEOUT_SECONDS", "driver_create_timeout", FLOAT, 30.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_REMOVE_TIMEOUT_SECONDS", "driver_remove_timeout", FLOAT, 60.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS", "driver_probe_interval", FLOAT, 1.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_DEPENDENCY_HEALTH_TIMEOUT_SECONDS",
        "driver_dependency_health_timeout", FLOAT, 180.0, gt=0),
    Var("CYBERWAVE_DRIVER_DEPENDENCY_HEALTH_POLL_SECONDS",
        "driver_dependency_health_poll", FLOAT, 2.0, gt=0),
    Var("CYBERWAVE_DOCKER_PULL_TIMEOUT_SECONDS", "pull_timeout", FLOAT, 600.0, RUNTIME,
        gt=0),
    Var("CYBERWAVE_DRIVER_LOG_COLD_START_TAIL", "driver_log_tail", INT, 500, ge=0),
    Var("CYBERWAVE_DOCKER_LOG_MAX_SIZE", "docker_log_max_size", Kind.LOG_SIZE, "10m"),
    Var("CYBERWAVE_DOCKER_LOG_MAX_FILE", "docker_log_max_file", Kind.LOG_FILES, "3"),
    Var("CYBERWAVE_DRIVER_RESTART_LOOP_THRESHOLD", "driver_restart_loop_threshold",
        INT, 4, ge=1),
    Var("CYBERWAVE_DRIVER_RESTART_LOOP_WINDOW_SECONDS", "driver_restart_loop_window",
        FLOAT, 60.0, gt=0),
    Var("CYBERWAVE_DRIVER_TROUBLESHOOTING_URL", "driver_troubleshooting_url", TEXT,
        "https://docs.cyberwave.com"),
    Var("CYBERWAVE_DRIVER_STARTING_ALERT_UPDATE_INTERVAL_SECONDS",
        "driver_starting_alert_update_interval", FLOAT, 2.0, ge=0.5),
    Var("CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS", "driver_removed_revival_seconds",
        FLOAT, 300.0, RUNTIME),
    Var("CYBERWAVE_DRIVER_REVIVAL_DEBOUNCE_SECONDS", "driver_revival_debounce", FLOAT,
        60.0, RUNTIME, ge=0),
    Var("CYBERWAVE_DRIVER_FLAP_COOLOFF_SECONDS", "driver_flap_cooloff", FLOAT, 600.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_FLAP_COOLOFF_MAX_SECONDS", "driver_flap_cooloff_max", FLOAT,
        3600.0, RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_FLAP_CLEAR_SECONDS", "driver_flap_clear", FLOAT, 600.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_DRIVER_LOG_BUFFER_LINES", "driver_log_buffer_lines", INT, 1000,
        ge=0),
    Var("CYBERWAVE_MQTT_RECONNECT_MIN_SECONDS", "mqtt_reconnect_min", FLOAT, 1.0,
        gt=0),
    Var("CYBERWAVE_CONTAINER_PRUNE_INTERVAL_SECONDS", "container_prune_interval", FLOAT,
        1800.0, gt=0),
    Var("CYBERWAVE_SKIP_PERIODIC_DOCKER_CLEANUP", "skip_periodic_docker_cleanup", BOOL,
        False),
    Var("CYBERWAVE_SD_CARD_CLEANUP_USAGE_PERCENT", "sd_card_cleanup_usage_percent",
        FLOAT, 80.0, ge=0, le=100),
    # Worker.
    Var("CYBERWAVE_WORKER_IMAGE", "worker_image", TEXT, None, RUNTIME),
    Var("CYBERWAVE_WORKER_CPU_QUOTA_PERCENT", "worker_cpu_quota_percent", FLOAT, None,
        RUNTIME, gt=0, aliases=("CYBERWAVE_WORKER_CPU_PERCENT",)),
    Var("CYBERWAVE_WORKER_MEMORY_MB", "worker_memory_mb", INT, None, RUNTIME, ge=1),
    Var("CYBERWAVE_WORKER_AUTO_MEMORY_LIMIT", "worker_auto_memory_limit", BOOL, True,
        RUNTIME),
    Var("CYBERWAVE_GPU_MEM_FRACTION", "gpu_mem_fraction", FLOAT, None, RUNTIME, gt=0,
        le=1),
    Var("CYBERWAVE_WORKER_READY_TIMEOUT_SECONDS", "worker_ready_timeout", FLOAT, 900.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_WORKER_STARTUP_PROBE_SECONDS", "worker_startup_probe", FLOAT, 30.0,
        RUNTIME, gt=0),
    Var("CYBERWAVE_WORKER_IMAGE_PULL_RETRIES", "worker_image_pull_retries", INT, 3,
        ge=1),
    # Host, platform and health.
    Var("CYBERWAVE_PLATFORM_VARIANT", "platform_variant", TEXT, None),
    Var("CYBERWAVE_JETSON_ALLOW_UNSUPPORTED_L4T", "jetson_allow_unsupported_l4t", BOOL,
        False),
    Var("CYBERWAVE_BATTERY_WH", "battery_wh", FLOAT, None),
    Var("CYBERWAVE_RESOURCE_SATURATION_PERCENT", "resource_saturation_percent", FLOAT,
        95.0, gt=0, le=100),
    Var("CYBERWAVE_MACOS_DEVICE_BRIDGE_COMMAND", "macos_device_bridge_command", TEXT,
        None),
    Var("CYBERWAVE_MACOS_STRIP_VIDEO_DEVICE_PARAMS", "macos_strip_video_device_params",
        BOOL, True),
    Var("CYBERWAVE_MACOS_CAMERA_STREAM_URL", "macos_camera_stream_url", TEXT, None),
    # Data plane.
    Var("CYBERWAVE_DATA_BACKEND", "data_backend", TEXT, "zenoh"),
    Var("ZENOH_CONNECT", "zenoh_connect", TEXT, None),
    Var("ZENOH_MODE", "zenoh_mode", TEXT, None),
    Var("ZENOH_SHARED_MEMORY", "zenoh_shared_memory", BOOL, False),
    Var("ZENOH_ROUTER_ENABLED", "zenoh_router_enabled", BOOL, False),
    Var("ZENOH_ROUTER_IMAGE", "zenoh_router_image", TEXT, "eclipse/zenoh:latest"),
    Var("ZENOH_ROUTER_PORT", "zenoh_router_port", INT, 7447, ge=1, le=65535),
    Var("ZENOH_LISTEN", "zenoh_listen", TEXT, "tcp/0.0.0.0:7447", RUNTIME),
)
# fmt: on


@dataclass(frozen=True)
class Settings:
    """Every setting of one edge core process, typed and validated.

    ``mqtt_host``, ``mqtt_port`` and ``mqtt_use_tls`` are the effective
    broker endpoint; ``mqtt_host_configured`` and ``mqtt_port_configured``
    say whether the variables were given, ``local_backend`` whether the base
    URL points at a local backend (whose host is ``local_backend_host``).
    ``warnings`` holds one line per ignored bad value.
    """

    config_dir: Path
    base_url: str
    environment: str
    mqtt_host: str
    mqtt_port: int
    mqtt_use_tls: bool
    mqtt_host_configured: bool
    mqtt_port_configured: bool
    local_backend: bool
    local_backend_host: str | None
    mqtt_tls_ca_cert: str | None
    mqtt_username: str
    mqtt_password: str | None = field(repr=False)
    mqtt_protocol: int
    mqtt_topic_prefix: str
    mqtt_connect_timeout: float
    mqtt_connect_attempts: int
    mqtt_keepalive: int
    mqtt_max_payload_bytes: int
    mqtt_topic_aliases: bool
    workspace_id: str | None
    edge_uuid_override: str | None
    client_user_agent: str | None
    log_level: str
    health_publish_interval: float
    reconcile_interval: float
    discover_interval: float
    rest_timeout: float
    rest_retries: int
    backoff_initial: float
    backoff_max: float
    shutdown_timeout: float
    startup_timeout_minutes: int
    edge_json_sync_interval_loops: int
    worker_sync_interval_loops: int
    driver_privileged: bool
    driver_launch_parallelism: int
    driver_startup_probe: float
    driver_create_timeout: float
    driver_remove_timeout: float
    driver_probe_interval: float
    driver_dependency_health_timeout: float
    driver_dependency_health_poll: float
    pull_timeout: float
    driver_log_tail: int
    docker_log_max_size: str
    docker_log_max_file: str
    driver_restart_loop_threshold: int
    driver_restart_loop_window: float
    driver_troubleshooting_url: str
    driver_starting_alert_update_interval: float
    driver_removed_revival_seconds: float
    driver_revival_debounce: float
    driver_flap_cooloff: float
    driver_flap_cooloff_max: float
    driver_flap_clear: float
    driver_log_buffer_lines: int
    mqtt_reconnect_min: float
    container_prune_interval: float
    skip_periodic_docker_cleanup: bool
    sd_card_cleanup_usage_percent: float
    worker_image: str | None
    worker_cpu_quota_percent: float | None
    worker_memory_mb: int | None
    worker_auto_memory_limit: bool
    gpu_mem_fraction: float | None
    worker_ready_timeout: float
    worker_startup_probe: float
    worker_image_pull_retries: int
    platform_variant: str | None
    jetson_allow_unsupported_l4t: bool
    battery_wh: float | None
    resource_saturation_percent: float
    macos_device_bridge_command: str | None
    macos_strip_video_device_params: bool
    macos_camera_stream_url: str | None
    data_backend: str
    zenoh_connect: str | None
    zenoh_mode: str | None
    zenoh_shared_memory: bool
    zenoh_router_enabled: bool
    zenoh_router_image: str
    zenoh_router_port: int
    zenoh_listen: str
    cyberwave_process_env: Mapping[str, str] = field(repr=False)
    cyberwave_envs: Mapping[str, str] = field(repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def is_production(self) -> bool:
        """Whether the environment is production (compared in lowercase)."""
        return self.environment.strip().lower() == PRODUCTION


def load_settings(
    environ: Mapping[str, str], *, envs: Mapping[str, str], config_dir: Path
) -> Settings:
    """Build ``Settings`` from the process environment and credentials ``envs``.

    Call it after ``apply_envs`` so that "process" variables also see the
    values the installer stored in ``envs``. Never raises for a bad value.
    """
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for var in VARIABLES:
        values[var.attr] = _value(var, environ, envs, warnings)

    values.update(_derive(values))
    values["config_dir"] = config_dir
    values["cyberwave_process_env"] = {
        key: value
        for key, value in environ.items()
        if key.startswith("CYBERWAVE_") and value.strip()
    }
    values["cyberwave_envs"] = {
        key: value
        for key, value in envs.items()
        if key.startswith("CYBERWAVE_") and isinstance(value, str)
    }
    values["warnings"] = tuple(warnings)
    return Settings(**values)


RESTART_APPLIES = (
    "cyberwave_process_env",
    "cyberwave_envs",
    "data_backend",
    "zenoh_connect",
    "zenoh_mode",
    "zenoh_shared_memory",
    "zenoh_router_enabled",
    "zenoh_router_image",
    "zenoh_router_port",
    "driver_privileged",
    "docker_log_max_size",
    "docker_log_max_file",
    "warnings",
)
"""Settings a remote restart takes into the drivers (and router) it starts.
The others (connections, timings, the loop's own rules) hold for the life
of the process."""


def settings_for_restart(
    current: Settings, fresh: Settings
) -> tuple[Settings, tuple[str, ...]]:
    """``current`` with the ``RESTART_APPLIES`` values of ``fresh``, and the
    names of the variables that changed but apply only at the next start."""
    merged = replace(
        current, **{name: getattr(fresh, name) for name in RESTART_APPLIES}
    )
    later = tuple(
        var.name
        for var in VARIABLES
        if var.attr not in RESTART_APPLIES
        and getattr(current, var.attr) != getattr(fresh, var.attr)
    )
    return merged, later


def lookup(
    var: Var, environ: Mapping[str, str], envs: Mapping[str, str]
) -> tuple[str, str] | None:
    """The variable name that supplied ``var`` and its stripped text, if any."""
    names = (var.name, *var.aliases)
    for name in names:
        text = environ.get(name, "").strip()
        if text:
            return name, text
    if not var.runtime:
        return None
    for name in names:
        stored = envs.get(name)
        if not name.startswith("CYBERWAVE_") or not isinstance(stored, str):
            continue
        if stored.strip():
            return name, stored.strip()
    return None


class _Invalid(ValueError):
    """A variable's text cannot be used; the message says why."""


def _value(
    var: Var, environ: Mapping[str, str], envs: Mapping[str, str], warnings: list[str]
) -> Any:
    found = lookup(var, environ, envs)
    if found is None:
        return var.default
    name, text = found
    try:
        value = _PARSERS[var.kind](text)
        _check_bounds(var, value)
    except _Invalid as exc:
        warnings.append(f'{name}="{text}" {exc}; {_fallback(var.default)}')
        return var.default
    return value


def _check_bounds(var: Var, value: Any) -> None:
    if var.kind not in (Kind.INT, Kind.FLOAT):
        return
    too_low = (var.gt is not None and value <= var.gt) or (
        var.ge is not None and value < var.ge
    )
    too_high = var.le is not None and value > var.le
    if too_low or too_high:
        raise _Invalid(f"is out of range ({_describe_bounds(var)})")
    if var.le is None and value > LARGEST:
        raise _Invalid(f"is too large (at most {LARGEST})")
    if var.ge is None and var.gt is None and value < -LARGEST:
        raise _Invalid(f"is too small (at least -{LARGEST})")


def _describe_bounds(var: Var) -> str:
    parts: list[str] = []
    if var.gt is not None:
        parts.append(f"more than {_show(var.gt)}")
    if var.ge is not None:
        parts.append(f"at least {_show(var.ge)}")
    if var.le is not None:
        parts.append(f"at most {_show(var.le)}")
    return "must be " + " and ".join(parts)


def _fallback(default: Any) -> str:
    if default is None:
        return "ignoring it"
    return f"using {_show(default)}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _text(text: str) -> str:
    return text


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Invalid("is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Invalid("is not a number") from None
    if not math.isfinite(value):
        raise _Invalid("is not a finite number")
    return value


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid("is not a boolean (use true or false)")


def _log_level(text: str) -> str:
    upper = text.upper()
    if upper == "WARN":
        return "WARNING"
    if upper in LOG_LEVELS:
        return upper
    raise _Invalid(f"is not a log level ({', '.join(LOG_LEVELS)})")


def _mqtt_protocol(text: str) -> int:
    lowered = text.lower()
    if lowered in _MQTT_V5:
        return 5
    if lowered in _MQTT_V311:
        return 311
    raise _Invalid("is not an MQTT protocol version (5 or 311)")


def _log_size(text: str) -> str:
    if text.lower() == LOGS_OFF:
        return LOGS_OFF
    if not _LOG_SIZE.fullmatch(text):
        raise _Invalid('is not a log size (e.g. 10m, 1g, or "off")')
    return text


def _log_files(text: str) -> str:
    # The engine refuses every container whose max-file is not a count.
    if not text.isdigit() or int(text) < 1:
        raise _Invalid("is not a whole number of at least 1")
    return text


_PARSERS: Mapping[Kind, Callable[[str], Any]] = {
    Kind.TEXT: _text,
    Kind.INT: _integer,
    Kind.FLOAT: _number,
    Kind.BOOL: _boolean,
    Kind.LOG_LEVEL: _log_level,
    Kind.MQTT_PROTOCOL: _mqtt_protocol,
    Kind.LOG_SIZE: _log_size,
    Kind.LOG_FILES: _log_files,
}


def _derive(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values computed from several variables (protocol.md 2.1, 2.4)."""
    base_url = str(values["base_url"]).rstrip("/") or DEFAULT_BASE_URL
    backend_host = urlsplit(base_url).hostname
    local_host = backend_host if is_local_host(backend_host) else None
    host_setting: str | None = values["mqtt_host"]
    port_setting: int | None = values["mqtt_port"]
    explicit_tls: bool = values["mqtt_use_tls"]

    # 7b item 25: an explicit host or port always wins over the local rule.
    if local_host is not None and host_setting is None and port_setting is None:
        host, port, tls = local_host, LOCAL_BROKER_PORT, explicit_tls
    else:
        host = host_setting or DEFAULT_MQTT_HOST
        port = port_setting or TLS_PORT
        tls = explicit_tls or port == TLS_PORT

    return {
        "base_url": base_url,
        "mqtt_host": host,
        "mqtt_port": port,
        "mqtt_use_tls": tls,
        "mqtt_host_configured": host_setting is not None,
        "mqtt_port_configured": port_setting is not None,
        "local_backend": local_host is not None,
        "local_backend_host": local_host,
        "mqtt_topic_prefix": topic_prefix(
            values["mqtt_topic_prefix"], values["environment"]
        ),
    }


def topic_prefix(explicit: str | None, environment: str) -> str:
    """The MQTT topic prefix: the explicit one, else a non-production environment."""
    if explicit:
        return explicit
    name = environment.strip()
    if name and name.lower() != PRODUCTION:
        return name
    return ""


def is_local_host(host: str | None) -> bool:
    """Whether ``host`` is localhost, 0.0.0.0 or a private or loopback IP literal."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_unspecified
