"""Which camera device a twin's driver should open.

The installer records the camera chosen for each twin in ``cameras.json``
(``twin_to_device``: a device index or a stable source), and the backend
keeps a copy in the edge object's ``metadata.cameras`` (protocol.md 3.2,
3.6). Drivers receive the result as ``CYBERWAVE_METADATA_VIDEO_DEVICE``
(protocol.md 4.7).

It does not read either file or probe ``/dev``; the daemon passes both
objects in and checks device presence itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_core.model.twins import as_mapping

SERIAL_PREFIX = "serial:"


def twin_to_device(
    local_cameras: object, edge_cameras: object = None
) -> dict[str, object]:
    """The merged ``twin_to_device`` map: the edge object's entries, plus
    local ones the edge object does not have."""
    merged: dict[str, object] = dict(_entries(edge_cameras))
    for twin_uuid, device in _entries(local_cameras).items():
        merged.setdefault(twin_uuid, device)
    return merged


def _entries(cameras: object) -> Mapping[str, Any]:
    return as_mapping(as_mapping(cameras).get("twin_to_device"))


def device_source(value: object) -> str | None:
    """The device path or URL for one ``twin_to_device`` value.

    An index gives ``/dev/video<N>``, a stable source is used as it is, and
    a ``serial:`` source gives nothing (a driver cannot open it as video).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"/dev/video{value}" if value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    source = value.strip()
    if source.startswith(SERIAL_PREFIX):
        return None
    return source


def video_devices(local_cameras: object, edge_cameras: object = None) -> dict[str, str]:
    """Each twin's video device, from ``cameras.json`` and ``metadata.cameras``."""
    devices: dict[str, str] = {}
    for twin_uuid, value in twin_to_device(local_cameras, edge_cameras).items():
        source = device_source(value)
        if source is not None:
            devices[twin_uuid] = source
    return devices
