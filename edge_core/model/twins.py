"""Typed, read-only views over the twin and asset objects of the backend.

The backend's JSON is only partly known (protocol.md 1.5, section 8), so
these views read it liberally: a missing key and a null value mean the
same, a value of the wrong type counts as missing, and nothing here raises
on an unexpected shape. Each view keeps the original mapping in ``raw``
because the twin JSON file carries the whole object, not just the fields
the edge core reads.

This module does not decide linkage or driver selection (see
``linkage`` and ``profiles``) and never touches the file system.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RGB_SENSOR_TYPES = frozenset({"rgb", "camera", "rgb_camera", "rgbd"})
CAMERA_REGISTRY_HINTS = ("standard-cam", "realsense", "camera")

# A twin uuid names a container: anything Docker refuses is not an id.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def as_mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one."""
    if isinstance(value, Mapping):
        return value
    return {}


def as_text(value: object) -> str | None:
    """``value`` stripped when it is a non-blank string, else ``None``."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def as_id(value: object) -> str | None:
    """``value`` stripped when it is usable as a container name, else None.

    A UUID is lowercased, so ``97827C52-…`` and ``97827c52-…`` are one
    twin with one container and one file.
    """
    text = as_text(value)
    if text is None or not _SAFE_ID.fullmatch(text):
        return None
    return text.lower() if is_uuid(text) else text


def is_uuid(value: str) -> bool:
    """True for the canonical UUID form (8-4-4-4-12 hex digits)."""
    return _UUID.fullmatch(value) is not None


def _drivers(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    drivers = metadata.get("drivers")
    if isinstance(drivers, Mapping) and drivers:
        return drivers
    return None


@dataclass(frozen=True)
class Twin:
    """One twin of the environment (``GET /environments/{uuid}/twins``)."""

    uuid: str
    name: str
    asset_uuid: str | None
    environment_uuid: str | None
    attach_to_twin_uuid: str | None
    metadata: Mapping[str, Any]
    drivers: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_raw(cls, raw: object) -> Twin | None:
        """The view of one backend twin, or ``None`` when it has no usable uuid."""
        data = as_mapping(raw)
        uuid = as_id(data.get("uuid"))
        if uuid is None:
            return None

        metadata = as_mapping(data.get("metadata"))
        attach = as_id(data.get("attach_to_twin_uuid")) or as_id(
            metadata.get("attach_to_twin_uuid")
        )
        return cls(
            uuid=uuid,
            name=as_text(data.get("name")) or "",
            asset_uuid=as_text(data.get("asset_uuid")),
            environment_uuid=as_text(data.get("environment_uuid")),
            attach_to_twin_uuid=attach,
            metadata=metadata,
            drivers=_drivers(metadata),
            raw=data,
        )


def _sensor_lists(data: Mapping[str, Any]) -> Iterable[object]:
    metadata = as_mapping(data.get("metadata"))
    for holder in (data, metadata):
        for section in ("universal_schema", "capabilities"):
            sensors = as_mapping(holder.get(section)).get("sensors")
            if isinstance(sensors, list):
                yield from sensors


def _has_rgb_sensor(data: Mapping[str, Any], registry_id: str | None) -> bool:
    for sensor in _sensor_lists(data):
        kind = as_text(as_mapping(sensor).get("type"))
        if kind is not None and kind.lower() in RGB_SENSOR_TYPES:
            return True

    if registry_id is None:
        return False
    lowered = registry_id.lower()
    return any(hint in lowered for hint in CAMERA_REGISTRY_HINTS)


@dataclass(frozen=True)
class Asset:
    """One catalog asset (``GET /assets/{uuid}``)."""

    uuid: str
    name: str
    registry_id: str | None
    metadata: Mapping[str, Any]
    drivers: Mapping[str, Any] | None
    has_rgb_sensor: bool
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_raw(cls, raw: object) -> Asset | None:
        """The view of one backend asset, or ``None`` when it has no uuid."""
        data = as_mapping(raw)
        uuid = as_text(data.get("uuid"))
        if uuid is None:
            return None

        metadata = as_mapping(data.get("metadata"))
        registry_id = as_text(data.get("registry_id")) or as_text(
            metadata.get("registry_id")
        )
        return cls(
            uuid=uuid,
            name=as_text(data.get("name")) or "",
            registry_id=registry_id,
            metadata=metadata,
            drivers=_drivers(metadata),
            has_rgb_sensor=_has_rgb_sensor(data, registry_id),
            raw=data,
        )


def driver_metadata(twin: Twin, asset: Asset | None) -> Mapping[str, Any] | None:
    """The ``drivers`` block that applies: the twin's, else the asset's."""
    if twin.drivers is not None:
        return twin.drivers
    if asset is not None:
        return asset.drivers
    return None


def deep_merge(existing: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged onto ``existing`` without changing either.

    Objects merge key by key, recursively; any other value in ``new``
    replaces the old one; keys only in ``existing`` survive.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(existing))
    for key, value in new.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def twin_document(
    twin_raw: Mapping[str, Any], asset_raw: Mapping[str, Any]
) -> dict[str, Any]:
    """The twin JSON file's content: the twin plus its asset under ``asset``."""
    document: dict[str, Any] = copy.deepcopy(dict(twin_raw))
    document["asset"] = copy.deepcopy(dict(asset_raw))
    return document
