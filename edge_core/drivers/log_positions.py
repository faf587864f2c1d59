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
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from edge_core.config.files import atomic_write_json, read_regular
from edge_core.drivers.logs import LogPosition
from edge_core.logsetup import ProblemLog, format_exception_line

log = logging.getLogger(__name__)

FILE_NAME = "log-positions.json"


def positions_path(config_dir: Path) -> Path:
    return config_dir / "run" / FILE_NAME


def load_positions(path: Path) -> dict[str, LogPosition]:
    """The positions kept in ``path``; entries that do not parse are skipped."""
    try:
        document = json.loads(read_regular(path, follow=False).decode("utf-8"))
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


class PositionKeeper:
    """Writes the positions when they changed, at most once per ``every`` s.

    Lines forwarded since the last write are sent again after a power cut,
    never lost. A write that fails is said once (the positions are only a
    cache) and tried again at the next chance.
    """

    def __init__(
        self, path: Path, *, every: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._every = every
        self._clock = clock
        self._saved: dict[str, LogPosition] = {}
        self._due = 0.0
        self._problems = ProblemLog(log)

    def load(self) -> dict[str, LogPosition]:
        """The positions the last process kept."""
        self._saved = load_positions(self.path)
        return dict(self._saved)

    def save(self, positions: Mapping[str, LogPosition], *, now: bool = False) -> None:
        """Write ``positions`` if they changed and a write is due (or ``now``)."""
        if not now and self._clock() < self._due:
            return
        if dict(positions) == self._saved:
            return
        self._due = self._clock() + self._every
        try:
            save_positions(self.path, positions)
        except OSError as exc:
            self._problems.report(
                "save",
                "could not save %s: %s; after a restart the edge core sends "
                "the last lines of each driver log again",
                self.path,
                format_exception_line(exc),
            )
            return
        self._problems.clear("save")
        self._saved = dict(positions)
