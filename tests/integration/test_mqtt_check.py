"""The boot connectivity check ``check_broker`` against real brokers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from edge_core.cloud.mqtt import MqttConfig, broker_credentials, check_broker
from edge_core.errors import BrokerUnavailable, TemporaryError
from tests.emulator.broker import Broker, free_port
from tests.emulator.certs import make_tls_files

pytestmark = pytest.mark.integration


def config(host: str, port: int, **overrides: object) -> MqttConfig:
    """A check config with short timeouts."""
    settings: dict[str, object] = {
        "host": host,
        "port": port,
        "use_tls": False,
        "ca_cert": None,
        "username": "",
        "password": None,
        "protocol": 5,
        "connect_timeout": 3.0,
        "connect_attempts": 1,
    }
    settings.update(overrides)
    return MqttConfig(**settings)  # type: ignore[arg-type]


def test_reachable_broker_passes_with_one_connect(mqtt_broker: Broker) -> None:
    """A healthy broker is checked with exactly one CONNECT and no error."""
    check_broker(config(mqtt_broker.host, mqtt_broker.port))
    assert mqtt_broker.connect_count() == 1


def test_closed_port_fails_with_clear_message_after_backoff() -> None:
    """A closed port fails every attempt; waits are 2 s then 4 s (injected)."""
    port = free_port()
    sleeps: list[float] = []
    with pytest.raises(BrokerUnavailable) as caught:
        check_broker(config("127.0.0.1", port, connect_attempts=3), sleep=sleeps.append)
    message = str(caught.value)
    assert f"MQTT broker 127.0.0.1:{port} unreachable: connection refused" in message
    assert "(after 3 attempts)" in message
    assert "\n" not in message
    assert sleeps == [2.0, 4.0]
    assert isinstance(caught.value, TemporaryError)


def test_backoff_is_capped_at_five_seconds() -> None:
    """The wait between attempts is min(2 × attempt, 5) s."""
    sleeps: list[float] = []
    with pytest.raises(BrokerUnavailable):
        check_broker(
            config("127.0.0.1", free_port(), connect_attempts=5), sleep=sleeps.append
        )
    assert sleeps == [2.0, 4.0, 5.0, 5.0]


def test_wrong_ca_fails_tls_verification(
    mqtt_broker_tls: Broker, tmp_path: Path
) -> None:
    """A certificate from another CA is reported as a TLS verification failure."""
    other = make_tls_files(tmp_path / "other", name="other")
    settings = config(
        mqtt_broker_tls.host,
        mqtt_broker_tls.port,
        use_tls=True,
        ca_cert=str(other.ca_cert),
    )
    with pytest.raises(BrokerUnavailable, match="TLS verification failed"):
        check_broker(settings)
    assert mqtt_broker_tls.connect_count() == 0


def test_right_ca_passes_tls(mqtt_broker_tls: Broker) -> None:
    """With the CA that signed the broker certificate the check passes."""
    check_broker(
        config(
            mqtt_broker_tls.host,
            mqtt_broker_tls.port,
            use_tls=True,
            ca_cert=mqtt_broker_tls.ca_cert,
        )
    )
    assert mqtt_broker_tls.connect_count() == 1


def test_tls_client_on_plain_port_reports_handshake_failure(
    mqtt_broker: Broker,
) -> None:
    """TLS against a plain listener fails with a TLS handshake message."""
    with pytest.raises(BrokerUnavailable, match="TLS handshake failed"):
        check_broker(config(mqtt_broker.host, mqtt_broker.port, use_tls=True))


def test_plain_client_on_tls_port_is_reported(mqtt_broker_tls: Broker) -> None:
    """Plain MQTT against a TLS listener names the TLS setting as the suspect."""
    with pytest.raises(BrokerUnavailable, match="CYBERWAVE_MQTT_USE_TLS"):
        check_broker(config(mqtt_broker_tls.host, mqtt_broker_tls.port))


def test_bad_credentials_are_reported(tmp_path: Path) -> None:
    """A password the broker rejects is a refusal naming the credential settings."""
    token = f"cw_{uuid.uuid4().hex}"
    username, password = broker_credentials(
        token=token, username_setting="mqttcyb", password_setting=None
    )
    with Broker(users={username: password}, workdir=tmp_path / "auth") as broker:
        check_broker(
            config(broker.host, broker.port, username=username, password=password)
        )
        wrong = config(broker.host, broker.port, username=username, password="cw_wrong")
        with pytest.raises(
            BrokerUnavailable,
            match=r"refused the session: (bad credentials|not authorised); check",
        ):
            check_broker(wrong)


def test_v311_refusal_is_reported_too(tmp_path: Path) -> None:
    """MQTT 3.1.1 refusals map to the same readable reason."""
    with Broker(users={"someone": "pw"}, workdir=tmp_path / "auth311") as broker:
        wrong = config(
            broker.host, broker.port, username="someone", password="nope", protocol=311
        )
        with pytest.raises(BrokerUnavailable, match="refused the session"):
            check_broker(wrong)


def test_unknown_host_is_reported() -> None:
    """A host name that does not resolve names CYBERWAVE_MQTT_HOST."""
    with pytest.raises(
        BrokerUnavailable, match=r"could not be resolved.*CYBERWAVE_MQTT_HOST"
    ):
        check_broker(config("broker.invalid", 1883))
