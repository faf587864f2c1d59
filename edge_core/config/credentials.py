"""The API token and operator settings from ``credentials.json``.

The Cyberwave CLI writes this file at install time (protocol.md 3.3); the
edge core only reads it. Every problem becomes one ``ConfigError`` line
that names the file, the field and how to fix it, because without a token
the edge core cannot do anything useful.

The token is never cached for long (``read_token`` re-reads the file, so a
rotated token is picked up) and never appears in a ``repr``. This module
does not check the token against the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_core.config.files import read_json_file
from edge_core.errors import ConfigError

CREDENTIALS_FILE = "credentials.json"
LOGIN_FIX = 'run "sudo cyberwave edge install" to log this device in'


@dataclass(frozen=True)
class Credentials:
    """What the edge core reads from ``credentials.json``."""

    path: Path
    token: str = field(repr=False)
    envs: Mapping[str, str] = field(default_factory=dict)
    driver_overrides: Mapping[str, str] = field(default_factory=dict)


def credentials_path(config_dir: Path) -> Path:
    """Where ``credentials.json`` lives in ``config_dir``."""
    return config_dir / CREDENTIALS_FILE


def load_credentials(config_dir: Path) -> Credentials:
    """Read and validate ``{config_dir}/credentials.json``.

    Raises ``ConfigError`` when the file is missing, unreadable, not a JSON
    object, has no usable ``token``, or has an ``envs`` or
    ``driver_overrides`` that is not an object of strings. Never writes.
    """
    path = credentials_path(config_dir)
    document = _read_object(path)
    return Credentials(
        path=path,
        token=_token(document, path),
        envs=_string_map(document, "envs", path),
        driver_overrides=_string_map(document, "driver_overrides", path),
    )


def read_token(path: Path) -> str:
    """Read the token again from the credentials file at ``path``.

    Used when the backend answers 401, so a rotated token is picked up
    without a restart. Raises ``ConfigError`` like ``load_credentials``.
    """
    return _token(_read_object(path), path)


def apply_envs(envs: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``envs`` into ``environ`` where the process has no value yet.

    Every key with a non-empty string value is copied unless ``environ``
    already holds a non-empty value for it (the process environment wins).
    Returns the keys that were copied, in the order of ``envs``.
    """
    applied: list[str] = []
    for key, value in envs.items():
        if not isinstance(value, str) or not value:
            continue
        if environ.get(key, "").strip():
            continue
        environ[key] = value
        applied.append(key)
    return applied


def _read_object(path: Path) -> Mapping[str, object]:
    document = read_json_file(path, what="credentials", fix=LOGIN_FIX)
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "is not a JSON object", LOGIN_FIX)
    return document


def _token(document: Mapping[str, object], path: Path) -> str:
    if "token" not in document or document["token"] is None:
        raise ConfigError(str(path), "token", "is missing", LOGIN_FIX)
    token = document["token"]
    if not isinstance(token, str):
        raise ConfigError(str(path), "token", "is not a string", LOGIN_FIX)
    token = token.strip()
    if not token:
        raise ConfigError(str(path), "token", "is empty", LOGIN_FIX)
    return token


def _string_map(document: Mapping[str, object], key: str, path: Path) -> dict[str, str]:
    value = document.get(key)
    if value is None:
        return {}
    fix = (
        f'edit {path.name} so "{key}" maps names to text values '
        f'(e.g. {{"NAME": "value"}}), or remove "{key}"'
    )
    if not isinstance(value, dict):
        raise ConfigError(str(path), key, "is not an object", fix)
    for name, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(str(path), f"{key}.{name}", "is not a string", fix)
    return dict(value)
