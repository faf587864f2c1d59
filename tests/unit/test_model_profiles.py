"""Selection of the driver profile: child registry id, platform keys, default."""

from __future__ import annotations

from typing import Any

from edge_core.model.profiles import select_profile

LINUX_X86 = ("linux-x86_64", "linux")
JETSON = ("linux-aarch64-jetson", "linux-aarch64", "linux")


def profiles(*keys: str) -> dict[str, Any]:
    return {key: {"docker_image": f"image-{key}"} for key in keys}


def test_default_when_no_platform_key_matches() -> None:
    """Without a matching platform key the default profile is chosen."""
    chosen = select_profile(profiles("default", "darwin-arm64"), LINUX_X86)
    assert chosen == ("default", {"docker_image": "image-default"})


def test_platform_keys_tried_in_order() -> None:
    """The most specific platform key present wins over less specific ones."""
    drivers = profiles("default", "linux", "linux-aarch64", "linux-aarch64-jetson")
    assert select_profile(drivers, JETSON)[0] == "linux-aarch64-jetson"  # type: ignore[index]
    assert (
        select_profile(profiles("default", "linux", "linux-aarch64"), JETSON)[  # type: ignore[index]
            0
        ]
        == "linux-aarch64"
    )
    assert select_profile(profiles("default", "linux"), LINUX_X86)[0] == "linux"  # type: ignore[index]


def test_child_registry_id_wins_first() -> None:
    """With children and several profiles, a key equal to a child's registry id wins."""
    drivers = profiles("default", "linux", "cyberwave/standard-cam")
    chosen = select_profile(
        drivers, LINUX_X86, child_registry_ids=["acme/other", "cyberwave/standard-cam"]
    )
    assert chosen is not None and chosen[0] == "cyberwave/standard-cam"


def test_child_registry_id_ignored_with_single_profile() -> None:
    """With only one profile the child registry rule does not apply."""
    drivers = profiles("cyberwave/standard-cam")
    assert (
        select_profile(
            drivers, LINUX_X86, child_registry_ids=["cyberwave/standard-cam"]
        )
        is None
    )


def test_child_registry_id_without_children_is_ignored() -> None:
    """A registry-id key is never chosen when there are no children."""
    drivers = profiles("default", "cyberwave/standard-cam")
    assert select_profile(drivers, LINUX_X86)[0] == "default"  # type: ignore[index]


def test_none_when_nothing_applies() -> None:
    """No matching key and no default gives no profile."""
    assert select_profile(profiles("darwin-arm64"), LINUX_X86) is None
    assert select_profile(None, LINUX_X86) is None
    assert select_profile({}, LINUX_X86) is None


def test_non_object_entries_are_not_profiles() -> None:
    """Entries that are not objects are skipped, and do not count as profiles."""
    drivers: dict[str, Any] = {
        "linux": "cyberwaveos/x",
        "default": {"docker_image": "d"},
        "cyberwave/standard-cam": {"docker_image": "c"},
        "version": "1",
    }
    assert select_profile(drivers, LINUX_X86)[0] == "default"  # type: ignore[index]
    only_one = {"cyberwave/standard-cam": {"docker_image": "c"}, "version": "1"}
    assert (
        select_profile(
            only_one, LINUX_X86, child_registry_ids=["cyberwave/standard-cam"]
        )
        is None
    )
