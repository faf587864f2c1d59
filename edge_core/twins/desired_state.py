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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_core.config.files import atomic_write_json

log = logging.getLogger(__name__)

FILE_NAME = "desired-state.json"
SCHEMA = 1


@dataclass(frozen=True)
class Snapshot:
    """One environment download: twins as listed, assets by uuid."""

    environment_uuid: str
    twins: tuple[Mapping[str, Any], ...]
    assets: Mapping[str, Mapping[str, Any]]
    fetched_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "environment_uuid": self.environment_uuid,
            "fetched_at": self.fetched_at,
            "twins": list(self.twins),
            "assets": dict(self.assets),
        }


def new_snapshot(
    environment_uuid: str,
    twins: Sequence[Mapping[str, Any]],
    assets: Mapping[str, Mapping[str, Any]],
    *,
    now: float | None = None,
) -> Snapshot:
    return Snapshot(
        environment_uuid=environment_uuid,
        twins=tuple(twins),
        assets=dict(assets),
        fetched_at=time.time() if now is None else now,
    )


def save(config_dir: Path, snapshot: Snapshot) -> None:
    atomic_write_json(config_dir / FILE_NAME, snapshot.to_json(), mode=0o600)


def load(config_dir: Path) -> Snapshot | None:
    """The persisted snapshot, or None when absent or unusable (logged)."""
    path = config_dir / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
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
            fetched_at=float(data.get("fetched_at", 0.0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s has an unexpected shape (%s); ignoring it", path, exc)
        return None
