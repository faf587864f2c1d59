"""What the Cyberwave model catalog says about one model (protocol.md 1.10).

The catalog object (R16) carries its facts in more than one place, so each
is looked up in a fixed order: the top level first, then ``metadata``. The
weights answer (R17) carries the Cyberwave-hosted signed URL. This module
turns both into typed values and picks the weight file's name; the REST
calls themselves are ``CloudClient.get_mlmodel`` and
``CloudClient.get_mlmodel_weights``, which satisfy ``Catalog``.

It does not decide when to ask the catalog or what to do with a mismatch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from edge_core.models.layout import is_safe_filename
from edge_core.models.sidecar import normalize_checksum

CHECKSUM_KEYS = ("checksum_sha256", "sha256", "checksum")
RUNTIME_KEYS = ("runtime", "framework", "edge_runtime", "edge_package")
UPSTREAM_METADATA_KEYS = ("download_url", "upstream_weights_url", "artifact_url")
SIGNED_URL_KEYS = ("signed_url", "url")


class Catalog(Protocol):
    """The two catalog calls the cache makes (R16 and R17)."""

    def get_mlmodel(self, model_id: str, *, timeout: float) -> dict[str, Any]:
        """R16: the catalog object of ``model_id`` (uuid or external id)."""
        ...

    def get_mlmodel_weights(self, model_uuid: str, *, timeout: float) -> dict[str, Any]:
        """R17: the weights answer of a hosted model; NotFoundError if not hosted."""
        ...


@dataclass(frozen=True)
class CatalogEntry:
    """The facts of one catalog object the cache uses."""

    model_id: str
    uuid: str | None = None
    checksum: str | None = None
    upstream_url: str | None = None
    runtime: str | None = None
    filename: str | None = None
    model_external_id: str | None = None

    def pick_filename(self, first_source_url: str | None) -> str:
        """The weight file's name (protocol.md 1.10, in order).

        ``filename`` or ``metadata.filename``; else ``model_external_id``
        when it contains a dot; else the last path segment of the first
        source URL (query removed) when it contains a dot; else
        ``<model_id>.pt``. Names that could escape the model directory are
        skipped.
        """
        for candidate in (
            self.filename,
            self.model_external_id,
            _last_segment(first_source_url),
        ):
            if candidate and "." in candidate and is_safe_filename(candidate):
                return candidate
        return f"{self.model_id}.pt"


def parse_catalog_entry(model_id: str, data: Mapping[str, Any]) -> CatalogEntry:
    """Read one catalog object liberally; unknown or odd values are ignored."""
    metadata = data.get("metadata")
    inner: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    raw_checksum = _first(data, inner, CHECKSUM_KEYS)
    filename = _first(data, inner, ("filename",))
    return CatalogEntry(
        model_id=model_id,
        uuid=_canonical_uuid(data.get("uuid")),
        checksum=normalize_checksum(raw_checksum),
        upstream_url=_upstream_url(data, inner),
        runtime=_first(data, inner, RUNTIME_KEYS),
        filename=filename if is_safe_filename(filename) else None,
        model_external_id=_text(data.get("model_external_id")),
    )


def parse_signed_url(data: Mapping[str, Any]) -> str | None:
    """The signed URL of an R17 answer (``signed_url``, then ``url``)."""
    for key in SIGNED_URL_KEYS:
        url = _text(data.get(key))
        if url is not None and _is_http(url):
            return url
    return None


def canonical_uuid(value: object) -> str | None:
    """``value`` as a canonical lowercase UUID, or None when it is not one."""
    return _canonical_uuid(value)


def _first(
    top: Mapping[str, Any], inner: Mapping[str, Any], keys: tuple[str, ...]
) -> str | None:
    for mapping in (top, inner):
        for key in keys:
            value = _text(mapping.get(key))
            if value is not None:
                return value
    return None


def _upstream_url(top: Mapping[str, Any], inner: Mapping[str, Any]) -> str | None:
    candidates = [top.get("download_url")]
    candidates += [inner.get(key) for key in UPSTREAM_METADATA_KEYS]
    for value in candidates:
        url = _text(value)
        if url is not None and _is_http(url):
            return url
    return None


def _canonical_uuid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        return None
    return str(parsed)


def _last_segment(url: str | None) -> str | None:
    if not url:
        return None
    path = urlsplit(url).path
    return unquote(path.rsplit("/", 1)[-1]) or None


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
