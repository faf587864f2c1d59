"""A config dir, the backend emulator and a ``TwinSync`` over them, for tests.

``Site`` downloads the example environment through the real REST client,
lets ``TwinSync`` write the twin files the way the driver pass does, edits
them the way a driver would (in place, same inode) and runs sync cycles.
It asserts nothing itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_core.cloud.rest import CloudClient
from edge_core.model.twins import Twin
from edge_core.twins.files import twin_path
from edge_core.twins.sync import SyncReport, TwinSync
from tests.emulator.server import Emulator

FINGERPRINT = "test-twin-sync"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
CAMERA = "c41d7e2a-0b3f-4a9e-8d6c-5f1e2a3b4c5d"
PUT_TWIN = r"^/api/v1/twins/[^/]+$"


class Site:
    """A config dir, the emulator and a ``TwinSync`` over them."""

    def __init__(self, tmp_path: Path, emulator: Emulator, client: CloudClient):
        self.config = tmp_path
        self.config.mkdir(exist_ok=True)
        self.emulator = emulator
        self.client = client
        self.sync = TwinSync(tmp_path, client)

    def listing(self) -> list[dict[str, Any]]:
        return self.client.environment_twins(ENV)

    def ensure(self, *uuids: str, sync: TwinSync | None = None) -> list[str]:
        """Write the files of ``uuids`` the way the driver pass does."""
        listing = {t["uuid"]: t for t in self.listing()}
        twins = [Twin.from_raw(listing[u]) for u in uuids]
        views = [t for t in twins if t is not None]
        assets = {
            str(t.asset_uuid): self.client.get_asset(str(t.asset_uuid)) for t in views
        }
        return (sync or self.sync).ensure_files(views, assets)

    def cycle(self, *uuids: str, sync: TwinSync | None = None) -> SyncReport:
        """One loop cycle: one listing, then sync."""
        return (sync or self.sync).sync(self.listing(), uuids or (ARM,))

    def path(self, twin_uuid: str = ARM) -> Path:
        path = twin_path(self.config, twin_uuid)
        assert path is not None
        return path

    def read(self, twin_uuid: str = ARM) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path(twin_uuid).read_text())
        return data

    def edit(self, twin_uuid: str = ARM, **changes: Any) -> None:
        """Change top-level keys in place, as a driver in a container would."""
        document = self.read(twin_uuid)
        document.update(changes)
        self.write_raw(json.dumps(document, indent=2).encode(), twin_uuid)

    def write_raw(self, data: bytes, twin_uuid: str = ARM) -> None:
        with self.path(twin_uuid).open("r+b") as handle:
            handle.write(data)
            handle.truncate()

    def puts(self) -> list[Any]:
        return [r.body for r in self.emulator.requests("PUT", PUT_TWIN)]
