"""Typed views over backend twins and assets, twin documents and deep merge."""

from __future__ import annotations

import pytest

from edge_core.model.twins import (
    Asset,
    Twin,
    deep_merge,
    driver_metadata,
    twin_document,
)

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ASSET = "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b"


def test_twin_reads_known_fields() -> None:
    """A well-formed twin exposes its uuid, name, asset, environment and metadata."""
    raw = {
        "uuid": TWIN,
        "name": "Arm",
        "asset_uuid": ASSET,
        "environment_uuid": "env-1",
        "metadata": {"edge_fingerprint": "fp"},
    }
    twin = Twin.from_raw(raw)
    assert twin is not None
    assert (twin.uuid, twin.name, twin.asset_uuid, twin.environment_uuid) == (
        TWIN,
        "Arm",
        ASSET,
        "env-1",
    )
    assert twin.metadata == {"edge_fingerprint": "fp"}
    assert twin.raw is raw


def test_twin_treats_null_and_missing_alike() -> None:
    """Null fields read the same as missing ones."""
    with_nulls = Twin.from_raw(
        {"uuid": TWIN, "name": None, "asset_uuid": None, "metadata": None}
    )
    bare = Twin.from_raw({"uuid": TWIN})
    assert with_nulls is not None and bare is not None
    for twin in (with_nulls, bare):
        assert twin.name == ""
        assert twin.asset_uuid is None
        assert twin.environment_uuid is None
        assert twin.metadata == {}
        assert twin.drivers is None


@pytest.mark.parametrize(
    "raw",
    [None, [], "twin", 42, {}, {"uuid": None}, {"uuid": ""}, {"uuid": 7}],
)
def test_twin_without_uuid_is_none(raw: object) -> None:
    """Anything that is not an object with a uuid gives no twin instead of crashing."""
    assert Twin.from_raw(raw) is None


def test_twin_tolerates_wrong_types() -> None:
    """Fields of the wrong type count as missing."""
    twin = Twin.from_raw(
        {
            "uuid": TWIN,
            "name": ["x"],
            "asset_uuid": 12,
            "metadata": ["not", "a", "dict"],
            "attach_to_twin_uuid": {"x": 1},
        }
    )
    assert twin is not None
    assert twin.name == ""
    assert twin.asset_uuid is None
    assert twin.metadata == {}
    assert twin.attach_to_twin_uuid is None


def test_attach_to_twin_uuid_prefers_object_then_metadata() -> None:
    """The top-level attach_to_twin_uuid wins; the metadata one is the fallback."""
    top = Twin.from_raw(
        {
            "uuid": TWIN,
            "attach_to_twin_uuid": "parent-a",
            "metadata": {"attach_to_twin_uuid": "parent-b"},
        }
    )
    nested = Twin.from_raw(
        {
            "uuid": TWIN,
            "attach_to_twin_uuid": None,
            "metadata": {"attach_to_twin_uuid": "parent-b"},
        }
    )
    assert top is not None and nested is not None
    assert top.attach_to_twin_uuid == "parent-a"
    assert nested.attach_to_twin_uuid == "parent-b"


def test_twin_drivers_only_when_non_empty_object() -> None:
    """metadata.drivers counts only when it is a non-empty object."""
    drivers = {"default": {"docker_image": "a"}}
    assert Twin.from_raw({"uuid": TWIN, "metadata": {"drivers": drivers}}).drivers == (  # type: ignore[union-attr]
        drivers
    )
    values: tuple[object, ...] = ({}, [], "x", None)
    for value in values:
        twin = Twin.from_raw({"uuid": TWIN, "metadata": {"drivers": value}})
        assert twin is not None and twin.drivers is None


def test_asset_registry_id_top_level_then_metadata() -> None:
    """registry_id is read from the asset, else from its metadata."""
    top = Asset.from_raw(
        {"uuid": ASSET, "registry_id": "a/b", "metadata": {"registry_id": "c/d"}}
    )
    nested = Asset.from_raw({"uuid": ASSET, "metadata": {"registry_id": "c/d"}})
    assert top is not None and nested is not None
    assert top.registry_id == "a/b"
    assert nested.registry_id == "c/d"


