"""Typed settings from the process environment and the credentials envs block."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_core.config.settings import (
    VARIABLES,
    Settings,
    load_settings,
    settings_for_restart,
)

CONFIG = Path("/tmp/cw-config")


def _load(
    environ: Mapping[str, str] | None = None, envs: Mapping[str, str] | None = None
) -> Settings:
    return load_settings(environ or {}, envs=envs or {}, config_dir=CONFIG)


def test_defaults() -> None:
    """With nothing set every setting has its documented default and there are no
    warnings."""
    s = _load()

    assert s.config_dir == CONFIG
    assert s.base_url == "https://api.cyberwave.com"
    assert s.environment == "production"
    assert s.is_production
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == (
        "mqtt.cyberwave.com",
        8883,
        True,
    )
    assert not s.mqtt_host_configured and not s.mqtt_port_configured
    assert not s.local_backend and s.local_backend_host is None
    assert s.mqtt_username == "mqttcyb" and s.mqtt_password is None
    assert s.mqtt_protocol == 5
    assert s.mqtt_topic_prefix == ""
    assert (s.mqtt_connect_timeout, s.mqtt_connect_attempts, s.mqtt_keepalive) == (
        10.0,
        3,
        60,
    )
    assert s.mqtt_max_payload_bytes == 32 * 1024 * 1024
    assert s.mqtt_topic_aliases is False
    assert s.log_level == "INFO"
    assert s.health_publish_interval == 5.0
    assert (s.reconcile_interval, s.discover_interval) == (15.0, 30.0)
    assert (s.rest_timeout, s.rest_retries) == (10.0, 3)
    assert (s.backoff_initial, s.backoff_max) == (1.0, 60.0)
    assert s.driver_privileged is True
    assert s.driver_launch_parallelism == 4
    assert (
        s.driver_startup_probe,
        s.driver_create_timeout,
        s.driver_remove_timeout,
    ) == (
        120.0,
        30.0,
        60.0,
    )
    assert (s.driver_probe_interval, s.pull_timeout, s.driver_log_tail) == (
        1.0,
        600.0,
        500,
    )
    assert (s.docker_log_max_size, s.docker_log_max_file) == ("10m", "3")
    assert (s.driver_restart_loop_threshold, s.driver_restart_loop_window) == (4, 60.0)
    assert s.driver_troubleshooting_url == "https://docs.cyberwave.com"
    assert s.driver_starting_alert_update_interval == 2.0
    assert s.driver_removed_revival_seconds == 300.0
    assert (s.data_backend, s.zenoh_connect, s.zenoh_mode) == ("zenoh", None, None)
    assert (s.zenoh_shared_memory, s.zenoh_router_enabled) == (False, False)
    assert (s.zenoh_router_image, s.zenoh_router_port) == ("eclipse/zenoh:latest", 7447)
    assert s.zenoh_listen == "tcp/0.0.0.0:7447"
    assert (s.platform_variant, s.battery_wh, s.worker_image) == (None, None, None)
    assert s.resource_saturation_percent == 95.0
    assert (s.edge_json_sync_interval_loops, s.worker_sync_interval_loops) == (20, 20)
    assert (s.shutdown_timeout, s.startup_timeout_minutes) == (10.0, 30)
    assert (s.workspace_id, s.edge_uuid_override, s.client_user_agent) == (
        None,
        None,
        None,
    )
    assert s.warnings == ()


def test_table_and_dataclass_agree() -> None:
    """Every table row fills a Settings field, and no field is left without a source."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    attrs = [var.attr for var in VARIABLES]
    derived = {
        "config_dir",
        "mqtt_host_configured",
        "mqtt_port_configured",
        "local_backend",
        "local_backend_host",
        "cyberwave_process_env",
        "cyberwave_envs",
        "warnings",
    }

    assert len(attrs) == len(set(attrs))
    assert set(attrs) <= fields
    assert fields - set(attrs) == derived
    assert len({var.name for var in VARIABLES}) == len(VARIABLES)


