"""Choosing the driver profile of a twin from its ``metadata.drivers``.

A ``drivers`` block maps profile keys (``default``, platform keys such as
``linux-aarch64-jetson`` or ``darwin-arm64``, or a child camera's
``registry_id``) to a driver profile. This module holds the ONE selection
rule (protocol.md 3.8, spec "Platform-specific driver selection").

It does not compute the platform keys of this host (that needs the host:
see ``edge_core.host``) and does not validate the chosen profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PROFILE = "default"


def _profiles(drivers: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The entries of ``drivers`` that are profiles (objects)."""
    return {
        key: value
        for key, value in drivers.items()
        if isinstance(key, str) and isinstance(value, Mapping)
    }


def select_profile(
    drivers: Mapping[str, Any] | None,
    profile_keys: Sequence[str],
    *,
    child_registry_ids: Sequence[str] = (),
) -> tuple[str, Mapping[str, Any]] | None:
    """The ``(key, profile)`` that applies, or ``None`` when none does.

    Order: a key equal to a child's ``registry_id`` (only when there are
    children and more than one profile), then ``profile_keys`` in the
    given order (most specific first), then ``default``.
    """
    if not drivers:
        return None
    profiles = _profiles(drivers)

    if child_registry_ids and len(profiles) > 1:
        for registry_id in child_registry_ids:
            if registry_id in profiles:
                return registry_id, profiles[registry_id]

    for key in profile_keys:
        if key in profiles:
            return key, profiles[key]

    if DEFAULT_PROFILE in profiles:
        return DEFAULT_PROFILE, profiles[DEFAULT_PROFILE]
    return None
