"""A model cache site for tests: the emulator as catalog, a real file
server for weights, a fresh cache directory, and a factory for managers."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_core.cloud.rest import CloudClient
from edge_core.config.paths import Owner
from edge_core.models import (
    CacheOptions,
    Downloader,
    DownloadOptions,
    ModelManager,
)
from tests.emulator.server import Emulator
from tests.support.weights_server import WeightsServer

V1 = os.urandom(300_000)
V2 = os.urandom(420_000)


def sha(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def publish_signed(
    emulator: Emulator, files: WeightsServer, model_id: str, data: bytes
) -> None:
    """Put ``model_id`` in the catalog with a signed artifact ``<model_id>.pt``."""
    files.add(f"bucket/{model_id}.pt", data)
    emulator.put_mlmodel(
        {
            "uuid": str(uuid.uuid4()),
            "model_external_id": model_id,
            "checksum_sha256": sha(data),
        },
        weights={"signed_url": files.url(f"bucket/{model_id}.pt", "sig=1")},
    )


@dataclass
class Site:
    """One edge's model cache wired to the emulator and the file server."""

    emulator: Emulator
    files: WeightsServer
    cache: Path
    make: Callable[..., ModelManager]

    def publish(
        self,
        external_id: str,
        data: bytes,
        *,
        signed: bool = True,
        upstream: bool = False,
        checksum: str | None = "auto",
        extra: dict[str, Any] | None = None,
        model_uuid: str | None = None,
    ) -> str:
        """Put a model in the catalog and its bytes on the file server; its uuid."""
        model_uuid = model_uuid or str(uuid.uuid4())
        self.files.add(f"bucket/{external_id}.pt", data)
        self.files.add(f"upstream/{external_id}.pt", data)
        model: dict[str, Any] = {
            "uuid": model_uuid,
            "model_external_id": external_id,
            "metadata": {},
        }
        if checksum is not None:
            model["checksum_sha256"] = sha(data) if checksum == "auto" else checksum
        if upstream:
            model["metadata"]["upstream_weights_url"] = self.upstream_url(external_id)
        model.update(extra or {})
        weights = None
        if signed:
            url = self.files.url(f"bucket/{external_id}.pt", "X-Goog-Signature=sig")
            weights = {"signed_url": url}
        self.emulator.put_mlmodel(model, weights=weights)
        return model_uuid

    def upstream_url(self, external_id: str) -> str:
        """Where the upstream copy of ``external_id`` is served."""
        return self.files.url(f"upstream/{external_id}.pt")

    def stage(self, model_id: str, filename: str, data: bytes) -> Path:
        """Copy a file into the cache as an operator would (a USB stick)."""
        directory = self.cache / model_id
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / filename
        path.write_bytes(data)
        return path

    def catalog_calls(self) -> list[str]:
        """Paths of the mlmodels calls the emulator received."""
        return [r.path for r in self.emulator.requests(path_regex="/api/v1/mlmodels")]

    def manifest(self) -> dict[str, Any]:
        """The parsed manifest.json."""
        data: dict[str, Any] = json.loads((self.cache / "manifest.json").read_text())
        return data

    def sidecar(self, model_id: str) -> dict[str, Any]:
        """The parsed metadata.json of ``model_id``."""
        path = self.cache / model_id / "metadata.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data


@contextmanager
def open_site(emulator: Emulator, tmp_path: Path) -> Iterator[Site]:
    """A fresh cache directory, the emulator and a file server; fast timings."""
    files = WeightsServer().start()
    made: list[tuple[ModelManager, CloudClient]] = []

    def make(
        *,
        online: bool = True,
        base_url: str | None = None,
        owner: Owner | None = None,
        **options: Any,
    ) -> ModelManager:
        client = CloudClient(
            base_url=base_url or emulator.url,
            token=lambda: emulator.token,
            retries=0,
            version="test",
        )
        downloader = Downloader(
            base_url=base_url or emulator.url,
            token=lambda: emulator.token,
            options=DownloadOptions(timeout=2.0, backoff=(0.01, 0.02)),
        )
        settings: dict[str, Any] = {
            "probe_timeout": 0.5,
            "catalog_timeout": 2.0,
            "weights_timeout": 2.0,
            "lock_timeout": 10.0,
        }
        settings.update(options)
        manager = ModelManager(
            tmp_path / "models",
            catalog=client if online else None,
            downloader=downloader if online else None,
            owner=owner,
            options=CacheOptions(**settings),
        )
        made.append((manager, client))
        return manager

    try:
        yield Site(emulator, files, tmp_path / "models", make)
    finally:
        for manager, client in made:
            manager.close()
            client.close()
        files.stop()
