"""Names the platform relies on: containers and twin JSON files.

Container names are part of the wire contract (protocol.md 4.1): the web
UI, log forwarding and operators find drivers by them. Twin JSON files are
recognised by name alone (protocol.md 3.2).

It does not list containers or files; callers pass names in.
"""

from __future__ import annotations

import re
import uuid as uuid_lib

DRIVER_PREFIX = "cyberwave-driver-"
WORKER_PREFIX = "cyberwave-worker-"
ZENOH_ROUTER_PREFIX = "cyberwave-zenoh-router-"

PROTECTED_FILES = frozenset(
    {"credentials.json", "fingerprint.json", "environment.json", "edge.json"}
)

# Docker's own rule for container names, applied to the service part.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def short_id(value: str) -> str:
    """The first 8 characters of a uuid, as used in container names."""
    return value[:8]


def is_valid_service_name(name: str) -> bool:
    """Whether ``name`` can be the service suffix of a container name."""
    return bool(_SERVICE_NAME.match(name))


def driver_container_name(twin_uuid: str, service: str | None = None) -> str:
    """``cyberwave-driver-<twin8>``, or ``…-<service>`` for one service."""
    base = f"{DRIVER_PREFIX}{short_id(twin_uuid)}"
    if service is None:
        return base
    return f"{base}-{service}"


def worker_container_name(environment_uuid: str) -> str:
    """``cyberwave-worker-<env8>``."""
    return f"{WORKER_PREFIX}{short_id(environment_uuid)}"


def zenoh_router_name(environment_uuid: str | None) -> str:
    """``cyberwave-zenoh-router-<env8>``, or ``…-default`` without one."""
    if not environment_uuid:
        return f"{ZENOH_ROUTER_PREFIX}default"
    return f"{ZENOH_ROUTER_PREFIX}{short_id(environment_uuid)}"


def is_twin_json_name(filename: str) -> str | None:
    """The twin uuid when ``filename`` names a twin JSON file, else ``None``.

    A twin JSON file is ``<uuid>.json`` directly in the config directory;
    a name with a path separator or a protected name never is.
    """
    if "/" in filename or "\\" in filename or filename in PROTECTED_FILES:
        return None
    stem, dot, extension = filename.rpartition(".")
    if not dot or extension != "json" or not stem:
        return None
    try:
        uuid_lib.UUID(stem)
    except ValueError:
        return None
    return stem