def test_runtime_lookup_order() -> None:
    """A runtime setting comes from the process first, then envs, then the default."""
    envs = {"CYBERWAVE_ENVIRONMENT": "dev", "CYBERWAVE_WORKER_IMAGE": "img:envs"}

    from_envs = _load({}, envs)
    from_process = _load({"CYBERWAVE_ENVIRONMENT": " staging "}, envs)
    blank_process = _load({"CYBERWAVE_ENVIRONMENT": "   "}, envs)

    assert (from_envs.environment, from_envs.worker_image) == ("dev", "img:envs")
    assert from_process.environment == "staging"
    assert blank_process.environment == "dev"


def test_process_settings_ignore_envs() -> None:
    """A process-only variable stored only in envs is not used."""
    s = _load({}, {"CYBERWAVE_MQTT_USERNAME": "legacy", "CYBERWAVE_WORKSPACE_ID": "w1"})
    assert (s.mqtt_username, s.workspace_id) == ("mqttcyb", None)


def test_envs_lookup_only_for_cyberwave_keys() -> None:
    """Runtime lookups in envs consider CYBERWAVE_* keys only."""
    s = _load({}, {"ZENOH_LISTEN": "tcp/0.0.0.0:9999"})
    assert s.zenoh_listen == "tcp/0.0.0.0:7447"


def test_bad_number_warns_and_uses_default() -> None:
    """A non-numeric tuning value keeps the default and adds one warning naming it."""
    s = _load({"CYBERWAVE_RECONCILE_INTERVAL_SECONDS": "abc"})

    assert s.reconcile_interval == 15.0
    assert s.warnings == (
        'CYBERWAVE_RECONCILE_INTERVAL_SECONDS="abc" is not a number; using 15',
    )


def test_bad_value_from_envs_is_reported_by_name() -> None:
    """A bad value found in envs is reported with the variable name too."""
    s = _load({}, {"CYBERWAVE_REST_RETRIES": "many"})
    assert s.rest_retries == 3
    assert s.warnings == (
        'CYBERWAVE_REST_RETRIES="many" is not a whole number; using 3',
    )


@pytest.mark.parametrize(
    ("name", "value", "attr", "default", "warning"),
    [
        (
            "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM",
            "17",
            "driver_launch_parallelism",
            4,
            "is out of range (must be at least 1 and at most 16); using 4",
        ),
        (
            "CYBERWAVE_EDGE_HEALTH_PUBLISH_INTERVAL_SECONDS",
            "0.5",
            "health_publish_interval",
            5.0,
            "is out of range (must be at least 1); using 5",
        ),
        (
            "CYBERWAVE_DRIVER_STARTING_ALERT_UPDATE_INTERVAL_SECONDS",
            "0.1",
            "driver_starting_alert_update_interval",
            2.0,
            "is out of range (must be at least 0.5); using 2",
        ),
        (
            "CYBERWAVE_BACKOFF_MAX_SECONDS",
            "0",
            "backoff_max",
            60.0,
            "is out of range (must be more than 0); using 60",
        ),
        (
            "CYBERWAVE_BATTERY_WH",
            "nan",
            "battery_wh",
            None,
            "is not a finite number; ignoring it",
        ),
        ("CYBERWAVE_MQTT_PORT", "70000", "mqtt_port", 8883, "is out of range"),
        (
            "CYBERWAVE_GPU_MEM_FRACTION",
            "1.5",
            "gpu_mem_fraction",
            None,
            "is out of range (must be more than 0 and at most 1); ignoring it",
        ),
    ],
)
def test_out_of_range_values_warn(
    name: str, value: str, attr: str, default: object, warning: str
) -> None:
    """Values outside their bounds keep the default and the warning states the
    bounds."""
    s = _load({name: value})

    assert getattr(s, attr) == default
    assert len(s.warnings) == 1
    assert s.warnings[0].startswith(f'{name}="{value}" {warning}')


