"""The edge fingerprint: the stable identity of this computer.

The backend keys the edge and the twin pairing on this string, so it must
never change by accident (protocol.md 3.5). It is read from
``fingerprint.json`` when present, else taken from ``CYBERWAVE_EDGE_UUID``,
else computed from the hostname, the MAC address and the platform and then
saved. The computed value can depend on a random MAC, which is why it is
saved, and why a damaged ``fingerprint.json`` is reported instead of being
silently replaced (that would unpair every twin).

Read-only commands pass ``persist=False`` and never write (7b item 27).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import socket
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from edge_core.config.files import atomic_write_json, read_json_file
from edge_core.errors import ConfigError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_ENV = "CYBERWAVE_EDGE_UUID"
_RESTORE_FIX = (
    'restore it as {"fingerprint": "<fingerprint>"} from a backup; deleting it '
    "makes a new fingerprint and unpairs this edge's twins"
)

HostIdentity = tuple[str, str, str]


def compute_fingerprint(hostname: str, mac: str, plat: str) -> str:
    """``<prefix>-<suffix>`` from the host identity (protocol.md 3.5).

    The suffix is the first 12 hex digits of the SHA-256 of
    ``<hostname>-<mac>-<plat>``; the prefix is the first 15 characters of
    the hostname, lowercased, spaces and dots turned into ``-``, trailing
    ``-`` removed.
    """
    digest = hashlib.sha256(f"{hostname}-{mac}-{plat}".encode()).hexdigest()
    prefix = hostname[:15].lower().replace(" ", "-").replace(".", "-").rstrip("-")
    return f"{prefix}-{digest[:12]}"


def host_identity() -> HostIdentity:
    """The (hostname, MAC, platform) triple the fingerprint is computed from."""
    return _hostname(), _mac_address(uuid.getnode()), _platform_name()


def _hostname() -> str:
    for candidate in (
        socket.gethostname(),
        platform.node(),
        os.environ.get("HOSTNAME"),
    ):
        text = (candidate or "").strip()
        if text:
            return text
    return ""


def _mac_address(node: int) -> str:
    digits = f"{node:012x}"
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _platform_name() -> str:
    return f"{platform.system()}-{platform.machine()}"


def fingerprint_path(config_dir: Path) -> Path:
    """Where ``fingerprint.json`` lives in ``config_dir``."""
    return config_dir / FINGERPRINT_FILE


def resolve_fingerprint(
    config_dir: Path,
    environ: Mapping[str, str],
    *,
    persist: bool,
    identity: Callable[[], HostIdentity] = host_identity,
) -> str:
    """This edge's fingerprint: saved, else overridden, else computed.

    A computed fingerprint is saved to ``fingerprint.json`` (mode 0644)
    only when ``persist`` is true. Raises ``ConfigError`` when the file
    exists but cannot be read or is damaged, and when saving fails.
    """
    path = fingerprint_path(config_dir)
    saved = _saved_fingerprint(path)
    if saved:
        return saved

    override = environ.get(FINGERPRINT_ENV, "").strip()
    if override:
        return override

    fingerprint = compute_fingerprint(*identity())
    if persist:
        _save(path, fingerprint)
    return fingerprint


def _saved_fingerprint(path: Path) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    document = read_json_file(path, what="fingerprint", fix=_RESTORE_FIX)
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "is not a JSON object", _RESTORE_FIX)
    value = document.get("fingerprint")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(str(path), "fingerprint", "is not a string", _RESTORE_FIX)
    return value.strip() or None


def _save(path: Path, fingerprint: str) -> None:
    try:
        atomic_write_json(path, {"fingerprint": fingerprint}, mode=0o644)
    except OSError as exc:
        raise ConfigError(
            str(path),
            None,
            f"cannot be written ({exc.strerror or type(exc).__name__})",
            "make sure the config directory is writable and has free space",
        ) from None
    logger.info("saved new edge fingerprint %s to %s", fingerprint, path)