@pytest.mark.parametrize(
    "raw",
    [
        {"universal_schema": {"sensors": [{"type": "rgb"}]}},
        {"metadata": {"universal_schema": {"sensors": [{"type": "camera"}]}}},
        {"capabilities": {"sensors": [{"type": "lidar"}, {"type": "rgb_camera"}]}},
        {"metadata": {"capabilities": {"sensors": [{"type": "RGBD"}]}}},
        {"registry_id": "cyberwave/standard-cam"},
        {"registry_id": "intel/RealSense-d435"},
        {"metadata": {"registry_id": "acme/usb-camera"}},
    ],
)
def test_asset_rgb_sensor_forms(raw: dict[str, object]) -> None:
    """Each sensor location and each camera-like registry id marks an RGB asset."""
    asset = Asset.from_raw({"uuid": ASSET, **raw})
    assert asset is not None and asset.has_rgb_sensor


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"capabilities": {"sensors": [{"type": "lidar"}]}},
        {"capabilities": {"sensors": "rgb"}},
        {"universal_schema": {"sensors": [None, 3, {"type": None}]}},
        {"registry_id": "unitree/go2"},
    ],
)
def test_asset_without_rgb_sensor(raw: dict[str, object]) -> None:
    """Assets without a camera sensor or camera registry id are not RGB."""
    asset = Asset.from_raw({"uuid": ASSET, **raw})
    assert asset is not None and not asset.has_rgb_sensor


def test_driver_metadata_falls_back_to_asset() -> None:
    """The twin's drivers win; without them the asset's apply."""
    own = {"default": {"docker_image": "twin-image"}}
    catalog = {"default": {"docker_image": "asset-image"}}
    asset = Asset.from_raw({"uuid": ASSET, "metadata": {"drivers": catalog}})
    with_own = Twin.from_raw({"uuid": TWIN, "metadata": {"drivers": own}})
    without = Twin.from_raw({"uuid": TWIN, "metadata": {}})
    assert with_own is not None and without is not None
    assert driver_metadata(with_own, asset) == own
    assert driver_metadata(without, asset) == catalog
    assert driver_metadata(without, None) is None


def test_twin_document_adds_asset_without_touching_inputs() -> None:
    """The twin document is the twin plus an asset key; the inputs stay unchanged."""
    twin = {"uuid": TWIN, "metadata": {"k": [1]}}
    asset = {"uuid": ASSET, "name": "SO-101"}
    document = twin_document(twin, asset)
    assert document == {"uuid": TWIN, "metadata": {"k": [1]}, "asset": asset}
    document["metadata"]["k"].append(2)
    assert twin == {"uuid": TWIN, "metadata": {"k": [1]}}
    assert "asset" not in twin


def test_deep_merge_rules() -> None:
    """Objects merge recursively, other values are replaced, local-only keys survive."""
    existing = {
        "metadata": {"local": 1, "shared": {"a": 1, "b": 2}, "list": [1, 2]},
        "driver_added": True,
        "name": "old",
    }
    new = {
        "metadata": {"shared": {"b": 3}, "list": [9]},
        "name": "new",
        "asset": {"uuid": ASSET},
    }
    merged = deep_merge(existing, new)
    assert merged == {
        "metadata": {"local": 1, "shared": {"a": 1, "b": 3}, "list": [9]},
        "driver_added": True,
        "name": "new",
        "asset": {"uuid": ASSET},
    }
    assert existing["metadata"]["shared"] == {"a": 1, "b": 2}  # type: ignore[index]


def test_deep_merge_replaces_object_with_scalar_and_back() -> None:
    """A value changing between object and scalar is replaced, not merged."""
    assert deep_merge({"a": {"x": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"x": 1}}) == {"a": {"x": 1}}