def test_valid_tuning_values_are_used() -> None:
    """Valid numbers are parsed into their types."""
    s = _load(
        {
            "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": "0.2",
            "CYBERWAVE_DRIVER_LAUNCH_PARALLELISM": "16",
            "CYBERWAVE_BATTERY_WH": "99.5",
            "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS": "-1",
            "ZENOH_ROUTER_PORT": "7448",
        }
    )
    assert s.reconcile_interval == 0.2
    assert s.driver_launch_parallelism == 16
    assert s.battery_wh == 99.5
    assert s.driver_removed_revival_seconds == -1.0
    assert s.zenoh_router_port == 7448
    assert s.warnings == ()


@pytest.mark.parametrize("text", ["1", "true", "YES", "On"])
def test_true_spellings(text: str) -> None:
    """1, true, yes and on (any case) are true."""
    assert _load({"ZENOH_ROUTER_ENABLED": text}).zenoh_router_enabled is True


@pytest.mark.parametrize("text", ["0", "false", "No", "OFF"])
def test_false_spellings(text: str) -> None:
    """0, false, no and off (any case) are false."""
    assert _load({"CYBERWAVE_DRIVER_PRIVILEGED": text}).driver_privileged is False


def test_bad_boolean_warns() -> None:
    """Any other text keeps the default and warns."""
    s = _load({"CYBERWAVE_DRIVER_PRIVILEGED": "maybe"})
    assert s.driver_privileged is True
    assert s.warnings == (
        'CYBERWAVE_DRIVER_PRIVILEGED="maybe" is not a boolean (use true or false); '
        "using true",
    )


def test_log_level_is_case_insensitive() -> None:
    """Log levels are accepted in any case and normalized to upper case."""
    assert _load({"CYBERWAVE_EDGE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert _load({"CYBERWAVE_EDGE_LOG_LEVEL": "warn"}).log_level == "WARNING"


def test_bad_log_level_warns() -> None:
    """An unknown log level keeps INFO and warns."""
    s = _load({"CYBERWAVE_EDGE_LOG_LEVEL": "verbose"})
    assert s.log_level == "INFO"
    assert s.warnings[0].startswith(
        'CYBERWAVE_EDGE_LOG_LEVEL="verbose" is not a log level'
    )


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("5", 5),
        ("v5", 5),
        ("mqtt5", 5),
        ("MQTTv5", 5),
        ("311", 311),
        ("3", 311),
        ("v311", 311),
        ("mqtt3", 311),
        ("mqttv311", 311),
        ("v3.1.1", 311),
    ],
)
def test_mqtt_protocol_spellings(text: str, version: int) -> None:
    """Every spelling of protocol.md 2.1 maps to 5 or 311."""
    s = _load({"CYBERWAVE_MQTT_PROTOCOL": text})
    assert s.mqtt_protocol == version
    assert s.warnings == ()


def test_bad_mqtt_protocol_warns() -> None:
    """An unknown protocol keeps v5 and warns."""
    s = _load({"CYBERWAVE_MQTT_PROTOCOL": "4"})
    assert s.mqtt_protocol == 5
    assert len(s.warnings) == 1


def test_topic_prefix_from_environment() -> None:
    """A non-production environment is the prefix, unchanged; production gives none."""
    assert _load({}, {"CYBERWAVE_ENVIRONMENT": "Dev"}).mqtt_topic_prefix == "Dev"
    assert _load({"CYBERWAVE_ENVIRONMENT": "PRODUCTION"}).mqtt_topic_prefix == ""


def test_explicit_topic_prefix_wins() -> None:
    """CYBERWAVE_MQTT_TOPIC_PREFIX beats CYBERWAVE_TOPIC_PREFIX, which beats the
    environment."""
    both = {
        "CYBERWAVE_MQTT_TOPIC_PREFIX": "a/",
        "CYBERWAVE_TOPIC_PREFIX": "b/",
        "CYBERWAVE_ENVIRONMENT": "dev",
    }
    assert _load(both).mqtt_topic_prefix == "a/"
    only_alias = {"CYBERWAVE_TOPIC_PREFIX": "b/", "CYBERWAVE_ENVIRONMENT": "dev"}
    assert _load(only_alias).mqtt_topic_prefix == "b/"


