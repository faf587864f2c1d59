"""Broker username/password derivation and client ids (protocol.md 2.2, 2.3)."""

from __future__ import annotations

import re

import pytest

from edge_core.cloud.mqtt import MqttConfig, broker_credentials, new_client_id

# sha256("cw_abc"), computed independently of the code under test.
CW_ABC_HASH = "a9a662a565ab7b0cfdb7609f7ad91d6f569b9d58ab8d7b30f6584c0e3417439a"


def test_placeholder_username_with_token_password_sends_hashed_username() -> None:
    """Token cw_abc gives username cwh_<sha256("cw_abc")> and password cw_abc."""
    username, password = broker_credentials(
        token="cw_abc", username_setting="mqttcyb", password_setting=None
    )
    assert username == f"cwh_{CW_ABC_HASH}"
    assert password == "cw_abc"


def test_empty_username_setting_counts_as_the_placeholder() -> None:
    """An empty username setting behaves like the mqttcyb placeholder."""
    username, _ = broker_credentials(
        token="cw_abc", username_setting="", password_setting=None
    )
    assert username == f"cwh_{CW_ABC_HASH}"


def test_explicit_api_token_password_is_hashed_and_sent() -> None:
    """An explicit password starting cw_ is still an API token: hashed username."""
    username, password = broker_credentials(
        token="cw_other", username_setting="mqttcyb", password_setting="cw_abc"
    )
    assert (username, password) == (f"cwh_{CW_ABC_HASH}", "cw_abc")


def test_legacy_broker_password_keeps_the_username_as_given() -> None:
    """A password not starting cw_ is a broker account: username unchanged."""
    assert broker_credentials(
        token="cw_abc", username_setting="mqttcyb", password_setting="s3cret"
    ) == ("mqttcyb", "s3cret")


def test_custom_username_is_sent_unchanged_with_the_token() -> None:
    """A username other than the placeholder is sent as is, password = token."""
    assert broker_credentials(
        token="cw_abc", username_setting="robot-7", password_setting=None
    ) == ("robot-7", "cw_abc")


def test_client_id_has_producer_live_and_32_hex() -> None:
    """Client ids look like <producer>_live_<32 lowercase hex> and are unique."""
    first, second = new_client_id(), new_client_id("worker")
    assert re.fullmatch(r"edge-core_live_[0-9a-f]{32}", first)
    assert re.fullmatch(r"worker_live_[0-9a-f]{32}", second)
    assert new_client_id() != first


def test_config_refuses_unknown_protocol() -> None:
    """Only MQTT 5 and 3.1.1 are accepted as protocol numbers."""
    with pytest.raises(ValueError, match="5 or 311"):
        MqttConfig(
            host="h",
            port=1,
            use_tls=False,
            ca_cert=None,
            username="",
            password=None,
            protocol=4,
        )
