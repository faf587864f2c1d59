"""The environment this edge serves, from ``environment.json``.

The CLI writes the file when the operator picks an environment and its
twins (protocol.md 3.4). A missing or malformed file is not fatal for the
daemon (protocol.md 7b item 13): the caller reports the ``ConfigError``
line and reads the file again on the next cycle. This module only parses;
it does not retry and does not fetch anything from the backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_core.config.files import read_json_file
from edge_core.errors import ConfigError

ENVIRONMENT_FILE = "environment.json"
SELECT_FIX = 'run "sudo cyberwave edge install" and select an environment'


@dataclass(frozen=True)
class EnvironmentConfig:
    """The environment UUID and the twins the operator selected.

    ``twin_uuids`` is None for a legacy file without the key, which means
    "find the twins by fingerprint"; an empty tuple means "no twins".
    """

    path: Path
    uuid: str
    twin_uuids: tuple[str, ...] | None


def environment_path(config_dir: Path) -> Path:
    """Where ``environment.json`` lives in ``config_dir``."""
    return config_dir / ENVIRONMENT_FILE


def canonical_uuid(value: object) -> str | None:
    """``value`` as a canonical lowercase UUID string, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def load_environment(config_dir: Path) -> EnvironmentConfig:
    """Read and validate ``{config_dir}/environment.json``.

    Raises ``ConfigError`` naming the file and field when the file is
    missing or not JSON, ``uuid`` is missing or not a UUID, or
    ``twin_uuids`` is not a list of UUID strings.
    """
    path = environment_path(config_dir)
    document = read_json_file(path, what="environment", fix=SELECT_FIX)
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "is not a JSON object", SELECT_FIX)
    return EnvironmentConfig(
        path=path,
        uuid=_environment_uuid(document, path),
        twin_uuids=_twin_uuids(document, path),
    )


def _environment_uuid(document: Mapping[str, object], path: Path) -> str:
    raw = document.get("uuid")
    if raw is None:
        raise ConfigError(str(path), "uuid", "is missing", SELECT_FIX)
    value = canonical_uuid(raw)
    if value is None:
        raise ConfigError(str(path), "uuid", f"is not a UUID ({raw!r})", SELECT_FIX)
    return value


def _twin_uuids(document: Mapping[str, object], path: Path) -> tuple[str, ...] | None:
    raw = document.get("twin_uuids")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ConfigError(str(path), "twin_uuids", "is not a list", SELECT_FIX)
    twins: list[str] = []
    for index, item in enumerate(raw):
        value = canonical_uuid(item)
        if value is None:
            raise ConfigError(
                str(path),
                f"twin_uuids[{index}]",
                f"is not a UUID ({item!r})",
                SELECT_FIX,
            )
        if value not in twins:
            twins.append(value)
    return tuple(twins)