def test_environment_keeps_its_case() -> None:
    """The environment value is kept as given; is_production compares in lower case."""
    s = _load({"CYBERWAVE_ENVIRONMENT": "Production"})
    assert s.environment == "Production"
    assert s.is_production


def test_base_url_trailing_slashes_are_stripped() -> None:
    """The base URL loses any trailing slash."""
    s = _load({}, {"CYBERWAVE_BASE_URL": "https://api-dev.cyberwave.com//"})
    assert s.base_url == "https://api-dev.cyberwave.com"


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("http://localhost:8000", "localhost"),
        ("http://127.0.0.1:8000/", "127.0.0.1"),
        ("http://0.0.0.0:8000", "0.0.0.0"),
        ("http://192.168.1.20", "192.168.1.20"),
        ("http://10.1.2.3:80", "10.1.2.3"),
        ("http://172.16.0.4", "172.16.0.4"),
        ("http://[::1]:8000", "::1"),
    ],
)
def test_local_backend_uses_same_host_plain(base_url: str, host: str) -> None:
    """A local or private base URL puts the broker on that host, port 1883, without
    TLS."""
    s = _load({"CYBERWAVE_BASE_URL": base_url})

    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == (host, 1883, False)
    assert s.local_backend and s.local_backend_host == host


@pytest.mark.parametrize(
    "base_url",
    ["https://api-dev.cyberwave.com", "http://8.8.8.8", "http://example.local"],
)
def test_public_backend_is_not_local(base_url: str) -> None:
    """Public hosts and names other than localhost do not trigger the local rule."""
    s = _load({"CYBERWAVE_BASE_URL": base_url})
    assert not s.local_backend
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == (
        "mqtt.cyberwave.com",
        8883,
        True,
    )


def test_explicit_broker_beats_local_rule() -> None:
    """An explicit host and port win over the local-backend rule (7b item 25)."""
    s = _load(
        {"CYBERWAVE_BASE_URL": "http://localhost:8000", "CYBERWAVE_MQTT_PORT": "18830"},
        {"CYBERWAVE_MQTT_HOST": "broker.lan"},
    )
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == ("broker.lan", 18830, False)
    assert s.mqtt_host_configured and s.mqtt_port_configured
    assert s.local_backend and s.local_backend_host == "localhost"


def test_explicit_host_alone_keeps_default_port() -> None:
    """With only a host set, the local rule is off and the port defaults to 8883 with
    TLS."""
    s = _load(
        {
            "CYBERWAVE_BASE_URL": "http://127.0.0.1:8000",
            "CYBERWAVE_MQTT_HOST": "localhost",
        }
    )
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == ("localhost", 8883, True)
    assert s.mqtt_host_configured and not s.mqtt_port_configured


def test_explicit_port_alone_keeps_default_host() -> None:
    """With only a port set, the host defaults to mqtt.cyberwave.com and TLS follows the
    port."""
    s = _load({"CYBERWAVE_BASE_URL": "http://localhost", "CYBERWAVE_MQTT_PORT": "1883"})
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_use_tls) == (
        "mqtt.cyberwave.com",
        1883,
        False,
    )


@pytest.mark.parametrize("flag", ["1", "true", "yes", "on"])
def test_use_tls_flag_turns_tls_on(flag: str) -> None:
    """CYBERWAVE_MQTT_USE_TLS truthy turns TLS on for any port."""
    s = _load(
        {
            "CYBERWAVE_MQTT_HOST": "b",
            "CYBERWAVE_MQTT_PORT": "1884",
            "CYBERWAVE_MQTT_USE_TLS": flag,
        }
    )
    assert s.mqtt_use_tls is True


