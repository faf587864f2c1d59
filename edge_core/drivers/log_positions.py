"""How far each driver's log was forwarded, kept across edge core restarts.

Without it a restarted edge core (an upgrade, a power cut) would send the
cold-start tail of every running driver again. The file is
``{config}/run/log-positions.json``: container name to container id and
the engine timestamp of the last line forwarded. It is a cache: a missing
or damaged file only means the tail is sent once more, so reading it never
fails and a failed write is the caller's to log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from edge_core.config.files import atomic_write_json
from edge_core.drivers.logs import LogPosition

log = logging.getLogger(__name__)

FILE_NAME = "log-positions.json"


def positions_path(config_dir: Path) -> Path:
    return config_dir / "run" / FILE_NAME


def load_positions(path: Path) -> dict[str, LogPosition]:
    """The positions kept in ``path``; entries that do not parse are skipped."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.debug("%s is unusable (%s); driver logs start from their tail", path, exc)
        return {}
    if not isinstance(document, dict):
        return {}
    found: dict[str, LogPosition] = {}
    for name, entry in document.items():
        position = _position(entry)
        if isinstance(name, str) and position is not None:
            found[name] = position
    return found


def save_positions(path: Path, positions: Mapping[str, LogPosition]) -> None:
    """Replace ``path`` atomically (0644); raises ``OSError`` when it cannot.

    Its directory (``run/``, made by the daemon's state writer) must exist.
    """
    document = {
        name: {
            "container_id": position.container_id,
            "timestamp": position.timestamp.isoformat() if position.timestamp else None,
        }
        for name, position in sorted(positions.items())
        if position.container_id
    }
    atomic_write_json(path, document, mode=0o644)


def _position(entry: object) -> LogPosition | None:
    if not isinstance(entry, dict):
        return None
    container_id, stamp = entry.get("container_id"), entry.get("timestamp")
    if not isinstance(container_id, str) or not container_id:
        return None
    if stamp is None:
        return LogPosition(container_id, None)
    if not isinstance(stamp, str):
        return None
    try:
        timestamp = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if timestamp.tzinfo is None:
        return None
    return LogPosition(container_id, timestamp)
