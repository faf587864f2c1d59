"""Which twins belong to this edge, and which of them get a driver.

One linkage rule (protocol.md 1.6, 7 item 11) serves every caller: driver
launch, bootstrap health, the worker-sync fallback and the twin-command
subscription fallback. ``resolve_topology`` then splits the linked twins
into those that get a driver container of their own and attached child
cameras, whose uuids go to the parent driver instead (protocol.md 3.8).

It does not decide whether a driver twin's metadata is usable; that is
``desired``'s job, which turns bad metadata into a failure with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_core.model.twins import Asset, Twin, as_mapping

LEGACY_MAP_MARKERS = ("edge_fingerprint", "camera_config")


def _is_legacy_map(configs: Mapping[str, Any]) -> bool:
    if not configs:
        return False
    if any(marker in configs for marker in LEGACY_MAP_MARKERS):
        return False
    return all(isinstance(value, Mapping) for value in configs.values())


def is_linked(metadata: object, fingerprint: str) -> bool:
    """Whether a twin with this ``metadata`` is linked to ``fingerprint``."""
    if not fingerprint:
        return False
    meta = as_mapping(metadata)

    if meta.get("edge_fingerprint") == fingerprint:
        return True

    configs = as_mapping(meta.get("edge_configs"))
    if configs.get("edge_fingerprint") == fingerprint:
        return True

    return _is_legacy_map(configs) and fingerprint in configs


@dataclass(frozen=True)
class Topology:
    """The linked twins of one environment, split by who runs a driver.

    ``children`` maps a parent twin uuid to the uuids of its attached child
    cameras, in backend order without repeats. ``no_driver`` gives, for
    every linked twin without a container of its own, the reason.
    """

    linked: tuple[Twin, ...]
    driver_twins: tuple[Twin, ...]
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    no_driver: Mapping[str, str] = field(default_factory=dict)

    def children_of(self, twin_uuid: str) -> tuple[str, ...]:
        """The child camera uuids passed to ``twin_uuid``'s driver."""
        return self.children.get(twin_uuid, ())


def _twin(value: object) -> Twin | None:
    return value if isinstance(value, Twin) else Twin.from_raw(value)


def asset_view(value: object) -> Asset | None:
    """An ``Asset`` from either a view or a raw backend object."""
    return value if isinstance(value, Asset) else Asset.from_raw(value)


def linked_twins(twins: Iterable[object], fingerprint: str) -> tuple[Twin, ...]:
    """The twins linked to ``fingerprint``, in the given order, each once."""
    seen: set[str] = set()
    linked: list[Twin] = []
    for raw in twins:
        twin = _twin(raw)
        if twin is None or twin.uuid in seen:
            continue
        if not is_linked(twin.metadata, fingerprint):
            continue
        seen.add(twin.uuid)
        linked.append(twin)
    return tuple(linked)


def _camera_parent(
    twin: Twin, assets_by_uuid: Mapping[str, object], linked_uuids: set[str]
) -> str | None:
    """The parent uuid when ``twin`` is an attached child camera."""
    parent = twin.attach_to_twin_uuid
    if parent is None or parent == twin.uuid or parent not in linked_uuids:
        return None
    if twin.asset_uuid is None:
        return None
    asset = asset_view(assets_by_uuid.get(twin.asset_uuid))
    if asset is None or not asset.has_rgb_sensor:
        return None
    return parent


def resolve_topology(
    twins: Iterable[object],
    assets_by_uuid: Mapping[str, object],
    fingerprint: str,
) -> Topology:
    """Split the linked twins into driver twins and attached child cameras.

    ``twins`` and the values of ``assets_by_uuid`` may be raw backend
    objects or ``Twin``/``Asset`` views.
    """
    linked = linked_twins(twins, fingerprint)
    linked_uuids = {twin.uuid for twin in linked}

    driver_twins: list[Twin] = []
    children: dict[str, list[str]] = {}
    no_driver: dict[str, str] = {}
    for twin in linked:
        parent = _camera_parent(twin, assets_by_uuid, linked_uuids)
        if parent is None:
            driver_twins.append(twin)
            continue
        siblings = children.setdefault(parent, [])
        if twin.uuid not in siblings:
            siblings.append(twin.uuid)
        no_driver[twin.uuid] = (
            f"attached camera of twin {parent}; its driver receives it in "
            f"CYBERWAVE_CHILD_TWIN_UUIDS"
        )

    return Topology(
        linked=linked,
        driver_twins=tuple(driver_twins),
        children={parent: tuple(uuids) for parent, uuids in children.items()},
        no_driver=no_driver,
    )
