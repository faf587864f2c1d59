"""Why a linked twin gets no driver container, in the platform's words.

The web UI shows ``driver_start_failure`` alerts under fixed titles
(protocol.md 1.8); the titles live here so that the desired-state builder,
the launcher and the alert lifecycle use the same strings.

It does not raise or resolve alerts; the alert lifecycle does.
"""

from __future__ import annotations

from dataclasses import dataclass

ALERT_TYPE = "driver_start_failure"

TITLE_NO_ASSET = "Twin has no asset"
TITLE_ASSET_UNAVAILABLE = "Driver could not start: asset unavailable"
TITLE_NO_DRIVERS = "No drivers specified"
TITLE_NO_IMAGE = "No driver_docker_image in asset metadata"
TITLE_IMAGE_NOT_AVAILABLE = "Driver image not available"
TITLE_START_FAILED = "Driver failed to start"
TITLE_RUN_FAILED = "Failed to run driver docker image"


@dataclass(frozen=True)
class DriverFailure:
    """One twin whose driver cannot be specified.

    ``title`` is one of the ``TITLE_*`` alert titles; ``reason`` is one
    line naming the twin, what is wrong and how to fix it.
    """

    twin_uuid: str
    title: str
    reason: str
    profile_key: str | None = None
