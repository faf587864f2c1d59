"""The one linkage rule and the split of linked twins into drivers and children."""

from __future__ import annotations

from typing import Any

import pytest

from edge_core.model.linkage import is_linked, linked_twins, resolve_topology
from edge_core.model.twins import Asset, Twin

FP = "lab-pc-0123456789ab"
OTHER = "line-pc-4b8e1f0a9c2d"
CAM_ASSET = "cam-asset"
ARM_ASSET = "arm-asset"
ASSETS: dict[str, Any] = {
    CAM_ASSET: {
        "uuid": CAM_ASSET,
        "registry_id": "cyberwave/standard-cam",
        "capabilities": {"sensors": [{"type": "rgb"}]},
    },
    ARM_ASSET: {"uuid": ARM_ASSET, "registry_id": "the-robot-studio/so101"},
}


def twin(uuid: str, *, fp: str | None = FP, **fields: Any) -> dict[str, Any]:
    metadata = fields.pop("metadata", {})
    if fp is not None:
        metadata = {"edge_fingerprint": fp, **metadata}
    return {"uuid": uuid, "metadata": metadata, **fields}


@pytest.mark.parametrize(
    "metadata",
    [
        {"edge_fingerprint": FP},
        {"edge_configs": {"edge_fingerprint": FP}},
        {"edge_configs": {FP: {"camera_id": "front"}}},
        {"edge_configs": {OTHER: {}, FP: {"source": "/dev/video0"}}},
    ],
)
def test_linked_forms(metadata: dict[str, Any]) -> None:
    """Top-level, nested and legacy-map forms all link the twin."""
    assert is_linked(metadata, FP)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        [],
        {},
        {"edge_fingerprint": OTHER},
        {"edge_configs": {"edge_fingerprint": OTHER}},
        {"edge_configs": {OTHER: {}}},
        # Not a legacy map: a marker key makes it the canonical shape.
        {"edge_configs": {FP: {}, "camera_config": {"camera_id": "x"}}},
        {"edge_configs": {FP: {}, "edge_fingerprint": OTHER}},
        # Not a legacy map: values must all be objects.
        {"edge_configs": {FP: "yes"}},
        {"edge_configs": {FP: {}, "other": 1}},
        {"edge_configs": "fp"},
        {"edge_fingerprint": [FP]},
    ],
)
def test_not_linked_forms(metadata: object) -> None:
    """Other fingerprints, malformed shapes and non-legacy maps do not link."""
    assert not is_linked(metadata, FP)


def test_empty_fingerprint_links_nothing() -> None:
    """An empty local fingerprint never matches, not even an empty one."""
    assert not is_linked({"edge_fingerprint": ""}, "")


def test_linked_twins_keep_order_and_drop_repeats_and_junk() -> None:
    """Linked twins come in backend order, each once; malformed entries are skipped."""
    twins = [
        twin("b"),
        None,
        {"metadata": {"edge_fingerprint": FP}},
        twin("x", fp=OTHER),
        twin("a"),
        twin("b", name="again"),
    ]
    assert [t.uuid for t in linked_twins(twins, FP)] == ["b", "a"]


def test_child_camera_goes_to_parent() -> None:
    """An attached RGB twin of a linked parent gets no driver; the parent lists it."""
    twins = [
        twin("parent", asset_uuid=ARM_ASSET),
        twin("cam", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"),
    ]
    topology = resolve_topology(twins, ASSETS, FP)
    assert [t.uuid for t in topology.linked] == ["parent", "cam"]
    assert [t.uuid for t in topology.driver_twins] == ["parent"]
    assert topology.children == {"parent": ("cam",)}
    assert topology.children_of("parent") == ("cam",)
    assert "parent" in topology.no_driver["cam"]


def test_child_from_metadata_attach() -> None:
    """metadata.attach_to_twin_uuid also makes a camera a child."""
    twins = [
        twin("parent", asset_uuid=ARM_ASSET),
        twin("cam", asset_uuid=CAM_ASSET, metadata={"attach_to_twin_uuid": "parent"}),
    ]
    assert resolve_topology(twins, ASSETS, FP).children == {"parent": ("cam",)}


def test_attached_twin_without_rgb_sensor_gets_own_driver() -> None:
    """An attached twin whose asset has no camera keeps its own driver."""
    twins = [
        twin("parent", asset_uuid=ARM_ASSET),
        twin("gripper", asset_uuid=ARM_ASSET, attach_to_twin_uuid="parent"),
    ]
    topology = resolve_topology(twins, ASSETS, FP)
    assert [t.uuid for t in topology.driver_twins] == ["parent", "gripper"]
    assert topology.children == {}


def test_camera_with_unlinked_parent_gets_own_driver() -> None:
    """A camera attached to a twin of another edge runs its own driver."""
    twins = [
        twin("parent", fp=OTHER, asset_uuid=ARM_ASSET),
        twin("cam", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"),
    ]
    topology = resolve_topology(twins, ASSETS, FP)
    assert [t.uuid for t in topology.driver_twins] == ["cam"]
    assert topology.children == {}


def test_camera_with_missing_asset_is_not_a_child() -> None:
    """Without its asset a camera is not recognised, so it is a driver twin."""
    twins = [
        twin("parent", asset_uuid=ARM_ASSET),
        twin("cam", asset_uuid="gone", attach_to_twin_uuid="parent"),
    ]
    topology = resolve_topology(twins, ASSETS, FP)
    assert [t.uuid for t in topology.driver_twins] == ["parent", "cam"]


def test_children_deduplicated_in_order() -> None:
    """Several children keep backend order and appear once each."""
    twins = [
        twin("c2", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"),
        twin("parent", asset_uuid=ARM_ASSET),
        twin("c1", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"),
        twin("c2", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"),
    ]
    assert resolve_topology(twins, ASSETS, FP).children == {"parent": ("c2", "c1")}


def test_self_attached_camera_is_not_its_own_child() -> None:
    """A twin attached to itself is not a child (it would never run)."""
    twins = [twin("cam", asset_uuid=CAM_ASSET, attach_to_twin_uuid="cam")]
    topology = resolve_topology(twins, ASSETS, FP)
    assert [t.uuid for t in topology.driver_twins] == ["cam"]


def test_accepts_views_as_well_as_raw_objects() -> None:
    """Twin and Asset views work as inputs as well as raw dictionaries."""
    parent = Twin.from_raw(twin("parent", asset_uuid=ARM_ASSET))
    cam = Twin.from_raw(twin("cam", asset_uuid=CAM_ASSET, attach_to_twin_uuid="parent"))
    assets = {CAM_ASSET: Asset.from_raw(ASSETS[CAM_ASSET])}
    topology = resolve_topology([parent, cam], assets, FP)
    assert topology.children == {"parent": ("cam",)}
