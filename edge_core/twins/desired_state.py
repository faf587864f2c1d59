"""The last desired state fetched from the cloud, kept for offline boots.

After each successful environment download the edge core writes
``{config}/desired-state.json`` (atomic, 0600): the environment uuid, the
twins of the environment, the assets of the linked twins and when they
were fetched. A boot without network starts the same drivers from it. It
never holds the token; it is replaced, never deleted, by the next
successful download.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_core.config.files import atomic_write_json, read_regular
from edge_core.model.twins import as_id

log = logging.getLogger(__name__)

FILE_NAME = "desired-state.json"
FILE_MODE = 0o600
SCHEMA = 1
BASELINES_KEY = "twin_baselines"


@dataclass(frozen=True)
class Snapshot:
    """One environment download: twins as listed, assets by uuid."""

    environment_uuid: str
    twins: tuple[Mapping[str, Any], ...]
    assets: Mapping[str, Mapping[str, Any]]
    fetched_at: float
    twin_baselines: Mapping[str, str] = field(default_factory=dict)
    """SHA-256 of each twin JSON file as last written or pushed, by twin uuid."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "environment_uuid": self.environment_uuid,
            "fetched_at": self.fetched_at,
            "twins": list(self.twins),
            "assets": dict(self.assets),
            BASELINES_KEY: dict(self.twin_baselines),
        }

    def with_baselines(self, baselines: Mapping[str, str]) -> Snapshot:
        """The same download carrying ``baselines`` (e.g. ``TwinSync.baselines()``)."""
        return replace(self, twin_baselines=dict(baselines))

    def with_pushed(self, pushed: Mapping[str, Mapping[str, Any]]) -> Snapshot:
        """The same download with the fields pushed since laid over its twins.

        ``pushed`` maps twin uuids to the fields a push sent (field by
        field, as the backend stores them), so a pass of this download
        does not write the values from before the push back into a file.
        """
        if not pushed:
            return self
        twins = tuple(_laid_over(twin, pushed) for twin in self.twins)
        return replace(self, twins=twins)


def _laid_over(
    twin: Mapping[str, Any], pushed: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any]:
    fields = pushed.get(as_id(twin.get("uuid")) or "")
    return {**twin, **fields} if fields else twin


def new_snapshot(
    environment_uuid: str,
    twins: Sequence[Mapping[str, Any]],
    assets: Mapping[str, Mapping[str, Any]],
    *,
    now: float | None = None,
    baselines: Mapping[str, str] | None = None,
) -> Snapshot:
    return Snapshot(
        environment_uuid=environment_uuid,
        twins=tuple(twins),
        assets=dict(assets),
        fetched_at=time.time() if now is None else now,
        twin_baselines=dict(baselines or {}),
    )


def save(config_dir: Path, snapshot: Snapshot) -> None:
    """Replace the saved snapshot atomically, mode 0600."""
    atomic_write_json(config_dir / FILE_NAME, snapshot.to_json(), mode=FILE_MODE)


def save_baselines(config_dir: Path, baselines: Mapping[str, str]) -> bool:
    """Replace only the twin baselines of the saved snapshot; False when none.

    The rest of the file is kept byte for byte in meaning. Without a
    usable saved snapshot there is nothing to attach baselines to (the
    next download saves them with it), so nothing is written. Raises
    ``OSError`` when the write fails; the previous file is then intact.
    """
    path = config_dir / FILE_NAME
    try:
        data = _read(path)
    except FileNotFoundError:
        log.debug("no %s yet; twin baselines are saved with the next download", path)
        return False
    except (OSError, ValueError) as exc:
        log.debug("%s is unusable (%s); twin baselines not saved", path, exc)
        return False
    if not isinstance(data, dict):
        log.debug("%s is not a JSON object; twin baselines not saved", path)
        return False
    data[BASELINES_KEY] = dict(baselines)
    atomic_write_json(path, data, mode=FILE_MODE)
    return True


def load(config_dir: Path) -> Snapshot | None:
    """The persisted snapshot, or None when absent or unusable (logged)."""
    path = config_dir / FILE_NAME
    try:
        data = _read(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(
            "%s is unusable (%s); it will be replaced by the next successful download",
            path,
            exc,
        )
        return None
    try:
        return Snapshot(
            environment_uuid=str(data["environment_uuid"]),
            twins=tuple(t for t in data["twins"] if isinstance(t, dict)),
            assets={k: v for k, v in data["assets"].items() if isinstance(v, dict)},
            fetched_at=saved_time(data.get("fetched_at")) or 0.0,
            twin_baselines=_baselines(data.get(BASELINES_KEY)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s has an unexpected shape (%s); ignoring it", path, exc)
        return None


def _read(path: Path) -> Any:
    """The parsed file. It is the edge core's own: a symlink, FIFO or device
    there is refused, never followed or read (a link to credentials.json
    would put the token into the next save)."""
    return json.loads(read_regular(path, follow=False).decode("utf-8"))


# The latest moment a file can name and still be shown (9999-12-31).
_LATEST_EPOCH = 253402300799.0


def saved_time(value: object) -> float | None:
    """A moment a file of the config dir names, as epoch seconds.

    An epoch number or an ISO time (one without an offset is UTC) is
    taken; anything else, or a moment before 1970 or after 9999 (which
    cannot be shown as a date), is None.
    """
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        try:
            value = moment.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    epoch = float(value)
    if not math.isfinite(epoch) or not 0.0 <= epoch <= _LATEST_EPOCH:
        return None
    return epoch


def _baselines(value: object) -> dict[str, str]:
    """The baselines of a saved file; absent or malformed entries are skipped."""
    if not isinstance(value, dict):
        return {}
    return {
        key: digest
        for key, digest in value.items()
        if isinstance(key, str) and isinstance(digest, str)
    }
