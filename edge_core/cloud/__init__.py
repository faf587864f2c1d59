"""The cloud link: the REST client, the MQTT session and the topic names.

Layer 1: it knows the wire (protocol.md sections 1 and 2) and nothing about
drivers, alerts or twins beyond the shapes it sends and receives.
"""

from edge_core.cloud.mqtt import (
    MqttConfig,
    MqttSession,
    broker_credentials,
    check_broker,
    new_client_id,
)
from edge_core.cloud.rest import CloudClient

__all__ = [
    "CloudClient",
    "MqttConfig",
    "MqttSession",
    "broker_credentials",
    "check_broker",
    "new_client_id",
]
