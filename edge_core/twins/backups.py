"""Backups of damaged twin JSON files, so a repair never loses bytes.

Before a twin file that is not valid JSON is rewritten, its bytes are
kept as ``{config}/run/twin-backups/<uuid>-<UTC timestamp>.corrupt``
(0600); only the newest few per twin are kept. Names sort in the order
the backups were made.

This module does not decide when to repair; twin sync does.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_core.config.files import atomic_write_bytes

log = logging.getLogger(__name__)

BACKUP_DIR = Path("run") / "twin-backups"
BACKUPS_KEPT = 5
BACKUP_MODE = 0o600


def keep_backup(
    config_dir: Path, twin_uuid: str, data: bytes, *, now: float, kept: int
) -> Path:
    """Write ``data`` as the twin's newest backup and prune older ones.

    ``now`` is the epoch time in the name. Raises ``OSError`` when the
    backup cannot be written (a full disk); nothing is left half written.
    """
    directory = config_dir / BACKUP_DIR
    directory.mkdir(parents=True, exist_ok=True)
    # A taken name moves the stamp on by a microsecond, keeping the order.
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    path = _backup_path(directory, twin_uuid, moment)
    while path.exists():
        moment += timedelta(microseconds=1)
        path = _backup_path(directory, twin_uuid, moment)
    atomic_write_bytes(path, data, mode=BACKUP_MODE)
    try:
        _prune(directory, twin_uuid, max(1, kept))
    except OSError as exc:
        log.debug("could not prune old backups of twin %s: %s", twin_uuid, exc)
    return path


def backups_of(config_dir: Path, twin_uuid: str) -> list[Path]:
    """The twin's backups, oldest first."""
    return _listed(config_dir / BACKUP_DIR, twin_uuid)


def _prune(directory: Path, twin_uuid: str, kept: int) -> None:
    for old in _listed(directory, twin_uuid)[:-kept]:
        old.unlink(missing_ok=True)
        log.debug("removed old twin file backup %s", old)


def _listed(directory: Path, twin_uuid: str) -> list[Path]:
    if not directory.is_dir():
        return []
    pattern = re.compile(re.escape(twin_uuid) + r"-\d{8}T\d{6}\.\d{6}Z\.corrupt")
    return sorted(p for p in directory.iterdir() if pattern.fullmatch(p.name))


def _backup_path(directory: Path, twin_uuid: str, moment: datetime) -> Path:
    return directory / f"{twin_uuid}-{moment.strftime('%Y%m%dT%H%M%S.%fZ')}.corrupt"
