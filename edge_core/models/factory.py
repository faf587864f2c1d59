"""Building a ``ModelManager`` from the edge core's settings.

The daemon and the ``models`` CLI build the cache the same way: the cache
directory under the config directory, the catalog through ``CloudClient``
(R16, R17) and a ``Downloader`` that knows the base URL, both reading the
token from ``credentials.json`` on every use (protocol.md 1.2). Without a
token, or with ``offline=True``, only files already on disk are used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from edge_core import __version__
from edge_core.cloud.rest import CloudClient
from edge_core.config.credentials import credentials_path, read_token
from edge_core.config.paths import MODELS_DIR, Owner
from edge_core.config.settings import Settings
from edge_core.errors import ConfigError
from edge_core.models.download import Downloader, DownloadOptions
from edge_core.models.manager import CacheOptions, ModelManager


def cache_dir(settings: Settings) -> Path:
    """``{config}/models``."""
    return settings.config_dir / MODELS_DIR


@contextlib.contextmanager
def open_cache(
    settings: Settings,
    *,
    owner: Owner | None,
    offline: bool = False,
    options: CacheOptions | None = None,
    download_options: DownloadOptions | None = None,
) -> Iterator[ModelManager]:
    """A ``ModelManager`` for ``settings``, closed (connections too) on exit."""
    path = credentials_path(settings.config_dir)
    online = not offline and path.exists()
    client = None
    downloader = None
    if online:
        user_agent = f"cyberwave-edge-core/{__version__}"
        client = CloudClient(
            base_url=settings.base_url,
            token=lambda: read_token(path),
            retries=0,
            user_agent_prefix=settings.client_user_agent,
            version=__version__,
        )
        downloader = Downloader(
            base_url=settings.base_url,
            token=lambda: _token_or_none(path),
            options=download_options,
            user_agent=user_agent,
        )
    manager = ModelManager(
        cache_dir(settings),
        catalog=client,
        downloader=downloader,
        owner=owner,
        options=options,
    )
    try:
        yield manager
    finally:
        manager.close()
        if client is not None:
            client.close()


def _token_or_none(path: Path) -> str | None:
    """The current token; None (no header) when the credentials are unusable."""
    try:
        return read_token(path)
    except ConfigError:
        return None
