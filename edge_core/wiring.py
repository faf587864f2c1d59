"""How the daemon's parts are configured from Settings.

Pure translations from the one typed ``Settings`` (and the credentials
and host facts) into the option objects of the MQTT session and of the
driver model. Kept apart from
the daemon so ``status`` builds its broker check exactly as the daemon
does.
"""

from __future__ import annotations

from pathlib import Path

from edge_core import __version__
from edge_core.cloud.mqtt import MqttConfig, broker_credentials
from edge_core.config.credentials import Credentials
from edge_core.config.settings import Settings
from edge_core.host.platform import PlatformFacts
from edge_core.model.desired import DriverContext, LaunchContext
from edge_core.runtime.docker import EngineFacts


def mqtt_config(settings: Settings, token: str) -> MqttConfig:
    """The broker session settings of protocol.md 2.1 and 2.2."""
    username, password = broker_credentials(
        token=token,
        username_setting=settings.mqtt_username,
        password_setting=settings.mqtt_password,
    )
    return MqttConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        use_tls=settings.mqtt_use_tls,
        ca_cert=settings.mqtt_tls_ca_cert,
        username=username,
        password=password,
        protocol=settings.mqtt_protocol,
        keepalive=settings.mqtt_keepalive,
        connect_timeout=settings.mqtt_connect_timeout,
        connect_attempts=settings.mqtt_connect_attempts,
        max_payload_bytes=settings.mqtt_max_payload_bytes,
        topic_aliases=settings.mqtt_topic_aliases,
        reconnect_min_delay=settings.mqtt_reconnect_min,
        reconnect_max_delay=settings.backoff_max,
    )


def driver_context(
    settings: Settings, credentials: Credentials, facts: PlatformFacts
) -> DriverContext:
    """What the environment layering needs, from Settings and credentials."""
    return DriverContext(
        token=credentials.token,
        base_url=settings.base_url,
        environment=settings.environment,
        is_production=settings.is_production,
        host_platform=facts.system.lower(),
        mqtt_host_setting=settings.mqtt_host if settings.mqtt_host_configured else None,
        mqtt_port_setting=(
            str(settings.mqtt_port) if settings.mqtt_port_configured else None
        ),
        local_backend_host=settings.local_backend_host,
        log_level_setting=settings.cyberwave_process_env.get(
            "CYBERWAVE_EDGE_LOG_LEVEL"
        ),
        cyberwave_envs=settings.cyberwave_envs,
        cyberwave_process_env=settings.cyberwave_process_env,
        data_backend=settings.data_backend,
        zenoh_shared_memory=settings.zenoh_shared_memory,
        zenoh_mode=settings.zenoh_mode,
        zenoh_connect=settings.zenoh_connect,
        zenoh_router_enabled=settings.zenoh_router_enabled,
        zenoh_router_port=settings.zenoh_router_port,
        mqtt_port_effective=settings.mqtt_port,
    )


def launch_context(
    settings: Settings,
    fingerprint: str,
    facts: PlatformFacts,
    engine: EngineFacts | None = None,
) -> LaunchContext:
    """How driver containers are launched on this host and engine."""
    # --gpus needs the nvidia runtime AND it as the engine's default runtime.
    gpu = (
        engine is not None and engine.has_nvidia and engine.default_runtime == "nvidia"
    )
    return LaunchContext(
        config_dir=str(settings.config_dir),
        version=__version__,
        privileged=settings.driver_privileged,
        log_max_size=settings.docker_log_max_size,
        log_max_file=settings.docker_log_max_file,
        host_is_linux=facts.system.lower() == "linux",
        v4l_exists=Path("/dev/v4l").is_dir(),
        fingerprint=fingerprint,
        jetson=facts.is_jetson,
        gpu_available=gpu,
    )