def test_port_8883_is_always_tls() -> None:
    """Port 8883 means TLS even when the flag says false."""
    s = _load({"CYBERWAVE_MQTT_PORT": "8883", "CYBERWAVE_MQTT_USE_TLS": "false"})
    assert s.mqtt_use_tls is True


def test_cyberwave_snapshots_for_forwarding() -> None:
    """Non-empty CYBERWAVE_* process variables and all CYBERWAVE_* envs keys are kept
    for containers."""
    environ = {
        "CYBERWAVE_A": "1",
        "CYBERWAVE_EMPTY": " ",
        "PATH": "/bin",
        "ZENOH_MODE": "p",
    }
    envs = {"CYBERWAVE_B": "2", "ZENOH_CONNECT": "tcp/x:1"}

    s = _load(environ, envs)

    assert s.cyberwave_process_env == {"CYBERWAVE_A": "1"}
    assert s.cyberwave_envs == {"CYBERWAVE_B": "2"}


def test_repr_hides_password_and_snapshots() -> None:
    """The MQTT password and the forwarded variables never appear in the repr."""
    s = _load(
        {
            "CYBERWAVE_MQTT_PASSWORD": "hunter2-secret",
            "CYBERWAVE_API_KEY": "cw_leakme123",
        }
    )
    assert s.mqtt_password == "hunter2-secret"
    assert "hunter2-secret" not in repr(s)
    assert "cw_leakme123" not in repr(s)


def test_cpu_percent_alias() -> None:
    """CYBERWAVE_WORKER_CPU_PERCENT is accepted as an alias of the quota variable."""
    assert (
        _load({}, {"CYBERWAVE_WORKER_CPU_PERCENT": "150"}).worker_cpu_quota_percent
        == 150.0
    )
    both = {
        "CYBERWAVE_WORKER_CPU_QUOTA_PERCENT": "50",
        "CYBERWAVE_WORKER_CPU_PERCENT": "150",
    }
    assert _load(both).worker_cpu_quota_percent == 50.0


def test_every_warning_names_its_variable() -> None:
    """Several bad values give one warning each, in table order."""
    s = _load(
        {
            "CYBERWAVE_MQTT_CONNECT_TIMEOUT": "soon",
            "ZENOH_ROUTER_PORT": "-1",
            "CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS": "inf",
        }
    )
    assert [w.split("=")[0] for w in s.warnings] == [
        "CYBERWAVE_MQTT_CONNECT_TIMEOUT",
        "CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS",
        "ZENOH_ROUTER_PORT",
    ]


def test_a_restart_takes_driver_settings_and_names_the_rest(tmp_path: Path) -> None:
    """From settings read again on restart_edge_core, what the drivers get
    is taken; a changed connection or timing setting is only named."""
    current = load_settings(
        {"CYBERWAVE_BASE_URL": "https://api.cyberwave.com"},
        envs={},
        config_dir=tmp_path,
    )
    fresh = load_settings(
        {
            "CYBERWAVE_BASE_URL": "https://api-dev.cyberwave.com",
            "CYBERWAVE_RECONCILE_INTERVAL_SECONDS": "30",
            "CYBERWAVE_DOCKER_LOG_MAX_SIZE": "1m",
            "CYBERWAVE_DRIVER_PRIVILEGED": "false",
            "CYBERWAVE_SITE_LABEL": "cell-7",
        },
        envs={"CYBERWAVE_SITE_LABEL": "cell-7"},
        config_dir=tmp_path,
    )

    merged, later = settings_for_restart(current, fresh)

    assert merged.docker_log_max_size == "1m"
    assert merged.driver_privileged is False
    assert merged.cyberwave_envs == {"CYBERWAVE_SITE_LABEL": "cell-7"}
    assert merged.cyberwave_process_env["CYBERWAVE_SITE_LABEL"] == "cell-7"
    assert merged.base_url == "https://api.cyberwave.com"
    assert merged.reconcile_interval == current.reconcile_interval
    assert set(later) == {
        "CYBERWAVE_BASE_URL",
        "CYBERWAVE_RECONCILE_INTERVAL_SECONDS",
    }
