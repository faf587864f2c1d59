"""MQTT topic names of the Cyberwave platform (protocol.md 2.4, 2.5).

The prefix is the environment name for non-production brokers and is joined
with no separator (``dev`` gives ``devedges/<uuid>/command``). Choosing the
prefix from settings is the config layer's job; this module only spells the
topics, so every publisher and subscriber agrees on them.
"""

from __future__ import annotations

_FORBIDDEN = ("/", "+", "#")


def edge_health(prefix: str, twin_uuid: str) -> str:
    """The bootstrap ``edge_health`` topic of one twin."""
    return f"{prefix}cyberwave/twin/{_segment(twin_uuid)}/edge_health"


def driverlog(prefix: str, twin_uuid: str) -> str:
    """The ``driverlog`` topic that carries a twin's driver log lines."""
    return f"{prefix}cyberwave/twin/{_segment(twin_uuid)}/driverlog"


def edge_command(prefix: str, edge_uuid: str) -> str:
    """The edge command topic (no ``cyberwave/`` segment on purpose)."""
    return f"{prefix}edges/{_segment(edge_uuid)}/command"


def twin_command(prefix: str, twin_uuid: str) -> str:
    """The command topic of one twin (``sync_workflows`` and friends)."""
    return f"{prefix}cyberwave/twin/{_segment(twin_uuid)}/command"


def worker_health(prefix: str, target: str) -> str:
    """The ``worker_health`` topic; ``target`` is a twin or environment uuid."""
    return f"{prefix}cyberwave/twin/{_segment(target)}/worker_health"


def _segment(value: str) -> str:
    # A uuid with a slash or a wildcard would address other topics or make
    # paho refuse the publish deep inside the network thread.
    if not value or any(char in value for char in _FORBIDDEN):
        raise ValueError(f"{value!r} cannot be used as one MQTT topic segment")
    return value
